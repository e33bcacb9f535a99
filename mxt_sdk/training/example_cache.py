"""Training examples and their tokens, cached beside the run and built in bounded memory.

From staged products (:mod:`mxt_sdk.training.staging`) and a cleaning plan
(:func:`mxt_sdk.data.cleaning.plan_cleaning`):

1. **examples** — one row per (product, attribute) label, cleaned (``product_id``, ``product_type``,
   ``attribute``, ``prompt``, ``answer``, ``image``), written in Arrow shards of :data:`SHARD_ROWS`
   rows under ``<run>/cache/data/examples-<key>/``; the key hashes the staged products and the
   settings that shape the rows (normalizers, ``none_answer``). A re-run (resume) with the same data
   and settings reuses them; other data or settings build a new folder and remove the old one.
2. **tokens** — each shard tokenized with ``datasets.map`` into ``tokens-<key>/`` (key: the
   examples' key, the tokenizer's own serialization, ``max_input_tokens`` and the subword
   regularization settings), one shard at a time, so the memory-mapped pages a pass touches are
   those of one shard; the training set is the concatenation of the tokenized shards, memory-mapped.

A folder counts only once its ``done.json`` is written, so a crash mid-build leaves nothing that is
taken for a cache. Nothing here is inside the model folder.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from mxt_sdk.data.cleaning import CleaningPlan
from mxt_sdk.data.examples import example_rows
from mxt_sdk.data.scrambles import ValueScrambler
from mxt_sdk.storage import write_json
from mxt_sdk.training.staging import DATA_FOLDER, ProductTable, read_arrow, write_arrow
from mxt_sdk.types import Product

if TYPE_CHECKING:
    import datasets

log = logging.getLogger("mxt_sdk.training")

__all__ = ["SHARD_ROWS", "ExampleShards", "build_examples", "tokenize_shards", "token_stats", "cache_key",
           "tokenizer_identity"]

#: Examples per shard: what one ``datasets.map`` pass maps into the process at once.
SHARD_ROWS = 100_000
DONE_FILE = "done.json"
EXAMPLE_SCHEMA = pa.schema([("product_id", pa.string()), ("product_type", pa.string()), ("attribute", pa.string()),
                            ("prompt", pa.string()), ("answer", pa.string()), ("image", pa.string())])
_VERSION = 1  # bump when the rows or their tokenization change meaning


def cache_key(*parts: Any) -> str:
    """A short SHA-256 of JSON-able ``parts`` (folder names of the caches)."""
    text = json.dumps([_VERSION, *parts], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def tokenizer_identity(tokenizer) -> str:
    """A SHA-256 of what a tokenizer does: its full serialization when it has one (fast tokenizers),
    else its class and vocabulary."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(
        [type(tokenizer).__name__, sorted(tokenizer.get_vocab().items())])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ExampleShards:
    """The shard files of one split, in order, and their row count."""

    paths: tuple[Path, ...]
    rows: int

    def column(self, name: str) -> Iterator[Any]:
        """The values of column ``name``, in order, one batch at a time."""
        for batch in read_arrow(self.paths, [name]):
            yield from batch[name]


def _fresh(folder: Path) -> bool:
    return (folder / DONE_FILE).is_file()


