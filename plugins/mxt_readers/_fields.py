"""Field checks for readers whose source fields are named differently from :class:`~mxt_sdk.Product`'s,
so that an error names the field as it is written in the file (``input``, ``texts``), not as the
Product calls it (``title``)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mxt_sdk.errors import RecordError


def require_text(record: Mapping[str, Any], field: str, name: str) -> str:
    """``record[field]`` stripped; raise :class:`RecordError` when it is missing, not text, or empty."""
    value = record.get(field)
    if value is None:
        raise RecordError(name, field, "is missing")
    if not isinstance(value, str):
        raise RecordError(name, field, f"must be text, got {type(value).__name__}")
    value = value.strip()
    if not value:
        raise RecordError(name, field, "is empty")
    return value
