"""Line-by-line text access shared by the line-oriented readers (JSONL, TSV).

Files are read as bytes, one line at a time (constant memory), and each line is decoded on its own,
so one line of bad bytes spoils that record only instead of aborting the whole file.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from itertools import islice
from pathlib import Path

_BOM = "\ufeff"


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, text)`` for every line of ``path``, numbered from 1, line ending kept.

    Lines are decoded as UTF-8 (a leading byte-order mark is dropped). Undecodable bytes are kept as
    surrogate escapes instead of raising; :func:`undecodable` tells such lines apart.
    """
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            text = raw.decode("utf-8", errors="surrogateescape")
            yield number, text.removeprefix(_BOM) if number == 1 else text


def undecodable(text: str) -> bool:
    """Whether ``text`` (from :func:`iter_lines`) holds bytes that are not valid UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def first_lines(path: Path, count: int = 1) -> list[str]:
    """The first ``count`` non-blank lines of ``path``, stripped (fewer when the file is shorter)."""
    lines = iter_lines(path)
    with closing(lines):  # closes the file now, not when the generator is collected
        return list(islice((text.strip() for _, text in lines if text.strip()), count))


def has_suffix(path: Path, suffixes: tuple[str, ...]) -> bool:
    """Whether ``path`` ends with one of ``suffixes`` (case-insensitive, dots included)."""
    return path.suffix.lower() in suffixes
