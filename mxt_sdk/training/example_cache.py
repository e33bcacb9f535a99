"""Training examples, cached beside the run and built in bounded memory.

From staged products (:mod:`mxt_sdk.training.staging`) and a cleaning plan
(:func:`mxt_sdk.data.cleaning.plan_cleaning`), one row per (product, attribute) label, cleaned
(``product_id``, ``product_type``, ``attribute``, ``prompt``, ``answer``, ``image``), is written in
Arrow shards of :data:`SHARD_ROWS` rows under ``<run>/cache/data/examples-<key>/``, with the catalog
metadata of the training labels (``metadata.json``, counted in the same pass); the key hashes
the staged products and the settings that shape the rows (normalizers, ``none_answer``). A re-run
(resume) with the same data and settings reuses them; other data or settings build a new folder and
remove the old one. Training reads the shards memory-mapped (:func:`open_examples`) and tokenizes
each batch as it is drawn (:class:`mxt_sdk.data.examples.ExampleEncoder`): nothing tokenizes the
whole catalog before the first step, so no token cache exists (``tokens-*`` folders of earlier
versions are removed, :func:`remove_token_caches`).

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
from mxt_sdk.data.examples import MetadataCounter, example_rows
from mxt_sdk.data.metadata import CatalogMetadata
from mxt_sdk.data.scrambles import ValueScrambler
from mxt_sdk.storage import write_json, write_text
from mxt_sdk.training.staging import DATA_FOLDER, ProductTable, read_arrow, read_batches, write_arrow
from mxt_sdk.types import Product

if TYPE_CHECKING:
    import datasets

log = logging.getLogger("mxt_sdk.training")

__all__ = ["SHARD_ROWS", "ExampleShards", "build_examples", "open_examples", "distinct_values", "cache_key",
           "remove_token_caches"]

#: Examples per shard file.
SHARD_ROWS = 100_000
DONE_FILE, METADATA_FILE = "done.json", "metadata.json"
EXAMPLE_SCHEMA = pa.schema([("product_id", pa.string()), ("product_type", pa.string()), ("attribute", pa.string()),
                            ("prompt", pa.string()), ("answer", pa.string()), ("image", pa.string())])
_VERSION = 3  # bump when the rows change meaning


def cache_key(*parts: Any) -> str:
    """A short SHA-256 of JSON-able ``parts`` (folder names of the caches)."""
    text = json.dumps([_VERSION, *parts], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


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
    return table.products(plan.relabel)


def _load(folder: Path) -> dict[str, ExampleShards]:
    done = json.loads((folder / DONE_FILE).read_text(encoding="utf-8"))
    return {split: ExampleShards(tuple(folder / name for name in entry["files"]), entry["rows"])
            for split, entry in done["splits"].items()}


def _finish(folder: Path, shards: dict[str, ExampleShards]) -> None:
    write_json(folder / DONE_FILE, {"splits": {split: {"files": [p.name for p in s.paths], "rows": s.rows}
                                               for split, s in shards.items()}})


def build_examples(run_dir: Path, key: str, splits: dict[str, tuple[ProductTable, CleaningPlan]],
                   none_answer: str, *, write: bool = True, text_free_copies: bool = False,
                   scrambler: ValueScrambler | None = None) -> tuple[dict[str, ExampleShards], CatalogMetadata]:
    """The cleaned example shards of each split (``{split: (staged products, cleaning plan)}``) and
    the catalog metadata of the train split's cleaned labels (:func:`~mxt_sdk.data.examples.metadata_from_labels`,
    counted in the same pass and kept beside the shards), reused from ``examples-<key>`` when
    complete, written otherwise (only where ``write``: the main process; the others read what it
    wrote). ``text_free_copies`` and ``scrambler`` apply to the train split only (and must be part
    of ``key``)."""
    root = Path(run_dir) / DATA_FOLDER
    folder = root / f"examples-{key}"
    if _fresh(folder) or not write:
        log.info("Reusing the training examples in %s", folder)
        return _load(folder), CatalogMetadata.model_validate_json((folder / METADATA_FILE).read_text(encoding="utf-8"))
    folder = _claim(root, "examples", key)
    counter = MetadataCounter()

    def counted(products: Iterator[Product]) -> Iterator[Product]:
        for product in products:
            counter.add(product.product_type, product.attributes, product.text)
            yield product

    shards = {}
    for split, (table, plan) in splits.items():
        train = split == "train"
        products = counted(_cleaned(table, plan)) if train else _cleaned(table, plan)
        rows = example_rows(products, none_answer, text_free_copies and train, scrambler if train else None)
        shards[split] = _write_shards(folder, split, rows, EXAMPLE_SCHEMA)
    metadata = counter.metadata()
    write_text(folder / METADATA_FILE, metadata.model_dump_json())  # keeps the order of pairs and values
    _finish(folder, shards)
    return shards, metadata


def open_examples(shards: ExampleShards, transform: Callable[[dict[str, list]], dict[str, list]]) -> "datasets.Dataset":
    """The example shards as one memory-mapped ``datasets.Dataset`` whose rows come out through
    ``transform`` (fed the ``prompt``, ``answer`` and ``image`` columns of each batch drawn;
    :class:`mxt_sdk.data.examples.ExampleEncoder`)."""
    import datasets  # heavy (pandas, pyarrow: ~0.8 s), so imported when training starts, not with mxt_sdk

    rows = datasets.concatenate_datasets([datasets.Dataset.from_file(str(path)) for path in shards.paths])
    return rows.with_transform(transform, columns=["prompt", "answer", "image"])


def distinct_values(shards: ExampleShards, column: str) -> Iterator[str]:
    """The distinct non-null values of ``column``, first seen first, read one batch at a time (memory
    grows with the distinct values only)."""
    seen: set[str] = set()
    for batch in read_batches(shards.paths):
        for value in pc.unique(batch.column(column)).to_pylist():
            if value is not None and value not in seen:
                seen.add(value)
                yield value


def remove_token_caches(run_dir: Path) -> None:
    """Remove the ``tokens-*`` folders that earlier versions cached under ``<run>/cache/data``."""
    for stale in (Path(run_dir) / DATA_FOLDER).glob("tokens-*"):
        shutil.rmtree(stale, ignore_errors=True)
