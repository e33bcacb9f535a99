"""Training products staged on disk: read once from the data (file or iterable), validated,
fingerprinted, its labels counted, and written in chunks to Arrow files in the run folder, then read
back in chunks by every later pass (the examples). Nothing holds the catalog in memory.

Layout, under ``<run>/cache/data/`` (:mod:`mxt_sdk.training.layout`)::

    products-train.arrow  products-val.arrow   one row per valid product: ``product``, its canonical
                                               JSON (``Product.model_dump_json()``)
    labels-train.json     labels-val.json      the count of each distinct label (taken while staging,
                                               for label cleaning: no second pass over the products)
    staged.json                                counts and fingerprints of the files above

The files are rewritten whenever the data is read, which is every run unless the data files are
unchanged since the last one (same path, size and modification time: then they and their
fingerprint are reused); the caches built from them are :mod:`mxt_sdk.training.example_cache`. Arrow files are written
as IPC streams (what ``datasets`` memory-maps) through a temporary name, and read back with plain
buffered reads, so a pass over them holds one chunk at a time and maps nothing into the process.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic_core import from_json

from mxt_sdk.data.readers import iter_valid_products
from mxt_sdk.data.cleaning import LabelCounts
from mxt_sdk.storage import read_json, write_json, write_text
from mxt_sdk.training.run_guard import DataDigest, data_fingerprint
from mxt_sdk.types import Product

log = logging.getLogger("mxt_sdk.training")

__all__ = ["CHUNK_ROWS", "ProductTable", "StagedData", "stage_data", "staged_product", "write_arrow", "read_arrow",
           "read_batches", "DATA_FOLDER"]

#: Rows per Arrow record batch: what a pass holds at once.
CHUNK_ROWS = 4096
DATA_FOLDER = Path("cache") / "data"
STAGED_FILE = "staged.json"
#: bumped when the staged files change layout or fingerprint: a folder staged by another version is staged again
STAGED_VERSION = 2
PRODUCT_SCHEMA = pa.schema([("product", pa.string())])


def write_arrow(path: Path, schema: pa.Schema, rows: Iterable[tuple], limit: int | None = None) -> int:
    """Write ``rows`` (tuples of ``schema``'s fields, in its order) to the Arrow stream file ``path``
    in batches of :data:`CHUNK_ROWS`, at most ``limit`` rows (None: all); atomically (through
    ``<path>.tmp``). Returns the rows written."""
    temporary = path.with_name(path.name + ".tmp")
    written = 0
    iterator = iter(rows) if limit is None else islice(rows, limit)
    with pa.OSFile(str(temporary), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        while chunk := list(islice(iterator, CHUNK_ROWS)):
            # column by column: ten times faster than RecordBatch.from_pylist, which converts row by row
            writer.write_batch(pa.RecordBatch.from_arrays([pa.array(column, field.type) for column, field in
                                                           zip(zip(*chunk), schema)], schema=schema))
            written += len(chunk)
    os.replace(temporary, path)
    return written


def read_batches(paths: Path | Iterable[Path]) -> Iterator[pa.RecordBatch]:
    """The record batches of one Arrow stream file or several in turn (buffered reads: nothing is
    memory-mapped)."""
    for path in [paths] if isinstance(paths, Path) else paths:
        with pa.OSFile(str(path), "rb") as source, pa.ipc.open_stream(source) as reader:
            yield from reader


def read_arrow(paths: Path | Iterable[Path], columns: list[str]) -> Iterator[dict[str, list]]:
    """The ``columns`` of :func:`read_batches`, one batch at a time, as ``{column: values}``."""
    for batch in read_batches(paths):
        yield {name: batch.column(name).to_pylist() for name in columns}


_FIELDS = frozenset(Product.model_fields)


def staged_product(fields: dict[str, Any]) -> Product:
    """The product of one staged row, ``fields`` being its parsed JSON (every field of a validated
    product's dump), taken as it is: what ``Product.model_construct(**fields)`` builds (no field
    has an alias, a default to fill or a post-init hook), without its per-field work, which costs
    more than parsing the row."""
    product = Product.__new__(Product)
    object.__setattr__(product, "__dict__", fields)
    object.__setattr__(product, "__pydantic_fields_set__", set(_FIELDS))
    object.__setattr__(product, "__pydantic_extra__", None)
    object.__setattr__(product, "__pydantic_private__", None)
    return product


@dataclass(frozen=True)
class ProductTable:
    """One split of staged products: the Arrow file, its row count and the SHA-256 of its products
    (:class:`~mxt_sdk.training.run_guard.DataDigest`)."""

    path: Path
    count: int
    fingerprint: str

    def label_counts(self) -> LabelCounts:
        """The label counts taken while the products were staged (``labels-<split>.json``)."""
        return LabelCounts.from_json(read_json(_labels_path(self.path)))

    def label_rows(self) -> Iterator[tuple[str, dict[str, str | None]]]:
        """``(product type, attributes)`` of each product, in order (what :meth:`label_counts` counted)."""
        for fields in self.records():
            yield fields["product_type"], fields["attributes"]

    def records(self) -> Iterator[dict[str, Any]]:
        """Each product's fields as parsed from its staged JSON (no model built), in order."""
        for batch in read_arrow(self.path, ["product"]):
            yield from map(from_json, batch["product"])

    def products(self, relabel: Callable[[str, dict[str, str | None]], dict[str, str | None]] | None = None
                 ) -> Iterator[Product]:
        """The products, in order, as they were staged; with ``relabel``, each one's attributes replaced
        by ``relabel(product_type, attributes)``. Built without validating again: every staged row
        was validated when it was read (:func:`stage_data`), and is that product's own JSON dump."""
        for fields in self.records():
            if relabel is not None:
                fields["attributes"] = relabel(fields["product_type"], fields["attributes"])
            yield staged_product(fields)

    def __len__(self) -> int:
        return self.count


@dataclass(frozen=True)
class StagedData:
    """The staged splits and the data fingerprint of :func:`mxt_sdk.training.run_guard.fingerprint`."""

    train: ProductTable
    val: ProductTable | None
    data_fingerprint: str

    @classmethod
    def load(cls, run_dir: Path) -> "StagedData":
        """What :func:`stage_data` wrote under ``run_dir`` (for the processes that did not write it)."""
        folder = Path(run_dir) / DATA_FOLDER
        info = read_json(folder / STAGED_FILE)
        tables = {split: None if entry is None else ProductTable(folder / entry["file"], entry["count"],
                                                                entry["fingerprint"])
                  for split, entry in info["splits"].items()}
        return cls(tables["train"], tables["val"], info["data_fingerprint"])


def _stage_split(source: Any, split: str, folder: Path, reader: str | None,
                 rejected_log: Path | None) -> ProductTable:
    digest, labels = DataDigest(), LabelCounts()

    def rows() -> Iterator[tuple[str]]:
        for product in iter_valid_products(source, split, reader, rejected_log):
            text = product.model_dump_json()
            digest.add(text)
            labels.add(product.product_type, product.attributes)
            yield (text,)

    path = folder / f"products-{split}.arrow"
    count = write_arrow(path, PRODUCT_SCHEMA, rows())
    write_text(_labels_path(path), json.dumps(labels.to_json(), ensure_ascii=False))
    return ProductTable(path, count, digest.hexdigest())


def _labels_path(products: Path) -> Path:
    return products.with_name(products.name.replace("products-", "labels-").replace(".arrow", ".json"))


def _file_state(source: Any, reader: str | None) -> dict[str, Any] | None:
    """What identifies a data file's content cheaply (resolved path, size, modification time, reader);
    None for anything that is not a file (an iterable can only be known by reading it)."""
    if not isinstance(source, (str, Path)) or not Path(source).is_file():
        return None
    stat = Path(source).stat()
    return {"path": str(Path(source).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "reader": reader}


def stage_data(train: Any, val: Any | None, run_dir: Path, reader: str | None = None,
               rejected_log: Path | None = None) -> StagedData:
    """Read ``train`` and ``val`` (data files in any reader format, or iterables of products / dicts)
    once, skipping bad records as :func:`mxt_sdk.data.readers.iter_valid_products` does (and logging
    them to a fresh ``rejected_log``), into ``<run_dir>/cache/data/``; fingerprint them on the way.

    When both are files whose path, size and modification time (and ``reader``) are those recorded
    by the last staging in ``run_dir``, nothing is read: the staged files and their fingerprint are
    reused (a resumed run then starts without a pass over the catalog)."""
    folder = Path(run_dir) / DATA_FOLDER
    sources = {"train": _file_state(train, reader), "val": _file_state(val, reader)}
    if sources["train"] is not None and (val is None or sources["val"] is not None):
        try:
            info = read_json(folder / STAGED_FILE)
        except (OSError, ValueError):
            info = {}
        if info.get("version") == STAGED_VERSION and info.get("sources") == sources and all((folder / f"products-{s}.arrow").is_file()
                                                  for s, entry in info["splits"].items() if entry):
            log.info("Reusing the staged data in %s (the data files are unchanged: same size and time)", folder)
            return StagedData.load(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / STAGED_FILE).unlink(missing_ok=True)  # written again last: staged files count only with it
    if rejected_log is not None:
        Path(rejected_log).unlink(missing_ok=True)  # the rejections of this reading only
    train_table = _stage_split(train, "train", folder, reader, rejected_log)
    val_table = _stage_split(val, "val", folder, reader, rejected_log) if val is not None else None
    staged = StagedData(train_table, val_table, data_fingerprint(
        {"train": train_table.fingerprint, "val": val_table.fingerprint if val_table else None}))
    write_json(folder / STAGED_FILE, {
        "version": STAGED_VERSION, "data_fingerprint": staged.data_fingerprint, "sources": sources,
        "splits": {split: None if table is None else {"file": table.path.name, "count": table.count,
                                                      "fingerprint": table.fingerprint}
                   for split, table in (("train", train_table), ("val", val_table))}})
    return staged
