"""Every hook a plugin can implement. Each is documented in docs/hooks.md (a test checks it).

Registration hooks receive a ``register`` callback; a plugin calls ``register(SomeClass)`` once per
component class it provides. Registering must not instantiate the class or load any weights.
"""
from __future__ import annotations

from collections.abc import Callable

import pluggy

PROJECT = "mxt_sdk"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[[type], None]


@hookspec
def mxt_register_image_encoders(register: Register) -> None:
    """Register :class:`mxt_sdk.ImageEncoder` subclasses."""


@hookspec
def mxt_register_fusions(register: Register) -> None:
    """Register :class:`mxt_sdk.Fusion` subclasses."""


@hookspec
def mxt_register_generators(register: Register) -> None:
    """Register :class:`mxt_sdk.Generator` subclasses."""


@hookspec
def mxt_register_normalizers(register: Register) -> None:
    """Register :class:`mxt_sdk.Normalizer` subclasses."""


@hookspec
def mxt_register_canonicalizers(register: Register) -> None:
    """Register :class:`mxt_sdk.Canonicalizer` subclasses."""


@hookspec
def mxt_register_readers(register: Register) -> None:
    """Register :class:`mxt_sdk.Reader` subclasses."""
