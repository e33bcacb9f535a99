"""Fault injection for crash tests: ``MXT_CRASH_AT=<point>[:<n>]`` kills the process with SIGKILL the
``n``-th time (default: the first) it passes the named point. Unset, :func:`crash_point` does nothing.

Points: ``atomic_directory.staged`` (new folder complete, old one still in place),
``atomic_directory.retired`` (old folder renamed away, new one not yet moved in),
``staged_update.moving`` (a model folder's files half replaced), ``extract.row`` (after each output row).
"""
from __future__ import annotations

import os
import signal

ENV = "MXT_CRASH_AT"
_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Kill this process (SIGKILL, no clean-up) if ``MXT_CRASH_AT`` names this point and hit count."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    point, _, count = wanted.partition(":")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
