"""The SDK's Parquet layout of products: writing it, and reading rows back one batch at a time.

Layout: one row per :class:`~mxt_sdk.Product`; columns ``id``, ``product_type``, ``title``,
``description``, ``image`` (strings, the last two nullable), ``bullets`` (list of strings) and
``attributes`` (string: a JSON object mapping attribute name to value, ``null`` = "not stated").

Why ``attributes`` is JSON text: as an Arrow *struct* (what ``datasets.Dataset.from_list`` makes of
dicts) every row gets a field for every attribute seen anywhere in the file, filled with null, which
erases the difference between "absent" and ``None`` ("known not to be stated"); an Arrow *map* keeps
it, but ``datasets`` refuses map columns ("does not have a datasets dtype equivalent"). JSON text
survives every tool (``datasets``, pandas, DuckDB). Reading also accepts a map column and a struct
column; in a struct, null fields are dropped (read as absent), since they cannot be told apart.

Why pyarrow rather than ``datasets.load_dataset("parquet", streaming=True)``: the ``datasets``
Parquet builder is itself a thin wrapper around ``pyarrow.parquet.ParquetFile.iter_batches``, but
it refuses map columns and casts to its own feature types; reading the batches directly streams the
same way (memory bounded by one batch) and keeps every row's number for error messages.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mxt_sdk.errors import DataFileError, RecordError
from mxt_sdk.types import Product

PARQUET_SUFFIXES = (".parquet", ".pq")
PARQUET_MAGIC = b"PAR1"

SCHEMA = pa.schema([
    ("id", pa.string()),
    ("product_type", pa.string()),
    ("title", pa.string()),
    ("description", pa.string()),
    ("bullets", pa.list_(pa.string())),
    ("image", pa.string()),
    ("attributes", pa.string()),
])


def where(path: Path, row: int) -> str:
    """How a Parquet record is named in messages: ``"row 12 of products.parquet"``."""
    return f"row {row} of {path.name}"


def column_names(path: Path) -> list[str] | None:
    """The column names of a Parquet file (its footer only), or None when it is not Parquet."""
    try:
        with path.open("rb") as handle:
            if handle.read(4) != PARQUET_MAGIC:
                return None
        return list(pq.read_schema(path).names)
    except (OSError, pa.ArrowException):
        return None


def iter_rows(path: Path, batch_size: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(row number from 1, row as a dict)``; raise :class:`DataFileError` if unreadable."""
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataFileError(f"{path}: not a readable Parquet file ({exc}).") from None
    row = 0
    with parquet:
        for batch in parquet.iter_batches(batch_size=batch_size):
            for record in batch.to_pylist():
                row += 1
                yield row, record


def to_product_record(record: dict[str, Any], name: str) -> dict[str, Any]:
    """Undo the storage encoding of one row (``attributes`` as JSON text, map pairs or struct; a null
    ``bullets`` list) so that it validates as a :class:`Product`; the row is changed in place."""
    attributes = record.get("attributes")
    if attributes is None:
        record.pop("attributes", None)
    elif isinstance(attributes, str):
        try:
            record["attributes"] = json.loads(attributes) if attributes.strip() else {}
        except json.JSONDecodeError as exc:
            raise RecordError(name, "attributes", f"is not valid JSON ({exc.msg})") from None
    elif isinstance(attributes, list):  # an Arrow map column: [(key, value), ...]
        record["attributes"] = dict(attributes)
    elif isinstance(attributes, dict):  # an Arrow struct column: nulls are padding, not "not stated"
        record["attributes"] = {k: v for k, v in attributes.items() if v is not None}
    if "bullets" in record and record["bullets"] is None:
        del record["bullets"]
    return record


def write_products(products: Iterable[Product], path: str | Path, *, row_group_size: int = 10_000) -> int:
    """Write ``products`` to ``path`` in the layout above; return how many rows were written.

    Rows are written in groups of ``row_group_size`` (memory bounded by one group), into a file beside
    ``path`` that replaces it only once complete.
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    written = 0
    try:
        with pq.ParquetWriter(partial, SCHEMA) as writer:
            group: list[dict[str, Any]] = []
            for product in products:
                group.append(_to_row(product))
                if len(group) == row_group_size:
                    writer.write_table(pa.Table.from_pylist(group, schema=SCHEMA))
                    written, group = written + len(group), []
            if group or not written:
                writer.write_table(pa.Table.from_pylist(group, schema=SCHEMA))
                written += len(group)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return written


def _to_row(product: Product) -> dict[str, Any]:
    row = product.model_dump()
    row["attributes"] = json.dumps(product.attributes, ensure_ascii=False)
    return row
