"""Crash-safe writing of model folders and files: write aside, fsync, rename into place.

A folder replaced by :func:`atomic_directory` is, at every moment, either in place or recoverable:
the new content is complete (marked) before the old folder is renamed away, and
:func:`recover_leftovers` (run when training starts) moves whichever complete copy is left back into
place and deletes the ``.tmp-`` / ``.old-`` leftovers of interrupted writes.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mxt_sdk.faults import crash_point

COMPLETE_MARKER = ".complete"


def fsync_tree(root: Path) -> None:
    """Flush every file under ``root`` and the directories holding them to disk."""
    for folder, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(Path(folder))


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems refuse fsync on directories
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_marker(folder: Path) -> None:
    with open(folder / COMPLETE_MARKER, "w", encoding="utf-8") as handle:
        handle.write("ok\n")
        handle.flush()
        os.fsync(handle.fileno())
    _fsync_dir(folder)


@contextlib.contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``target``; on success it replaces ``target`` whole.

    The folder gets a ``.complete`` marker last, so readers can tell a finished folder from a
    partial one. On error the temporary folder is removed and ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        yield staging
        fsync_tree(staging)
        _write_marker(staging)
        crash_point("atomic_directory.staged")
        retired = None
        if target.exists():
            retired = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            target.rename(retired)
            crash_point("atomic_directory.retired")
        staging.rename(target)
        _fsync_dir(target.parent)
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextlib.contextmanager
def staged_update(target: Path, owned: frozenset[str] = frozenset()) -> Iterator[Path]:
    """Yield a temporary folder; on success its entries replace the same-named entries of ``target``.

    Entries named in ``owned`` that the new content lacks are deleted (so no stale file of an older
    save survives); other entries of ``target`` (checkpoints, logs) are kept. The
    ``.complete`` marker is removed before the first entry moves and written after the last, so a
    crash in between leaves a folder that :func:`is_complete` reports as unfinished.
    """
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        yield staging
        fsync_tree(staging)
        (target / COMPLETE_MARKER).unlink(missing_ok=True)
        _fsync_dir(target)
        written = {entry.name for entry in staging.iterdir()}
        for stale in owned - written:
            path = target / stale
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        for entry in staging.iterdir():
            destination = target / entry.name
            if destination.is_dir():
                retired = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
                destination.rename(retired)
                entry.rename(destination)
                shutil.rmtree(retired, ignore_errors=True)
            else:
                os.replace(entry, destination)
            crash_point("staged_update.moving")
        _write_marker(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def is_complete(folder: Path) -> bool:
    """Whether ``folder`` was finished by :func:`atomic_directory`."""
    return (Path(folder) / COMPLETE_MARKER).is_file()


_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-[0-9a-f]{8}$")


def recover_leftovers(parent: Path, names: set[str] | None = None) -> list[str]:
    """Finish or undo interrupted folder writes in ``parent`` (only for targets in ``names``, if given).

    A target that is missing gets back its complete new copy (``.tmp-``, written in full before the
    old one moved away) or else its complete old copy (``.old-``); every other leftover is deleted.
    Returns what was done, one line per action. Run it only when no other process writes there.
    """
    parent, done = Path(parent), []
    if not parent.is_dir():
        return done
    found: dict[str, list[Path]] = {}
    for entry in parent.iterdir():
        match = _LEFTOVER.match(entry.name)
        if match and (names is None or match["name"] in names):
            found.setdefault(match["name"], []).append(entry)
    for name, entries in sorted(found.items()):
        target = parent / name
        if not target.exists():
            complete = [e for e in entries if e.is_dir() and is_complete(e)]
            complete.sort(key=lambda e: (".tmp-" not in e.name, -e.stat().st_mtime))  # new copy first
            if complete:
                complete[0].rename(target)
                done.append(f"restored {target} from {complete[0].name}")
                entries.remove(complete[0])
        for entry in entries:
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            done.append(f"removed {entry}")
    if done:
        _fsync_dir(parent)
    return done


def write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically: written aside, fsynced, renamed over it."""
    path = Path(path)
    staging = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with open(staging, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staging, path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as sorted, indented JSON, atomically (:func:`write_text`)."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def file_sha256(path: Path) -> str:
    """The SHA-256 of ``path``'s bytes (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def save_weights(module: Any, path: Path) -> None:
    """Write ``module``'s state dict to a safetensors file, byte for byte the same for the same weights.

    Like ``safetensors.torch.save_model`` (tied weights are stored once, under their first name in
    sorted order, and ``load_model`` restores the ties), but without its metadata naming the dropped
    aliases: safetensors writes that header from a hash map, in a different order in every process.
    """
    from safetensors.torch import save_file

    state = module.state_dict()
    kept, seen = {}, set()
    for name in sorted(state):
        tensor = state[name]
        if tensor.numel():
            key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape),
                   tuple(tensor.stride()), tensor.dtype)
            if key in seen:
                continue
            seen.add(key)
        kept[name] = tensor.contiguous()
    save_file(kept, str(path), metadata={"format": "pt"})
