"""``checksums.json``: the SHA-256 of every file of a model folder that loading reads.

Written by every save (:func:`mxt_sdk.model.folder.save_folder`) over the files it wrote; checked
after a model comes from the Hugging Face Hub (:mod:`mxt_sdk.model.hub`), where a file cut short by an
interrupted download, damaged in the cache, or added to the repository by hand must not load. The
model card (``README.md``, ``card.json``) is documentation, rewritten by ``evaluate`` and ``calibrate``
without touching the model, and is not covered; nor are the file itself and the ``.complete`` marker.

Checksums guard against damage, not against an attacker who can rewrite the repository (they would
rewrite this file too): trust comes from the repository and revision you name.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from mxt_sdk.errors import ConfigError
from mxt_sdk.storage import COMPLETE_MARKER, file_sha256, read_json, write_json

CHECKSUMS_FILE = "checksums.json"
FORMAT = 1
#: files of a model folder that no checksum covers (see the module docstring)
UNCOVERED = frozenset({CHECKSUMS_FILE, COMPLETE_MARKER, "README.md", "card.json"})


def _covered_files(folder: Path, entries: Iterable[str] | None = None) -> list[str]:
    """Relative POSIX paths of the covered files under ``folder`` (under ``entries`` only, if given)."""
    roots = [folder / name for name in entries] if entries is not None else [folder]
    found = []
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in paths:
            relative = path.relative_to(folder).as_posix()
            if relative not in UNCOVERED:
                found.append(relative)
    return sorted(found)


def write_checksums(folder: Path) -> None:
    """Write ``folder/checksums.json`` over every covered file in ``folder``."""
    folder = Path(folder)
    files = {name: file_sha256(folder / name) for name in _covered_files(folder)}
    write_json(folder / CHECKSUMS_FILE, {"format": FORMAT, "algorithm": "sha256", "files": files})


def verify_checksums(folder: Path, entries: Iterable[str], where: str) -> None:
    """Check that the covered files under ``folder``'s ``entries`` are exactly those ``checksums.json``
    lists, with the listed SHA-256; raise :class:`~mxt_sdk.errors.ConfigError` naming ``where`` (the model
    as the user named it) and the first file that differs."""
    folder = Path(folder)
    path = folder / CHECKSUMS_FILE
    if not path.is_file():
        raise ConfigError(f"{where}: the model has no {CHECKSUMS_FILE}, so its files cannot be checked. "
                          "Save it again with this mxt_sdk (save_pretrained) and push it again.")
    try:
        listed = read_json(path)["files"]
        if not isinstance(listed, dict):
            raise TypeError("'files' is not a mapping")
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{where}: {CHECKSUMS_FILE} is damaged ({exc}).") from None
    present = _covered_files(folder, [e for e in entries if (folder / e).exists()])
    for name in sorted(set(listed) | set(present)):
        if name not in present:
            raise ConfigError(f"{where}: file {name!r} listed in {CHECKSUMS_FILE} is missing.")
        if name not in listed:
            raise ConfigError(f"{where}: file {name!r} is not listed in {CHECKSUMS_FILE}; refusing to load it.")
        actual = file_sha256(folder / name)
        if actual != listed[name]:
            raise ConfigError(f"{where}: file {name!r} has SHA-256 {actual}, but {CHECKSUMS_FILE} lists "
                              f"{listed[name]}: the download is damaged or the file was changed. Delete it from "
                              "the cache and download again.")
