"""A text prior over each pair's known values: a bag-of-words classifier read beside the generator.

A small generator trained for a few passes over a catalog reads its enumerable attributes (fit, season,
usage) from the text less well than a linear classifier on the words of the same text does (Myntra:
benchmarks/HISTORY.md, "Myntra fashion catalog"). The text prior is that classifier, kept beside the
model: for each (product type, attribute) pair with at most ``max_values`` training values, a softmax
regression with an L2 penalty from the product's TF-IDF vector to the pair's values, fitted by L-BFGS
after training on the training products' texts.

**Features.** A product's document is its product type, title, description and bullets, casefolded and
cut into ``\\w+`` words. The vocabulary holds the words found in at least :data:`MIN_DOCUMENT_COUNT`
training products (at most ``max_words``, the most frequent first); a word counts ``1 + log(tf)``
times its inverse document frequency ``log((1 + n) / (1 + df)) + 1``, and each product's vector has
unit length.

**Storage.** A pair's regression only has weights for the words its own training products use (the others
would stay exactly zero under the L2 penalty), so each pair keeps its word columns and a
``[words, values]`` block; the file holds every block flattened side by side.

When :class:`~mxt_sdk.inference.known_values.KnownValueChooser` scores a pair's known values, it adds
``extraction.text_prior_weight`` times the prior's smoothed log-probability of each candidate to its
generator log-probability (and the image prior's, if any): a product of experts over the candidate list.

Everything is a function of the training texts and labels: pairs are fitted in sorted order from zero
weights with a deterministic optimiser, so the same training data gives the same file.
"""
from __future__ import annotations

import json
import math
import re
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors.torch import load_file, save_file

from mxt_sdk import progress
from mxt_sdk.inference.value_regression import smoothed_log_probs, softmax_regression
from mxt_sdk.storage import write_json
from mxt_sdk.types import Product

__all__ = ["TextValuePrior", "TextPriorExample", "product_document", "WEIGHTS_FILE", "INDEX_FILE",
           "MIN_DOCUMENT_COUNT"]

WEIGHTS_FILE = "text_prior.safetensors"
INDEX_FILE = "text_prior.json"
VERSION = 1
#: a word enters the vocabulary when at least this many training products use it
MIN_DOCUMENT_COUNT = 2
_WORD = re.compile(r"\w+")


class TextPriorExample(NamedTuple):
    """One training label the prior learns from: its pair key, its (cleaned) answer and its product's row
    among the documents given to :meth:`TextValuePrior.fit`."""

    pair: str
    value: str
    row: int


class _Regression(NamedTuple):
    values: list[str]
    columns: torch.Tensor  # [words] vocabulary columns this pair's weights cover (int64, ascending)
    weight: torch.Tensor  # [words, len(values)]
    bias: torch.Tensor  # [len(values)]


def product_document(product: Product) -> str:
    """The text the prior reads for ``product``: its product type, title, description and bullets."""
    return "\n".join(part for part in (product.product_type or "", product.text) if part)


def _words(document: str) -> list[str]:
    return _WORD.findall(document.casefold())


class _PackedVectors:
    """Sparse vectors ({column: weight}) stored end to end in two typed arrays, read back by position."""

    def __init__(self, vectors: Iterable[dict[int, float]]):
        self.columns, self.weights, self.starts = array("i"), array("f"), array("q", [0])
        for vector in vectors:
            self.columns.extend(vector)
            self.weights.extend(vector.values())
            self.starts.append(len(self.columns))

    def __getitem__(self, row: int) -> tuple[array, array]:
        start, end = self.starts[row], self.starts[row + 1]
        return self.columns[start:end], self.weights[start:end]


