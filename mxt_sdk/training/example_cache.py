"""Training examples, cached beside the run and built in bounded memory.

From staged products (:mod:`mxt_sdk.training.staging`) and a cleaning plan
(:func:`mxt_sdk.data.cleaning.plan_cleaning`), one row per (product, attribute) label, cleaned
(``product_row``: the product's row in the split's staged products, ``product_type``, ``attribute``,
``answer``, ``prompt``, ``image``; :func:`mxt_sdk.data.examples.product_examples`), is written in
Arrow shards of :data:`SHARD_ROWS` rows under ``<run>/cache/data/examples-<key>/``; the catalog
metadata of the training labels (``metadata.json``, :func:`catalog_metadata`) is counted in a pass of
its own when the model is saved, and kept beside them. The key hashes
the staged products and the settings that shape the rows (normalizers, ``none_answer``). A re-run
(resume) with the same data and settings reuses them; other data or settings build a new folder and
remove the old one. The rows hold no prompt (but a scrambled example's): training reads the shards
memory-mapped (:func:`open_examples`), and each batch, as it is drawn, gets its prompts built from
its products (:class:`ExamplePrompts`, random access to the staged products) and is tokenized
(:class:`mxt_sdk.data.examples.ExampleEncoder`). Nothing builds a prompt or tokenizes for the
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
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic_core import from_json

from mxt_sdk.data.cleaning import CleaningPlan, LabelCounts
from mxt_sdk.data.examples import MetadataCounter, product_examples
from mxt_sdk.data.metadata import CatalogMetadata, new_value_shares
from mxt_sdk.data.prompt import build_prompt
from mxt_sdk.data.scrambles import ValueScrambler
from mxt_sdk.storage import write_json, write_text
from mxt_sdk.training.staging import (DATA_FOLDER, ProductTable, read_arrow, read_batches, staged_product,
                                     write_arrow)

if TYPE_CHECKING:
    import datasets

log = logging.getLogger("mxt_sdk.training")

__all__ = ["SHARD_ROWS", "ExampleShards", "ExamplePrompts", "InOrderPrompts", "catalog_metadata", "build_examples", "open_examples", "distinct_values", "cache_key",
           "remove_token_caches"]

#: Examples per shard file.
SHARD_ROWS = 100_000
DONE_FILE, METADATA_FILE = "done.json", "metadata.json"
EXAMPLE_SCHEMA = pa.schema([("product_row", pa.int64()), ("product_type", pa.string()), ("attribute", pa.string()),
                            ("answer", pa.string()), ("prompt", pa.string()),
                            ("image", pa.string())])
#: the columns a drawn batch is built from
DRAWN_COLUMNS = ["product_row", "attribute", "prompt", "answer", "image"]
_VERSION = 6  # bump when the rows change meaning or columns


def cache_key(*parts: Any) -> str:
    """A short SHA-256 of JSON-able ``parts`` (folder names of the caches)."""
    text = json.dumps([_VERSION, *parts], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


@dataclass(frozen=True)
class ExampleShards:
    """The shard files of one split, in order, their row count, and the split's staged products
    (the Arrow file that ``product_row`` indexes)."""

    paths: tuple[Path, ...]
    rows: int
    products: Path

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


class ExamplePrompts:
    """Fills in the prompts of a batch of example rows (``{column: values}`` with ``product_row``,
    ``attribute`` and ``prompt``) from their split's staged products, memory-mapped on
    first use (so it pickles as a path, for data-loader workers): each missing one is
    ``build_prompt(attribute, product)``, the prompt :func:`~mxt_sdk.data.examples.example_rows`
    would have stored."""

    def __init__(self, products: Path):
        self.products, self._table = Path(products), None

    def __getstate__(self) -> dict[str, Any]:
        return {"products": self.products, "_table": None}

    def __call__(self, batch: dict[str, list]) -> list[str]:
        prompts = list(batch["prompt"])
        missing = [i for i, prompt in enumerate(prompts) if prompt is None]
        if not missing:
            return prompts
        texts = self._texts([batch["product_row"][i] for i in missing])
        for i, text in zip(missing, texts):
            prompts[i] = build_prompt(batch["attribute"][i], staged_product(from_json(text)))
        return prompts

    def _texts(self, rows: list[int]) -> list[str]:
        """The staged JSON of the products in ``rows``."""
        if self._table is None:
            with pa.ipc.open_stream(pa.memory_map(str(self.products))) as reader:
                chunks = reader.read_all().column("product").chunks  # zero-copy: they point into the mapped file
            self._table = (chunks, list(accumulate((len(chunk) for chunk in chunks), initial=0)))
        chunks, starts = self._table
        # row by row from its own chunk: ChunkedArray.take would first copy the whole column into one array
        found = [bisect_right(starts, row) - 1 for row in rows]
        return [chunks[chunk][row - starts[chunk]].as_py() for row, chunk in zip(rows, found)]


class InOrderPrompts(ExamplePrompts):
    """:class:`ExamplePrompts` for batches whose ``product_row`` never goes back (a pass over the shards
    in order): the products are read forward, one chunk at a time, with buffered reads (nothing
    mapped, so a pass touching every chunk leaves nothing resident)."""

    def __init__(self, products: Path):
        super().__init__(products)
        self._batches, self._start, self._batch = read_batches(self.products), 0, None

    def _texts(self, rows: list[int]) -> list[str]:
        texts = []
        for row in rows:
            while self._batch is None or row >= self._start + self._batch.num_rows:
                if self._batch is not None:
                    self._start += self._batch.num_rows
                self._batch = next(self._batches)
            if row < self._start:
                raise ValueError(f"product row {row} comes after row {self._start}: rows must not go back")
            texts.append(self._batch.column("product")[row - self._start].as_py())
        return texts


@dataclass(frozen=True)
class DrawnExamples:
    """The transform of :func:`open_examples`: a drawn batch's prompts filled in, then ``encode``d
    (fed ``prompt``, ``answer`` and ``image``)."""

    prompts: ExamplePrompts
    encode: Callable[[dict[str, list]], dict[str, list]]

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        return self.encode({"prompt": self.prompts(batch), "answer": batch["answer"], "image": batch["image"]})


def _write_shards(folder: Path, split: str, rows: Iterable[tuple], schema: pa.Schema,
                  products: Path) -> ExampleShards:
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
    return ExampleShards(tuple(paths), total, products)


def _load(folder: Path, tables: dict[str, ProductTable]) -> dict[str, ExampleShards]:
    done = json.loads((folder / DONE_FILE).read_text(encoding="utf-8"))
    return {split: ExampleShards(tuple(folder / name for name in entry["files"]), entry["rows"], tables[split].path)
            for split, entry in done["splits"].items()}


def _finish(folder: Path, shards: dict[str, ExampleShards]) -> None:
    write_json(folder / DONE_FILE, {"splits": {split: {"files": [p.name for p in s.paths], "rows": s.rows}
                                               for split, s in shards.items()}})


def build_examples(run_dir: Path, key: str, splits: dict[str, tuple[ProductTable, CleaningPlan]],
                   none_answer: str, *, write: bool = True,
                   scrambler: ValueScrambler | None = None) -> dict[str, ExampleShards]:
    """The cleaned example shards of each split (``{split: (staged products, cleaning plan)}``),
    reused from ``examples-<key>`` when complete, written otherwise (only where ``write``: the main
    process; the others read what it wrote). ``scrambler`` applies to the train split only (and
    must be part of ``key``)."""
    root = Path(run_dir) / DATA_FOLDER
    folder = root / f"examples-{key}"
    if _fresh(folder) or not write:
        log.info("Reusing the training examples in %s", folder)
        return _load(folder, {split: table for split, (table, _) in splits.items()})
    folder = _claim(root, "examples", key)

    def rows(table: ProductTable, plan: CleaningPlan, train: bool) -> Iterator[tuple]:
        scrambles = scrambler if train else None
        for row, product in enumerate(table.products(plan.relabel)):
            for attribute, answer, prompt in product_examples(product, none_answer, scrambles):
                yield row, product.product_type, attribute, answer, prompt, product.image  # EXAMPLE_SCHEMA

    shards = {}
    for split, (table, plan) in splits.items():
        shards[split] = _write_shards(folder, split, rows(table, plan, split == "train"), EXAMPLE_SCHEMA, table.path)
    _finish(folder, shards)
    return shards


def catalog_metadata(run_dir: Path, key: str, table: ProductTable, plan: CleaningPlan,
                     labels: LabelCounts | None = None, *, write: bool = True) -> CatalogMetadata:
    """The catalog metadata of the training split's cleaned labels, with the values its texts state
    (:class:`~mxt_sdk.data.examples.MetadataCounter`, one pass over the staged products): read from
    ``metadata.json`` beside the example shards of ``key`` when there, counted and written there
    otherwise (only where ``write``: the main process; the others read what it wrote). Only the
    saved model needs it, so training counts it after its last step, not before its first."""
    path = Path(run_dir) / DATA_FOLDER / f"examples-{key}" / METADATA_FILE
    if path.is_file() or not write:
        return CatalogMetadata.model_validate_json(path.read_text(encoding="utf-8"))
    counter = MetadataCounter()
    for product in table.products(plan.relabel):
        counter.add(product.product_type, product.attributes, product.text)
    metadata = counter.metadata()
    metadata.new_values = new_value_shares((labels or table.label_counts()).counts)
    write_text(path, metadata.model_dump_json())  # keeps the order of pairs and values
    return metadata


def open_examples(shards: ExampleShards, encode: Callable[[dict[str, list]], dict[str, list]]) -> "datasets.Dataset":
    """The example shards as one memory-mapped ``datasets.Dataset`` whose batches come out through
    :class:`DrawnExamples`: prompts built, then ``encode`` (fed the ``prompt``, ``answer`` and
    ``image`` of each batch drawn; :class:`mxt_sdk.data.examples.ExampleEncoder`)."""
    import datasets  # heavy (pandas, pyarrow: ~0.8 s), so imported when training starts, not with mxt_sdk

    rows = datasets.concatenate_datasets([datasets.Dataset.from_file(str(path)) for path in shards.paths])
    return rows.with_transform(DrawnExamples(ExamplePrompts(shards.products), encode), columns=DRAWN_COLUMNS)


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
