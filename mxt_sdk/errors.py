"""Exceptions raised by mxt_sdk.

Every message says what was given, what is allowed, and what to do about it.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable


def describe_validation_errors(exc, top_level: str = "(top level)") -> str:
    """A pydantic ``ValidationError`` as ``"field.path: reason; ..."`` in one line."""
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or top_level}: {str(e['msg']).removeprefix('Value error, ')}"
        for e in exc.errors()
    )


class MXTError(Exception):
    """Base class of every error mxt_sdk raises on purpose."""


class PluginError(MXTError):
    """A plugin is broken, duplicated, or missing."""


class DuplicateComponentError(PluginError):
    """Two plugins registered a component under the same name (or alias)."""


class UnknownComponentError(PluginError, KeyError):
    """A component name that no installed plugin registered."""

    def __init__(self, kind: str, name: str, available: Iterable[str]):
        self.kind, self.name = kind, name
        self.available = sorted(available)
        close = difflib.get_close_matches(name, self.available, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        listing = ", ".join(self.available) or "(none installed)"
        message = (
            f"No {kind} named {name!r}.{hint} Available {kind}: {listing}. "
            "Run `mxt plugins` to see every installed component and the plugin that provides it."
        )
        super().__init__(message)

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


class PluginNotInstalledError(PluginError):
    """A saved model or config names a component whose plugin is not installed."""


class ConfigError(MXTError, ValueError):
    """A configuration file or object is invalid."""


class RecordError(MXTError, ValueError):
    """One input record is invalid; names the record and the field."""

    def __init__(self, record: str, field: str | None, reason: str, record_id: str | None = None):
        self.record, self.field, self.reason, self.record_id = record, field, reason, record_id
        where = f"{record}, field {field!r}" if field else record
        super().__init__(f"{where}: {reason}")


class DataFileError(MXTError, ValueError):
    """A data file cannot be read at all: unknown format, bad header, several readers claim it."""


class DataFileNotFoundError(DataFileError, FileNotFoundError):
    """A data file that does not exist (or is a folder)."""


class ImageError(MXTError, ValueError):
    """An image could not be opened, decoded, or located safely."""


class NotFittedError(MXTError, RuntimeError):
    """An operation needs state that only training (fit) provides."""
