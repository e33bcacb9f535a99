"""Crash-safe writing of model folders and files: write aside, fsync, rename into place."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
        retired = None
        if target.exists():
            retired = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            target.rename(retired)
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
        _write_marker(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def is_complete(folder: Path) -> bool:
    """Whether ``folder`` was finished by :func:`atomic_directory`."""
    return (Path(folder) / COMPLETE_MARKER).is_file()


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


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
