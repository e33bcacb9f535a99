"""Progress bars that respect the user: on only for a terminal, off with ``TQDM_DISABLE=1`` or ``mxt -q``.

:func:`bar` is the one place bars are made (tqdm). :func:`stage` names the part of a longer job that
runs now (``"variant 2/7 no-mag"``), and bars made inside it carry that name, so a user sees which
part runs and how far the whole job is.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tqdm.auto import tqdm

_forced: bool | None = None  # set by the CLI: False for -q; None: decided by the environment
_stages: list[str] = []


def configure(enabled: bool | None) -> None:
    """Force bars off (``False``) or leave the decision to :func:`bars_enabled` (``None``)."""
    global _forced
    _forced = enabled


def bars_enabled() -> bool:
    """False under ``configure(False)``, with ``TQDM_DISABLE`` set to anything but 0/false, or when
    stderr is not a terminal (a log file or a pipe gets log lines instead of redrawn bars)."""
    if _forced is False:
        return False
    if os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no"):
        return False
    return _forced is True or sys.stderr.isatty()


@contextmanager
def switched(on: bool) -> Iterator[None]:
    """Inside, bars are off when ``on`` is False (and as :func:`bars_enabled` says otherwise)."""
    global _forced
    before = _forced
    if not on:
        _forced = False
    try:
        yield
    finally:
        _forced = before


@contextmanager
def stage(label: str) -> Iterator[None]:
    """Bars made inside carry ``label`` (nested stages are joined with ``/``)."""
    _stages.append(label)
    try:
        yield
    finally:
        _stages.pop()


def stage_prefix() -> str:
    """``"[variant 2/7 no-mag] "`` inside :func:`stage`, ``""`` outside."""
    return f"[{' / '.join(_stages)}] " if _stages else ""


def bar(*, desc: str, enabled: bool = True, **options: Any) -> tqdm:
    """A tqdm bar described as ``desc`` (prefixed by the current stage); off as :func:`bars_enabled` says."""
    return tqdm(desc=stage_prefix() + desc, disable=not (enabled and bars_enabled()), dynamic_ncols=True,
                **options)
