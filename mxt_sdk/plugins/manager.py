"""The plugin manager and the typed component registry.

Built-in and third-party plugins both arrive through the ``mxt_sdk`` entry-point group
(``MXT_DISABLE_PLUGINS=name,name`` blocks plugins by entry-point name). Their registration hooks are
called once, on first use, to fill one table per component kind: ``list_*`` per kind,
:func:`get_component`, :func:`create`.
"""
from __future__ import annotations

import fnmatch
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy
from pydantic import BaseModel

from mxt_sdk.errors import DuplicateComponentError, PluginError, UnknownComponentError
from mxt_sdk.plugins import hookspecs
from mxt_sdk.plugins.components import Canonicalizer, Fusion, Generator, ImageEncoder, Normalizer, Reader

ENTRY_POINT_GROUP = "mxt_sdk"
DISABLE_ENV = "MXT_DISABLE_PLUGINS"

_manager_lock = threading.Lock()
_manager: pluggy.PluginManager | None = None


def disabled_plugins() -> set[str]:
    """Plugin names listed in ``MXT_DISABLE_PLUGINS`` (comma-separated)."""
    return {name.strip() for name in os.environ.get(DISABLE_ENV, "").split(",") if name.strip()}


def _build_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    for name in disabled_plugins():
        manager.set_blocked(name)
    try:
        manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    except Exception as exc:  # a broken third-party plugin must say which one it is
        raise PluginError(
            f"Loading an '{ENTRY_POINT_GROUP}' entry point failed: {exc}. "
            f"Block the faulty plugin with {DISABLE_ENV}=<name> and run `mxt plugins`."
        ) from exc
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"A plugin implements a hook that does not exist (misspelled?): {exc}") from exc
    return manager


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, built on first use."""
    global _manager
    with _manager_lock:
        if _manager is None:
            _manager = _build_manager()
        return _manager


def register_plugin(plugin: object, name: str) -> None:
    """Register a plugin object (a module or class with ``@hookimpl`` functions) without an entry point.

    Meant for notebooks and tests; installed packages should use the entry-point group instead.
    """
    manager = get_plugin_manager()
    if name in disabled_plugins():
        return
    manager.register(plugin, name=name)
    manager.check_pending()
    invalidate()


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered with :func:`register_plugin` (or by entry point)."""
    get_plugin_manager().unregister(name=name)
    invalidate()


def reset() -> None:
    """Forget every loaded plugin; the next use re-reads entry points and ``MXT_DISABLE_PLUGINS``."""
    global _manager
    with _manager_lock:
        _manager = None
    invalidate()


def plugin_distribution(name: str) -> tuple[str, str] | None:
    """(distribution name, version) of the installed package that provides plugin ``name``."""
    manager = get_plugin_manager()
    for plugin, dist in manager.list_plugin_distinfo():
        if manager.get_name(plugin) == name:
            return dist.metadata["name"], dist.version
    return None


# --------------------------------------------------------------------------- component tables
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


_tables_lock = threading.RLock()
_tables: dict[str, dict[str, ComponentInfo]] | None = None


def invalidate() -> None:
    """Drop the cached tables (after plugins were added or removed)."""
    global _tables
    with _tables_lock:
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
    with _tables_lock:
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


def _names_of(kind: str):
    def list_names(pattern: str = "*") -> list[str]:
        return [info.name for info in list_components(kind, pattern)]

    list_names.__name__ = list_names.__qualname__ = f"list_{kind}"
    list_names.__doc__ = f"Names of the registered {KINDS[kind].label}s matching the shell-style ``pattern``."
    return list_names


list_image_encoders = _names_of("image_encoders")
list_fusions = _names_of("fusions")
list_generators = _names_of("generators")
list_normalizers = _names_of("normalizers")
list_canonicalizers = _names_of("canonicalizers")
list_readers = _names_of("readers")