class TextValuePrior:
    """TF-IDF softmax regressions, one per pair; see the module docstring."""

    def __init__(self, vocabulary: list[str], idf: torch.Tensor, pairs: dict[str, _Regression], l2: float):
        self.vocabulary, self.idf, self.pairs, self.l2 = vocabulary, idf.float(), pairs, l2
        self._column = {word: i for i, word in enumerate(vocabulary)}
        self._idf = self.idf.tolist()  # read per word: plain floats, not tensor indexing

    # ------------------------------------------------------------------ features
    def vector(self, document: str) -> dict[int, float]:
        """The unit-length TF-IDF vector of ``document`` as {vocabulary column: weight} (empty when no word
        of it is in the vocabulary)."""
        counts = Counter(self._column[w] for w in _words(document) if w in self._column)
        weights = {column: (1.0 + math.log(tf)) * self._idf[column] for column, tf in counts.items()}
        norm = math.sqrt(sum(v * v for v in weights.values()))
        return {column: v / norm for column, v in weights.items()} if norm > 0 else {}

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, documents: Callable[[], Iterable[str]], examples: Iterable[TextPriorExample], *,
            max_values: int = 50, max_words: int = 50_000, l2: float = 1e-4, max_iter: int = 100) -> "TextValuePrior":
        """Fit one regression per pair of ``examples`` with at most ``max_values`` distinct values (one value:
        it with certainty) on the TF-IDF vectors of the training products' documents.

        ``documents()`` yields every training product's document in row order (``TextPriorExample.row``
        indexes them); it is called twice, once to count words and once to build the vectors, which are kept
        packed (a column and a weight per distinct known word: about 8 bytes each), not the texts."""
        document_counts: Counter[str] = Counter()
        n = 0
        for document in documents():
            document_counts.update(set(_words(document)))
            n += 1
        if n == 0:
            raise ValueError("the text prior needs at least one training product")
        frequent = sorted((w for w, df in document_counts.items() if df >= MIN_DOCUMENT_COUNT),
                          key=lambda w: (-document_counts[w], w))[:max_words]
        vocabulary = sorted(frequent)
        idf = torch.tensor([math.log((1 + n) / (1 + document_counts[w])) + 1 for w in vocabulary],
                           dtype=torch.float64)
        del document_counts
        prior = cls(vocabulary, idf, {}, l2)
        vectors = _PackedVectors(prior.vector(document) for document in documents())

        by_pair: dict[str, list[TextPriorExample]] = defaultdict(list)
        for example in examples:
            by_pair[example.pair].append(example)
        for pair in progress.bar(iterable=sorted(by_pair), desc="Fitting the text prior", unit="pair"):
            members = by_pair.pop(pair)
            values = sorted({example.value for example in members})
            if len(values) > max_values:
                continue
            rows = [vectors[example.row] for example in members]
            columns = sorted({column for row_columns, _ in rows for column in row_columns})
            local = {column: i for i, column in enumerate(columns)}
            x = torch.zeros(len(members), len(columns))
            for i, (row_columns, row_weights) in enumerate(rows):
                for column, weight in zip(row_columns, row_weights):
                    x[i, local[column]] = weight
            targets = torch.tensor([values.index(example.value) for example in members])
            weight, bias = softmax_regression(x, targets, len(values), l2, max_iter)
            prior.pairs[pair] = _Regression(values, torch.tensor(columns, dtype=torch.int64), weight, bias)
        return prior

    # ------------------------------------------------------------------ use
    def log_probs(self, pair: str, vector: dict[int, float], candidates: Sequence[str]) -> list[float] | None:
        """Smoothed log-probability of each candidate for a product whose :meth:`vector` is ``vector`` (see
        :func:`~mxt_sdk.inference.value_regression.smoothed_log_probs`); None when the pair has no prior."""
        fitted = self.pairs.get(pair)
        if fitted is None:
            return None
        x = torch.zeros(len(fitted.columns))
        if vector and len(fitted.columns):
            columns = torch.tensor(list(vector), dtype=torch.int64)
            positions = torch.searchsorted(fitted.columns, columns).clamp_max(len(fitted.columns) - 1)
            covered = fitted.columns[positions] == columns  # words this pair's products never used weigh 0
            x[positions[covered]] = torch.tensor(list(vector.values()))[covered]
        logits = x @ fitted.weight + fitted.bias
        return smoothed_log_probs(dict(zip(fitted.values, torch.softmax(logits, -1).tolist())), candidates)

    # ------------------------------------------------------------------ files
    def save(self, directory: str | Path) -> None:
        """Write ``text_prior.safetensors`` (idf, and every pair's columns, weights and biases flattened side
        by side) and ``text_prior.json`` (vocabulary, each pair's values and offsets) into ``directory``."""
        directory = Path(directory)
        index, columns, weights, biases = {}, [], [], []
        column_offset = weight_offset = bias_offset = 0
        for pair in sorted(self.pairs):
            fitted = self.pairs[pair]
            index[pair] = {"values": fitted.values, "columns": [column_offset, len(fitted.columns)],
                           "weight": weight_offset, "bias": bias_offset}
            columns.append(fitted.columns)
            weights.append(fitted.weight.reshape(-1))
            biases.append(fitted.bias)
            column_offset += len(fitted.columns)
            weight_offset += fitted.weight.numel()
            bias_offset += len(fitted.values)
        tensors = {"idf": self.idf,
                   "columns": torch.cat(columns) if columns else torch.zeros(0, dtype=torch.int64),
                   "weight": torch.cat(weights) if weights else torch.zeros(0),
                   "bias": torch.cat(biases) if biases else torch.zeros(0)}
        save_file({name: t.contiguous() for name, t in tensors.items()}, str(directory / WEIGHTS_FILE))
        write_json(directory / INDEX_FILE, {"version": VERSION, "l2": self.l2, "vocabulary": self.vocabulary,
                                            "pairs": index})

    @classmethod
    def load(cls, directory: str | Path) -> "TextValuePrior | None":
        """The prior saved in ``directory``, or None when there is none."""
        directory = Path(directory)
        if not (directory / INDEX_FILE).exists():
            return None
        index = json.loads((directory / INDEX_FILE).read_text(encoding="utf-8"))
        if index.get("version") != VERSION:
            raise ValueError(f"{directory / INDEX_FILE}: text prior version {index.get('version')!r}, "
                             f"this mxt_sdk reads version {VERSION}")
        tensors = load_file(str(directory / WEIGHTS_FILE))
        pairs = {}
        for pair, entry in index["pairs"].items():
            start, count = entry["columns"]
            classes = len(entry["values"])
            weight = tensors["weight"][entry["weight"]:entry["weight"] + count * classes].reshape(count, classes)
            pairs[pair] = _Regression(entry["values"], tensors["columns"][start:start + count], weight,
                                      tensors["bias"][entry["bias"]:entry["bias"] + classes])
        return cls(index["vocabulary"], tensors["idf"], pairs, index["l2"])
