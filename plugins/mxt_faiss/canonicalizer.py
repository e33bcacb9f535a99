"""``faiss``: map a generated value onto the nearest known value of its (product type, attribute)
pair, or keep it and flag it novel (a zero-shot value).

For a value of pair ``(pt, attr)``, in this order:

1. **exact**: same :func:`~mxt_faiss.embedding.exact_key` (Unicode form, case, whitespace) as a known
   value -> that value (``"Navy Blue "`` -> ``"navy blue"``), whatever the threshold;
2. **loose**: same :func:`~mxt_faiss.embedding.loose_text` (accents removed, punctuation and hyphens
   as word breaks, numbers split from units, one plural ``s`` folded) -> that value
   (``"navy-blue"`` -> ``"navy blue"``, ``"300ml"`` -> ``"300 ml"``), whatever the threshold;
3. **nearest neighbour**: the pair's FAISS index over L2-normalised character n-gram vectors
   returns the ``CANDIDATES`` most similar known values with their scores; the most similar one whose
   numbers agree with the value's (option ``match_numbers``) and whose score is at least
   ``similarity_threshold`` wins (``"navy blu"`` -> ``"navy blue"``). The index is exhaustive
   (float16 codes) for pairs of up to ``exact_max_values`` values and an HNSW graph above; both
   score their candidates exactly (see :mod:`mxt_faiss.indexes`);
4. otherwise the value is returned **unchanged** with ``novel=True``. A pair with no known values
   at all (never seen in training, not in the vocabulary file) gives ``novel=True`` for every value:
   nothing was ever seen for it.

Matches 1-3 return ``novel=False``. When several known values of a pair share a key, the most
frequent one (ties: the alphabetically first) is the one reported.

:meth:`~FaissCanonicalizer.canonicalize_many` groups values by pair and searches each pair's distinct
values in one batch; its results equal one :meth:`~FaissCanonicalizer.canonicalize` per value (FAISS
scores each query the same way alone or in a batch). Nearest-neighbour decisions are
remembered per pair by loose text (``DECISION_CACHE``), so a repeated near miss costs a lookup.
Options are fixed after construction. A batched search runs on ``search_threads`` OpenMP threads
(default 1: over tens of vectors, starting threads costs far more than the search).

One index per pair, its kind chosen by the pair's size (not one index with id ranges): a query only
ever searches its own pair, so the search cost follows that pair alone, no id bookkeeping is needed,
and each index is built lazily, on the first value of a pair that needs one (most pairs at
extraction never do, because the exact key already matches). :meth:`~FaissCanonicalizer.index_stats`
reports the indexes built and the bytes they hold.

Saved layout (``save(directory)`` writes ``directory/canonicalizer/``):

* ``options.json`` — ``{"format": 1, "name": "faiss", "options": {...}}``;
* ``vocabulary.jsonl`` — every known value with its count (training values and the vocabulary file,
  merged), itself a valid ``vocabulary_file``.

The vectors are a deterministic function of the value and the options (CRC-32 hashing, exact integer
counts), so :meth:`load` rebuilds the indexes from these two small files (exact ones bit-identical,
HNSW ones with the same codes) instead of storing them in FAISS's binary format. No pickle anywhere.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from pydantic import Field, model_validator

from mxt_sdk import Canonicalizer, ComponentOptions
from mxt_sdk.errors import ConfigError, DataFileError, NotFittedError

from mxt_faiss.embedding import CharNgramEmbedder, exact_key, loose_text, numbers, numbers_of_loose
from mxt_faiss.indexes import ExactIndex, HNSWIndex, build_index
from mxt_faiss.vocabulary import (
    Pair,
    Vocabulary,
    check_vocabulary,
    merge_vocabularies,
    read_vocabulary_file,
    write_text_atomically,
    write_vocabulary_jsonl,
)

__all__ = ["FaissCanonicalizer", "CANDIDATES", "SAVE_FOLDER"]

#: Nearest neighbours inspected per value (the first whose numbers agree and that is similar enough wins).
CANDIDATES = 8
#: Nearest-neighbour decisions remembered per pair (by loose text) before the memory is emptied.
DECISION_CACHE = 65536
_UNDECIDED = object()
#: Sub-folder of the model folder that :meth:`FaissCanonicalizer.save` writes.
SAVE_FOLDER = "canonicalizer"
_FORMAT = 1

Query = tuple[str, str, str]  # (value, product_type, attribute)


@dataclass
class _PairIndex:
    """What one pair needs at query time. ``canonical[i]`` is the value of FAISS id ``i``."""

    by_exact: dict[str, str]
    by_loose: dict[str, str]
    canonical: list[str]
    numbers: list[tuple[str, ...]]
    index: ExactIndex | HNSWIndex | None = None  # built on first use
    decisions: dict[str, str | None] = field(default_factory=dict)  # loose text -> nearest-neighbour result


class FaissCanonicalizer(Canonicalizer):
    """Nearest known value by cosine similarity of hashed character n-grams, searched with FAISS."""

    name = "faiss"

    class Options(ComponentOptions):
        similarity_threshold: float = Field(
            default=0.85, gt=0.0, le=1.0,
            description="Least cosine similarity for a nearest neighbour to replace the value.")
        ngram_min: int = Field(default=1, ge=1, le=8, description="Shortest character n-gram.")
        ngram_max: int = Field(default=2, ge=1, le=8, description="Longest character n-gram.")
        dim: int = Field(default=1024, ge=64, le=65536, description="Hashed embedding dimensions.")
        match_numbers: bool = Field(
            default=True, description="A neighbour must contain the same numbers as the value.")
        vocabulary_file: str | None = Field(
            default=None, description="JSONL or JSON file of known values, read by fit().")
        search_threads: int = Field(
            default=1, ge=0,
            description="OpenMP threads of one batched FAISS search (0: FAISS's default, all cores).")
        use_training_values: bool = Field(
            default=True,
            description="Index the values fit() receives (with the file's); False: the file's only.")
        exact_max_values: int = Field(
            default=20000, ge=1,
            description="Pairs with up to this many values get an exact index; larger pairs an HNSW graph.")
        ef_search: int = Field(
            default=64, ge=8, description="Breadth of the graph search in a large pair (more: slower, closer to exact).")

        @model_validator(mode="after")
        def _check(self):
            if self.ngram_max < self.ngram_min:
                raise ValueError(f"ngram_max ({self.ngram_max}) must be >= ngram_min ({self.ngram_min})")
            if not self.use_training_values and self.vocabulary_file is None:
                raise ValueError("use_training_values=False needs a vocabulary_file to index")
            return self

    example_options = {"dim": 256}

    def __init__(self, options: ComponentOptions):
        super().__init__(options)
        self._embedder = self._make_embedder(options)
        self._vocabulary: Vocabulary | None = None
        self._pairs: dict[Pair, _PairIndex] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _make_embedder(options: Options) -> CharNgramEmbedder:
        return CharNgramEmbedder(options.ngram_min, options.ngram_max, options.dim)

    # ------------------------------------------------------------------ fitting
    def fit(self, vocabulary: Mapping[Any, Mapping[str, int]]) -> None:
        """Index the known values. ``vocabulary`` maps ``(product_type, attribute)`` (or a
        ``CatalogMetadata.values`` key ``"product_type<TAB>attribute"``) to ``{value: count}``; the
        ``vocabulary_file`` option, when set, is read here and merged in."""
        parts = []
        if self.options.use_training_values:
            parts.append(check_vocabulary(vocabulary))
        if self.options.vocabulary_file is not None:
            parts.append(read_vocabulary_file(self.options.vocabulary_file))
        self._set_vocabulary(merge_vocabularies(*parts))

    def _set_vocabulary(self, vocabulary: Vocabulary) -> None:
        with self._lock:
            self._vocabulary = vocabulary
            self._pairs = {pair: self._prepare(values) for pair, values in vocabulary.items()}

    @staticmethod
    def _prepare(values: Mapping[str, int]) -> _PairIndex:
        """Exact and loose lookups plus the list of values to index, most frequent first, so a
        key shared by several values resolves to the most frequent (then alphabetically first)."""
        by_exact: dict[str, str] = {}
        by_loose: dict[str, str] = {}
        canonical: list[str] = []
        for value, _ in sorted(values.items(), key=lambda item: (-item[1], item[0])):
            by_exact.setdefault(exact_key(value), value)
            loose = loose_text(value)
            if loose and loose not in by_loose:
                by_loose[loose] = value
                canonical.append(value)
        return _PairIndex(by_exact, by_loose, canonical, [numbers(v) for v in canonical])

    def _index(self, pair: _PairIndex) -> ExactIndex | HNSWIndex:
        if pair.index is None:
            with self._lock:
                if pair.index is None:
                    pair.index = build_index(self.options.dim, pair.canonical, self._embedder.embed_many,
                                             exact_max_values=self.options.exact_max_values,
                                             ef_search=self.options.ef_search)
        return pair.index

    def build_indexes(self) -> None:
        """Build every pair's index now rather than on its first near miss (e.g. before serving)."""
        for pair in list(self._pairs.values()):
            if pair.canonical:
                self._index(pair)

    def index_stats(self) -> dict[str, int]:
        """Indexes built so far by kind, the values they hold, and their bytes."""
        built = [pair.index for pair in self._pairs.values() if pair.index is not None]
        return {"pairs": len(self._pairs), "exact_indexes": sum(i.kind == "exact" for i in built),
                "hnsw_indexes": sum(i.kind == "hnsw" for i in built), "indexed_values": sum(i.ntotal for i in built),
                "index_bytes": sum(i.memory_bytes for i in built)}

    @property
    def vocabulary(self) -> Vocabulary:
        """The indexed values per pair (a copy)."""
        return {pair: dict(values) for pair, values in self._require_fitted().items()}

    def _require_fitted(self) -> Vocabulary:
        if self._vocabulary is None:
            raise NotFittedError(
                "The 'faiss' canonicalizer has no index yet: call fit(vocabulary) (e.g. with "
                "CatalogMetadata.values) or load(model_folder) first."
            )
        return self._vocabulary

    # ------------------------------------------------------------------ canonicalizing
    def canonicalize(self, value: str, *, product_type: str, attribute: str) -> tuple[str, bool]:
        """``(known value, False)`` when ``value`` matches one of its pair, else ``(value, True)``."""
        return self.canonicalize_many([(value, product_type, attribute)])[0]

    def canonicalize_many(self, values: Sequence[Query]) -> list[tuple[str, bool]]:
        """:meth:`canonicalize` of each ``(value, product_type, attribute)``, in order; one FAISS
        search per pair for the distinct values that need one. Same results as one call per value."""
        self._require_fitted()
        results: list[tuple[str, bool]] = [(value, True) for value, _, _ in values]
        pending: dict[Pair, dict[str, list[int]]] = {}  # pair -> loose text -> positions
        for position, (value, product_type, attribute) in enumerate(values):
            pair = self._pairs.get((product_type, attribute))
            if pair is None:
                continue
            known = pair.by_exact.get(exact_key(value))
            if known is None:
                loose = loose_text(value)
                if not loose:
                    continue
                known = pair.by_loose.get(loose) or pair.decisions.get(loose, _UNDECIDED)
                if known is _UNDECIDED:
                    pending.setdefault((product_type, attribute), {}).setdefault(loose, []).append(position)
                    continue
            if known is not None:
                results[position] = (known, False)
        for key, by_text in pending.items():
            pair = self._pairs[key]
            texts = list(by_text)
            for text, known in zip(texts, self._nearest(pair, texts)):
                if len(pair.decisions) >= DECISION_CACHE:
                    pair.decisions.clear()
                pair.decisions[text] = known
                if known is not None:
                    for position in by_text[text]:
                        results[position] = (known, False)
        return results

    def _nearest(self, pair: _PairIndex, texts: list[str]) -> list[str | None]:
        """The known value each loose text maps to by nearest neighbour, or None."""
        index = self._index(pair)
        vectors = self._embedder.embed_loose_many(texts)
        scores, ids = self._search(index, vectors, min(CANDIDATES, index.ntotal))
        return [self.decide(pair, text, row_ids, row_scores) for text, row_ids, row_scores in zip(texts, ids, scores)]

    def decide(self, pair: _PairIndex, text: str, ids: np.ndarray, scores: np.ndarray) -> str | None:
        """The known value a loose ``text`` maps to, given its candidates' ``ids`` and ``scores``: the
        most similar (ties: lowest id) whose numbers agree and whose score reaches the threshold."""
        keep = ids >= 0
        ids, scores = ids[keep], scores[keep]
        threshold = self.options.similarity_threshold
        wanted = numbers_of_loose(text) if self.options.match_numbers else None
        for i in sorted(range(len(ids)), key=lambda i: (-float(scores[i]), int(ids[i]))):
            if scores[i] < threshold:
                return None
            if wanted is None or pair.numbers[ids[i]] == wanted:
                return pair.canonical[ids[i]]
        return None

    def _search(self, index: ExactIndex | HNSWIndex, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``index.search`` with at most ``search_threads`` OpenMP threads. The setting is per
        calling thread in OpenMP, so it is restored afterwards and never leaks to other threads."""
        threads = self.options.search_threads
        if threads == 0 or len(vectors) == 1:  # FAISS does not parallelise a single query
            return index.search(vectors, k)
        previous = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(threads)
        try:
            return index.search(vectors, k)
        finally:
            faiss.omp_set_num_threads(previous)

    # ------------------------------------------------------------------ saving
    def save(self, directory: Path) -> None:
        """Write ``directory/canonicalizer/options.json`` and ``vocabulary.jsonl``."""
        vocabulary = self._require_fitted()
        folder = Path(directory) / SAVE_FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        write_vocabulary_jsonl(folder / "vocabulary.jsonl", vocabulary)
        state = {"format": _FORMAT, "name": self.name, "options": self.options.model_dump(mode="json")}
        write_text_atomically(folder / "options.json", json.dumps(state, indent=2, sort_keys=True) + "\n")

    def load(self, directory: Path) -> None:
        """Restore what :meth:`save` wrote: its options (they define the vectors) and its values.
        The vocabulary file named in the options is not read again; its values were saved."""
        folder = Path(directory) / SAVE_FOLDER
        options_path = folder / "options.json"
        if not options_path.is_file():
            raise DataFileError(
                f"No saved 'faiss' canonicalizer in {directory}: {options_path} is missing. Save one with "
                "save(directory), or fit(vocabulary) instead of loading."
            )
        state = json.loads(options_path.read_text(encoding="utf-8"))
        if state.get("format") != _FORMAT or state.get("name") != self.name:
            raise DataFileError(
                f"{options_path} holds format {state.get('format')!r} of {state.get('name')!r}; this "
                f"'faiss' canonicalizer reads format {_FORMAT}."
            )
        try:
            options = self.Options.model_validate(state.get("options", {}))
        except ValueError as exc:
            raise ConfigError(f"{options_path}: invalid saved options: {exc}") from None
        vocabulary = read_vocabulary_file(folder / "vocabulary.jsonl", allow_empty=True)
        self.options = options
        self._embedder = self._make_embedder(options)
        self._set_vocabulary(vocabulary)

