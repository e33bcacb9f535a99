"""Known canonical values per (product type, attribute) pair: reading a user vocabulary file,
checking and merging vocabularies, and writing one back.

A vocabulary file is either

* **JSONL**, one value per line::

      {"product_type": "dress", "attribute": "color", "value": "navy blue", "count": 12}

  (``count`` optional, default 1; blank lines ignored; a value listed twice has its counts summed), or
* **one JSON object** shaped like ``CatalogMetadata.values`` (``{"dress\\tcolor": {"navy blue": 12}}``),
  or a whole ``metadata.json`` of a model (that object under the key ``"values"``).

The format is told from the content: a file that parses as one JSON object whose values are all
objects (or that has a ``"values"`` object) is the second form; anything else is read as JSONL.
Every problem raises :class:`VocabularyFileError` naming the file, the line (JSONL) or key (JSON)
and the field.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mxt_sdk.errors import DataFileError, DataFileNotFoundError

__all__ = ["Pair", "Vocabulary", "VocabularyFileError", "read_vocabulary_file", "check_vocabulary",
           "merge_vocabularies", "write_vocabulary_jsonl"]

Pair = tuple[str, str]
Vocabulary = dict[Pair, dict[str, int]]

_JSONL_FIELDS = ("product_type", "attribute", "value", "count")


class VocabularyFileError(DataFileError):
    """A vocabulary file that cannot be used; the message names the line or key and the field."""

    def __init__(self, path: Path, where: str | None, field: str | None, reason: str):
        self.path, self.where, self.field, self.reason = path, where, field, reason
        location = str(path) + (f", {where}" if where else "") + (f", field {field!r}" if field else "")
        super().__init__(f"Vocabulary file {location}: {reason}")


def _count(value: Any) -> int | None:
    """A positive int count, or None when ``value`` is not one (bools are not counts)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return None
    return value


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _add(vocabulary: Vocabulary, pair: Pair, value: str, count: int) -> None:
    values = vocabulary.setdefault(pair, {})
    values[value] = values.get(value, 0) + count


def read_vocabulary_file(path: str | os.PathLike[str], *, allow_empty: bool = False) -> Vocabulary:
    """Read a vocabulary file in either format (see the module docstring). An empty file is an
    error unless ``allow_empty`` (a saved canonicalizer that was fitted on nothing)."""
    path = Path(path)
    if not path.is_file():
        raise DataFileNotFoundError(
            f"Vocabulary file {path} does not exist or is not a file (option 'vocabulary_file' of the "
            "'faiss' canonicalizer); give the path of a JSONL or JSON vocabulary."
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise VocabularyFileError(path, None, None, f"not UTF-8 text ({exc.reason} at byte {exc.start}).") from None
    if not text.strip():
        if allow_empty:
            return {}
        raise VocabularyFileError(path, None, None, "the file is empty; it needs at least one value.")
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, dict):
        if isinstance(whole.get("values"), dict):
            return _from_values_object(path, whole["values"])
        if whole and all(isinstance(v, dict) for v in whole.values()):
            return _from_values_object(path, whole)
    return _from_jsonl(path, text)


def _from_values_object(path: Path, data: Mapping[str, Any]) -> Vocabulary:
    vocabulary: Vocabulary = {}
    for key, values in data.items():
        where = f"key {key!r}"
        parts = key.split("\t")
        if len(parts) != 2 or not all(p.strip() for p in parts):
            raise VocabularyFileError(
                path, where, None,
                "a key must be 'product type<TAB>attribute' (both non-empty, one tab between), as in "
                "CatalogMetadata.values, e.g. \"dress\\tcolor\".",
            )
        if not isinstance(values, dict):
            raise VocabularyFileError(path, where, None,
                                      f"must map each value to its count, got {type(values).__name__}.")
        for value, count in values.items():
            if _text(value) is None:
                raise VocabularyFileError(path, where, "value", "values must be non-empty strings.")
            if _count(count) is None:
                raise VocabularyFileError(path, f"{where}, value {value!r}", "count",
                                          f"must be a positive integer, got {count!r}.")
            _add(vocabulary, (parts[0], parts[1]), value, count)
    return vocabulary


def _from_jsonl(path: Path, text: str) -> Vocabulary:
    vocabulary: Vocabulary = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise VocabularyFileError(
                path, where, None,
                f"not valid JSON ({exc.msg} at column {exc.colno}). Each line must be an object like "
                '{"product_type": "dress", "attribute": "color", "value": "navy blue", "count": 3}.',
            ) from None
        if not isinstance(record, dict):
            raise VocabularyFileError(path, where, None,
                                      f"must be a JSON object, got {type(record).__name__}.")
        unknown = sorted(set(record) - set(_JSONL_FIELDS))
        if unknown:
            raise VocabularyFileError(path, where, unknown[0],
                                      f"unknown field; allowed fields: {', '.join(_JSONL_FIELDS)}.")
        for field in ("product_type", "attribute", "value"):
            if field not in record:
                raise VocabularyFileError(path, where, field, "missing (it is required).")
            if _text(record[field]) is None:
                raise VocabularyFileError(path, where, field,
                                          f"must be a non-empty string, got {record[field]!r}.")
        count = _count(record.get("count", 1))
        if count is None:
            raise VocabularyFileError(path, where, "count",
                                      f"must be a positive integer, got {record['count']!r}.")
        _add(vocabulary, (record["product_type"], record["attribute"]), record["value"], count)
    return vocabulary


def check_vocabulary(vocabulary: Mapping[Any, Mapping[str, int]]) -> Vocabulary:
    """A clean copy of a ``fit`` vocabulary. Keys may be ``(product_type, attribute)`` tuples or
    ``CatalogMetadata.values`` keys (``"product_type<TAB>attribute"``)."""
    checked: Vocabulary = {}
    for key, values in vocabulary.items():
        if isinstance(key, str) and key.count("\t") == 1:
            pair = tuple(key.split("\t"))
        elif isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, str) for k in key):
            pair = key
        else:
            raise ValueError(
                f"Vocabulary key {key!r} is neither a (product_type, attribute) tuple nor a "
                "'product_type<TAB>attribute' string."
            )
        for value, count in values.items():
            if not isinstance(value, str):
                raise ValueError(f"Vocabulary value {value!r} of pair {pair} is not a string.")
            if _count(count) is None:
                raise ValueError(f"Count of {value!r} in pair {pair} must be a positive integer, got {count!r}.")
            if value.strip():
                _add(checked, pair, value, count)
    return checked


def merge_vocabularies(*vocabularies: Vocabulary) -> Vocabulary:
    """Union of pairs and values; counts of a value listed twice are summed."""
    merged: Vocabulary = {}
    for vocabulary in vocabularies:
        for pair, values in vocabulary.items():
            for value, count in values.items():
                _add(merged, pair, value, count)
    return merged


def write_vocabulary_jsonl(path: Path, vocabulary: Vocabulary) -> None:
    """Write ``vocabulary`` as JSONL (pairs sorted, then most frequent value first), atomically.
    The file is itself a valid ``vocabulary_file``."""
    lines = [
        json.dumps({"product_type": pt, "attribute": attr, "value": value, "count": count}, ensure_ascii=False)
        for (pt, attr) in sorted(vocabulary)
        for value, count in sorted(vocabulary[(pt, attr)].items(), key=lambda item: (-item[1], item[0]))
    ]
    write_text_atomically(path, "".join(line + "\n" for line in lines))


def write_text_atomically(path: Path, text: str) -> None:
    """Write to a temporary file in the same folder, then rename over ``path``."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
