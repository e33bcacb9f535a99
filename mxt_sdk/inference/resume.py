"""Continuing a killed ``mxt extract``: find how much of an output file is whole, cut the rest.

An output file holds one JSON line per (product, attribute), products in input order. A product
counts as written when all of its rows are there; the file is cut after the last whole chunk of
``batch_size`` products (so the resumed run batches the remaining products exactly as an
uninterrupted run would, and gives the same predictions), and extraction starts at the next product.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from mxt_sdk.errors import MXTError
from mxt_sdk.inference.engine import ALL_ATTRIBUTES, Request


class ResumeError(MXTError):
    """The output file was not written by this extraction (other input, attributes or order)."""


def _rows(path: Path) -> Iterable[tuple[int, dict | None]]:
    """(byte offset after the line, parsed row or None when cut off / unparsable) per line."""
    offset = 0
    with open(path, "rb") as handle:
        for line in handle:
            offset += len(line)
            if not line.endswith(b"\n"):
                yield offset, None
                return
            try:
                yield offset, json.loads(line)
            except ValueError:
                yield offset, None
                return


def resume_point(path: Path, requests: Iterable[Request], batch_size: int) -> tuple[int, int]:
    """``(records_done, byte_offset)``: how many input records ``path`` already answers in whole
    chunks of ``batch_size``, and where its bytes for them end. Raises :class:`ResumeError` when a row
    names another product or attribute than the input asks for at that place."""
    rows = iter(_rows(Path(path)))
    done, offset, chunk_end = 0, 0, (0, 0)
    for request in requests:
        end = None
        for attribute in request.attributes:
            found = next(rows, None)
            if found is None or found[1] is None:
                return chunk_end
            end, row = found
            if row.get("product_id") != request.product_id or (
                    attribute != ALL_ATTRIBUTES and row.get("attribute") != attribute):
                raise ResumeError(
                    f"{path}: row for {row.get('product_id')!r} / {row.get('attribute')!r} where this input "
                    f"asks {request.product_id!r} / {attribute!r} ({request.where}); it was written from other "
                    "input or attributes. Use --overwrite, or another --output.")
        done, offset = done + 1, end if end is not None else offset
        if done % batch_size == 0:
            chunk_end = (done, offset)
    return chunk_end


def cut(path: Path, offset: int) -> None:
    """Truncate ``path`` to ``offset`` bytes and flush that to disk."""
    with open(path, "r+b") as handle:
        handle.truncate(offset)
        handle.flush()
        os.fsync(handle.fileno())
