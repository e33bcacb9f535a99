"""The plugin manager: built-in and third-party plugins both arrive through the ``mxt_sdk``
entry-point group; ``MXT_DISABLE_PLUGINS=name,name`` blocks plugins by entry-point name."""
from __future__ import annotations

import os
import threading

import pluggy

from mxt_sdk import hookspecs
from mxt_sdk.errors import PluginError

ENTRY_POINT_GROUP = "mxt_sdk"
DISABLE_ENV = "MXT_DISABLE_PLUGINS"

_lock = threading.Lock()
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
    with _lock:
        if _manager is None:
            _manager = _build_manager()
        return _manager


def register_plugin(plugin: object, name: str) -> None:
    """Register a plugin object (a module or class with ``@hookimpl`` functions) without an entry point.

    Meant for notebooks and tests; installed packages should use the entry-point group instead.
    """
    from mxt_sdk import registry

    manager = get_plugin_manager()
    if name in disabled_plugins():
        return
    manager.register(plugin, name=name)
    manager.check_pending()
    registry.invalidate()


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered with :func:`register_plugin` (or by entry point)."""
    from mxt_sdk import registry

    get_plugin_manager().unregister(name=name)
    registry.invalidate()


def reset() -> None:
    """Forget every loaded plugin; the next use re-reads entry points and ``MXT_DISABLE_PLUGINS``."""
    from mxt_sdk import registry

    global _manager
    with _lock:
        _manager = None
    registry.invalidate()


def plugin_distribution(name: str) -> tuple[str, str] | None:
    """(distribution name, version) of the installed package that provides plugin ``name``."""
    manager = get_plugin_manager()
    for plugin, dist in manager.list_plugin_distinfo():
        if manager.get_name(plugin) == name:
            return dist.metadata["name"], dist.version
    return None
