"""JSON Lines parsing with one error per bad line, shared by the ``products`` and ``extractgpt`` readers.

Why not ``datasets.load_dataset("json", ..., streaming=True)`` here: ``datasets`` parses JSON
Lines with pyarrow in blocks of many lines, and one malformed line makes the whole block fail
(``ArrowInvalid: JSON parse error ... in row 1``, the row counted inside the block, not the file);
streaming then yields *no* record of the file at all, and the non-streaming build raises
``DatasetGenerationError``. A reader must turn that line into one :class:`RecordError` naming its
line and go on, so JSON Lines are read here one line at a time (constant memory,
the same streaming behaviour without the all-or-nothing failure).
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic_core import from_json

from mxt_sdk.errors import RecordError

from mxt_readers._lines import first_lines, iter_lines, undecodable

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")


def where(path: Path, line: int) -> str:
    """How a JSON Lines record is named in messages: ``"line 12 of train.jsonl"``."""
    return f"line {line} of {path.name}"


def parse_object(text: str, name: str) -> dict[str, Any]:
    """Parse one line into a JSON object; raise :class:`RecordError` naming the record otherwise."""
    if undecodable(text):
        raise RecordError(name, None, "is not valid UTF-8 text")
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(name, None, f"is not valid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise RecordError(name, None, "is nested too deeply to parse") from None
    if not isinstance(record, dict):
        raise RecordError(name, None, f"must be a JSON object, got {type(record).__name__}")
    return record


def iter_objects(path: Path) -> Iterator[tuple[int, dict[str, Any] | RecordError]]:
    """Yield ``(line number, object or RecordError)`` for every non-blank line of ``path``, in order.

    Each line is parsed by pydantic-core's JSON parser first (several times faster than :mod:`json`,
    the same objects for the lines it accepts); a line it rejects or that is no object goes through
    :func:`parse_object`, which either parses it as :mod:`json` does or names what is wrong."""
    for line, text in iter_lines(path):
        if not text.strip():
            continue
        try:
            record = from_json(text)
        except Exception:  # noqa: BLE001 - any refusal: json and parse_object decide (bad UTF-8 is a TypeError)
            record = None
        if type(record) is dict:
            yield line, record
            continue
        try:
            yield line, parse_object(text, where(path, line))
        except RecordError as error:
            yield line, error


def first_object(path: Path) -> dict[str, Any] | None:
    """The first non-blank line of ``path`` as a JSON object, or None when it is not one."""
    lines = first_lines(path, 1)
    if not lines:
        return None
    try:
        return parse_object(lines[0], where(path, 1))
    except RecordError:
        return None