def _claim(root: Path, prefix: str, key: str) -> Path:
    """``root/<prefix>-<key>``, empty, with every other ``<prefix>-*`` folder (stale) removed."""
    for stale in root.glob(f"{prefix}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    folder = root / f"{prefix}-{key}"
    folder.mkdir(parents=True)
    return folder


def _write_shards(folder: Path, split: str, rows: Iterable[dict[str, Any]], schema: pa.Schema) -> ExampleShards:
    iterator, paths, total = iter(rows), [], 0
    while True:
        path = folder / f"{split}-{len(paths):05d}.arrow"
        written = write_arrow(path, schema, iterator, limit=SHARD_ROWS)
        if written == 0 and paths:
            path.unlink()
            break
        paths.append(path)
        total += written
        if written < SHARD_ROWS:
            break
    return ExampleShards(tuple(paths), total)


def _cleaned(table: ProductTable, plan: CleaningPlan) -> Iterator[Product]:
    for product in table.products():
        yield product.model_copy(update={"attributes": plan.relabel(product.product_type, product.attributes)})


def _load(folder: Path) -> dict[str, ExampleShards]:
    done = json.loads((folder / DONE_FILE).read_text(encoding="utf-8"))
    return {split: ExampleShards(tuple(folder / name for name in entry["files"]), entry["rows"])
            for split, entry in done["splits"].items()}


def _finish(folder: Path, shards: dict[str, ExampleShards]) -> None:
    write_json(folder / DONE_FILE, {"splits": {split: {"files": [p.name for p in s.paths], "rows": s.rows}
                                               for split, s in shards.items()}})


def build_examples(run_dir: Path, key: str, splits: dict[str, tuple[ProductTable, CleaningPlan]],
                   none_answer: str, *, write: bool = True, text_free_copies: bool = False,
                   scrambler: ValueScrambler | None = None) -> dict[str, ExampleShards]:
    """The cleaned example shards of each split (``{split: (staged products, cleaning plan)}``),
    reused from ``examples-<key>`` when complete, written otherwise (only where ``write``: the
    main process; the others read what it wrote). ``text_free_copies`` and ``scrambler`` apply to
    the train split only (and must be part of ``key``)."""
    root = Path(run_dir) / DATA_FOLDER
    folder = root / f"examples-{key}"
    if _fresh(folder) or not write:
        log.info("Reusing the training examples in %s", folder)
        return _load(folder)
    folder = _claim(root, "examples", key)
    shards = {}
    for split, (table, plan) in splits.items():
        train = split == "train"
        rows = example_rows(_cleaned(table, plan), none_answer, text_free_copies and train,
                            scrambler if train else None)
        shards[split] = _write_shards(folder, split, rows, EXAMPLE_SCHEMA)
    _finish(folder, shards)
    return shards


def tokenize_shards(run_dir: Path, key: str, examples: dict[str, ExampleShards],
                    tokenizers: dict[str, Callable[[dict[str, list]], dict[str, list]]], *,
                    write: bool = True) -> dict[str, tuple["datasets.Dataset", ExampleShards]]:
    """Each split's example shards tokenized with ``datasets.map`` (``tokenizers[split]``: the batched
    map function, :func:`mxt_sdk.data.examples.example_tokenizer`) into ``tokens-<key>``, or reused
    from there; returns per split the concatenated memory-mapped dataset and its shard files."""
    import datasets  # heavy (pandas, pyarrow: ~0.8 s), so imported when training starts, not with mxt_sdk

    root = Path(run_dir) / DATA_FOLDER
    folder = root / f"tokens-{key}"
    if not (_fresh(folder) or not write):
        folder = _claim(root, "tokens", key)
        done = {}
        for split, shards in examples.items():
            paths = []
            for number, source in enumerate(shards.paths):
                target = folder / source.name
                rows = datasets.Dataset.from_file(str(source))
                rows.map(tokenizers[split], batched=True, remove_columns=["prompt"], cache_file_name=str(target),
                         new_fingerprint=f"{key}-{split}-{number}", desc=f"Tokenizing {split} {number + 1}/"
                                                                         f"{len(shards.paths)}")
                del rows  # unmaps the shard before the next one is read
                paths.append(target)
            done[split] = ExampleShards(tuple(paths), shards.rows)
        _finish(folder, done)
    tokens = _load(folder)
    return {split: (datasets.concatenate_datasets([datasets.Dataset.from_file(str(p)) for p in shards.paths]), shards)
            for split, shards in tokens.items()}


def token_stats(shards: ExampleShards) -> tuple[int, int]:
    """``(longest answer in tokens, prompts cut)`` of tokenized shards, read one batch at a time."""
    longest = truncated = 0
    for path in shards.paths:
        with pa.OSFile(str(path), "rb") as source, pa.ipc.open_stream(source) as reader:
            for batch in reader:
                lengths = pc.list_value_length(batch.column("labels"))
                longest = max(longest, pc.max(lengths).as_py() or 0)
                truncated += pc.sum(batch.column("truncated").cast(pa.int64())).as_py() or 0
    return longest, truncated
