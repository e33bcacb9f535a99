"""Typed lookup of registered components: ``list_*`` per kind, :func:`get_component`, :func:`create`.

The tables are filled by calling every plugin's registration hooks once, on first use.
"""
from __future__ import annotations

import fnmatch
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from mxt_sdk.components import Canonicalizer, Fusion, Generator, ImageEncoder, Normalizer, Reader
from mxt_sdk.errors import DuplicateComponentError, PluginError, UnknownComponentError
from mxt_sdk.plugins import get_plugin_manager


@dataclass(frozen=True)
class Kind:
    """One kind of component: its key in listings, its words in messages, its hook, its base class."""

    key: str
    label: str
    hook: str
    base: type


KINDS: dict[str, Kind] = {
    kind.key: kind
    for kind in (
        Kind("image_encoders", "image encoder", "mxt_register_image_encoders", ImageEncoder),
        Kind("fusions", "fusion", "mxt_register_fusions", Fusion),
        Kind("generators", "generator", "mxt_register_generators", Generator),
        Kind("normalizers", "normalizer", "mxt_register_normalizers", Normalizer),
        Kind("canonicalizers", "canonicalizer", "mxt_register_canonicalizers", Canonicalizer),
        Kind("readers", "reader", "mxt_register_readers", Reader),
    )
}

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")


@dataclass(frozen=True)
class ComponentInfo:
    """A registered component class and the plugin that registered it."""

    kind: str
    name: str
    cls: type
    plugin: str
    aliases: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "plugin": self.plugin, "aliases": list(self.aliases),
                "class": f"{self.cls.__module__}.{self.cls.__qualname__}"}


_lock = threading.RLock()
_tables: dict[str, dict[str, ComponentInfo]] | None = None


def invalidate() -> None:
    """Drop the cached tables (after plugins were added or removed)."""
    global _tables
    with _lock:
        _tables = None


def _add(table: dict[str, ComponentInfo], kind: Kind, cls: Any, plugin: str) -> None:
    if not (isinstance(cls, type) and issubclass(cls, kind.base)):
        raise PluginError(
            f"Plugin {plugin!r} registered {cls!r} in {kind.hook}, but it is not a subclass of "
            f"mxt_sdk.{kind.base.__name__}."
        )
    names = (cls.name, *cls.aliases)
    for name in names:
        if not isinstance(name, str) or not _NAME.match(name):
            raise PluginError(
                f"Plugin {plugin!r} registered {cls.__qualname__} with invalid name {name!r}: "
                "names are lower-case letters, digits, '_', '-' and '.', starting with a letter or digit."
            )
    info = ComponentInfo(kind.key, cls.name, cls, plugin, tuple(cls.aliases))
    for name in names:
        previous = table.get(name)
        if previous is not None:
            raise DuplicateComponentError(
                f"The {kind.label} name {name!r} is registered by two plugins: {previous.plugin!r} "
                f"({previous.cls.__module__}.{previous.cls.__qualname__}) and {plugin!r} "
                f"({cls.__module__}.{cls.__qualname__}). Uninstall one, or block one with "
                f"MXT_DISABLE_PLUGINS={plugin}."
            )
        table[name] = info


def _collect() -> dict[str, dict[str, ComponentInfo]]:
    manager = get_plugin_manager()
    tables: dict[str, dict[str, ComponentInfo]] = {}
    for kind in KINDS.values():
        table: dict[str, ComponentInfo] = {}
        caller = getattr(manager.hook, kind.hook)
        # get_hookimpls() lists in reverse call order; register in plugin registration order.
        for impl in reversed(caller.get_hookimpls()):
            if impl.hookwrapper or impl.wrapper:
                continue

            def register(cls: type, _plugin: str = impl.plugin_name) -> None:
                _add(table, kind, cls, _plugin)

            try:
                impl.function(register=register)
            except (DuplicateComponentError, PluginError):
                raise
            except Exception as exc:
                raise PluginError(f"Plugin {impl.plugin_name!r} failed in {kind.hook}: {exc}") from exc
        tables[kind.key] = table
    return tables


def _table(kind: str) -> dict[str, ComponentInfo]:
    global _tables
    if kind not in KINDS:
        raise UnknownComponentError("component kind", kind, KINDS)
    with _lock:
        if _tables is None:
            _tables = _collect()
        return _tables[kind]


def list_components(kind: str, pattern: str = "*") -> list[ComponentInfo]:
    """Registered components of ``kind`` whose name matches the shell-style ``pattern``, by name."""
    unique = {info.name: info for info in _table(kind).values()}
    return [unique[n] for n in sorted(unique) if fnmatch.fnmatchcase(n, pattern)]


def get_component(kind: str, name: str) -> ComponentInfo:
    """The component registered as ``name`` (or alias); the error lists what is available."""
    table = _table(kind)
    try:
        return table[name]
    except KeyError:
        raise UnknownComponentError(KINDS[kind].label + "s", name,
                                    {i.name for i in table.values()}) from None


def create(kind: str, name: str, options: Mapping[str, Any] | BaseModel | None = None,
           **build_args: Any) -> Any:
    """Instantiate component ``name`` of ``kind`` with validated ``options`` and constructor ``build_args``."""
    cls = get_component(kind, name).cls
    return cls(cls.parse_options(options), **build_args)


def all_components() -> dict[str, list[ComponentInfo]]:
    """Every kind with its registered components (what ``mxt plugins`` shows)."""
    return {kind: list_components(kind) for kind in KINDS}


def list_image_encoders(pattern: str = "*") -> list[str]:
    return [i.name for i in list_components("image_encoders", pattern)]


def list_fusions(pattern: str = "*") -> list[str]:
    return [i.name for i in list_components("fusions", pattern)]


def list_generators(pattern: str = "*") -> list[str]:
    return [i.name for i in list_components("generators", pattern)]


def list_normalizers(pattern: str = "*") -> list[str]:
    return [i.name for i in list_components("normalizers", pattern)]


def list_canonicalizers(pattern: str = "*") -> list[str]:
    return [i.name for i in list_components("canonicalizers", pattern)]


def list_readers(pattern: str = "*") -> list[str]:
    return [i.name for i in list_components("readers", pattern)]
