"""Reading product files through the registered readers, with format auto-detection.

The core knows no format: it asks every registered :class:`~mxt_sdk.Reader` whether it recognises
a file (:meth:`~mxt_sdk.Reader.can_read`) and hands the file to the one that does. Readers are
expected to recognise disjoint files (the built-ins check suffix *and* content, e.g. the keys of the
first JSON line), so detection never depends on registration order: when several claim a file, the
error lists them and asks for an explicit ``reader=``.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mxt_sdk.errors import DataFileError, DataFileNotFoundError, RecordError
from mxt_sdk.plugins import manager
from mxt_sdk.types import Product, generated_id, product_from_record

__all__ = ["detect_reader", "read_products", "iter_valid_products", "load_products", "REJECTED_FILE"]

REJECTED_FILE = "rejected.jsonl"
log = logging.getLogger("mxt_sdk.data")


def _existing_file(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise DataFileNotFoundError(f"No such data file: {str(path)!r}.")
    if not path.is_file():
        raise DataFileNotFoundError(f"{str(path)!r} is a folder, not a data file; name one file in it.")
    return path


def detect_reader(path: str | Path) -> str:
    """The name of the one registered reader that recognises ``path``.

    Raises :class:`~mxt_sdk.errors.DataFileNotFoundError` when ``path`` is not a file, and
    :class:`~mxt_sdk.errors.DataFileError` listing the readers when none or several recognise it.
    """
    path = _existing_file(path)
    readers = manager.list_components("readers")
    matches = [info.name for info in readers if info.cls.can_read(path)]
    if len(matches) == 1:
        return matches[0]
    available = ", ".join(info.name for info in readers) or "(none installed)"
    if not matches:
        raise DataFileError(
            f"No reader recognises {str(path)!r} (suffix {path.suffix or '(none)'!r}; readers check "
            f"the suffix and the first record). Available readers: {available}. Pass reader=<name> "
            "(or --reader) to choose one; its errors then say what is wrong with the file."
        )
    raise DataFileError(
        f"Several readers recognise {str(path)!r}: {', '.join(matches)}. Pass reader=<name> "
        "(or --reader) to choose one."
    )


def read_products(path: str | Path, reader: str | None = None,
                  **options: Any) -> Iterator[Product | RecordError]:
    """Yield one :class:`Product` or :class:`RecordError` per record of ``path``, in file order.

    ``reader`` names a registered reader (detected with :func:`detect_reader` when None);
    ``options`` are that reader's options, validated before anything is read. The file, the reader
    and its options are checked now, before the first record is asked for; bad records come out as
    ``RecordError`` items, never as exceptions. Example::

        for item in read_products("train.jsonl"):
            if isinstance(item, RecordError):
                print(item)
    """
    path = _existing_file(path)
    name = reader if reader is not None else detect_reader(path)
    return manager.create("readers", name, options).read(path)


def iter_valid_products(source: str | Path | Iterable[Product | dict[str, Any]], split: str,
                        reader: str | None = None, rejected_log: Path | None = None) -> Iterator[Product]:
    """The valid products of a data file or an iterable of products / dicts, one at a time (nothing is
    held but the record being read). Bad records are appended to ``rejected_log`` (JSON lines: split,
    source, error) as they come when given, and logged with a count at the end; none are silently
    lost. Raises :class:`~mxt_sdk.errors.DataFileError` at the end when no record was usable."""
    if isinstance(source, (str, Path)):
        items: Iterable[Any] = read_products(source, reader)
        name = Path(source).name
    else:
        items, name = source, f"{split} records"
    valid = rejected = 0
    first_error = None
    for position, item in enumerate(items):
        try:
            if isinstance(item, RecordError):
                raise item
            product = (item if isinstance(item, Product)
                       else product_from_record(item, f"record {position}", default_id=generated_id(position)))
        except RecordError as exc:
            rejected += 1
            first_error = first_error or str(exc)
            if rejected_log is not None:
                with open(rejected_log, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps({"split": split, "source": name, "error": str(exc)},
                                            ensure_ascii=False) + "\n")
            continue
        valid += 1
        yield product
    if rejected:
        log.warning("%s: skipped %d bad records of %d%s, e.g. %s", name, rejected, rejected + valid,
                    f" (see {rejected_log})" if rejected_log else "", first_error)
    if not valid:
        first = f"; first error: {first_error}" if rejected else ""
        raise DataFileError(f"{name}: no usable {split} records{first}")


def load_products(source: str | Path | Iterable[Product | dict[str, Any]], split: str,
                  reader: str | None = None, rejected_log: Path | None = None) -> list[Product]:
    """The valid products of ``source`` as a list, for a whole-data job that holds them (evaluation);
    see :func:`iter_valid_products` for the handling of bad records."""
    return list(iter_valid_products(source, split, reader, rejected_log))
