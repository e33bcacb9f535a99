"""``products``: the SDK's own format, one :class:`~mxt_sdk.Product` per record.

* JSON Lines (``.jsonl``, ``.json``, ``.ndjson``): one object per line with the fields of
  ``Product`` (``id``, ``product_type``, ``title``, ``description``, ``bullets``, ``image``,
  ``attributes``); blank lines are skipped. Read line by line (see :mod:`mxt_readers._jsonl`).
* Parquet (``.parquet``, ``.pq``): the layout of :mod:`mxt_readers._parquet`, written by
  :func:`write_products`; read one row batch at a time.

Records are named ``line N of FILE`` (JSON Lines) or ``row N of FILE`` (Parquet) in errors.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pydantic import Field

from mxt_sdk import ComponentOptions, Product, Reader
from mxt_sdk.errors import RecordError
from mxt_sdk.types import product_from_record

from mxt_readers import _jsonl, _parquet
from mxt_readers._lines import has_suffix
from mxt_readers._parquet import write_products

__all__ = ["ProductsReader", "write_products"]

_FIELDS = frozenset(Product.model_fields)


def _looks_like_product(keys: set[str]) -> bool:
    """A record is recognised when it has a title and no key foreign to ``Product``."""
    return "title" in keys and keys <= _FIELDS


class ProductsReader(Reader):
    """Reads the SDK's own product files (JSON Lines or Parquet)."""

    name = "products"

    class Options(ComponentOptions):
        batch_size: int = Field(default=1024, ge=1, description="Parquet rows decoded at a time.")

    @classmethod
    def can_read(cls, path: Path) -> bool:
        """JSON Lines whose first record looks like a product, or Parquet with a ``title`` column."""
        if has_suffix(path, _parquet.PARQUET_SUFFIXES):
            columns = _parquet.column_names(path)
            return columns is not None and _looks_like_product(set(columns))
        if has_suffix(path, _jsonl.JSONL_SUFFIXES):
            first = _jsonl.first_object(path)
            return first is not None and _looks_like_product(set(first))
        return False

    def read(self, path: Path) -> Iterator[Product | RecordError]:
        if has_suffix(path, _parquet.PARQUET_SUFFIXES):
            yield from self._read_parquet(path)
        else:
            yield from self._read_jsonl(path)

    def _read_jsonl(self, path: Path) -> Iterator[Product | RecordError]:
        for line, record in _jsonl.iter_objects(path):
            if isinstance(record, RecordError):
                yield record
                continue
            try:
                yield product_from_record(record, where=_jsonl.where(path, line))
            except RecordError as error:
                yield error

    def _read_parquet(self, path: Path) -> Iterator[Product | RecordError]:
        for row, record in _parquet.iter_rows(path, self.options.batch_size):
            name = _parquet.where(path, row)
            try:
                yield product_from_record(_parquet.to_product_record(record, name), where=name)
            except RecordError as error:
                yield error
