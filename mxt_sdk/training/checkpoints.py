"""Training checkpoints: complete or ignored, never half-read.

``<output>/checkpoints/step-00000150/`` holds the model, the optimizer and scheduler state and
every process's RNG state (tensors in safetensors, everything else in JSON: no pickle), the
tokenizer, and ``trainer_state.json``. Each folder is written aside,
fsynced and renamed into place with a ``.complete`` marker (:func:`mxt_sdk.storage.atomic_directory`),
so a crash mid-write leaves no folder that :func:`latest_checkpoint` would pick.
"""
from __future__ import annotations

import logging
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file

from mxt_sdk.storage import atomic_directory, is_complete, read_json, recover_leftovers, save_weights, write_json

log = logging.getLogger("mxt_sdk.training")

CHECKPOINTS = "checkpoints"
BEST = "best"
_STEP = re.compile(r"^step-(\d+)$")


def rng_state() -> dict[str, Any]:
    """This process's random states: torch (CPU and CUDA), numpy and Python's ``random``."""
    numpy_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [numpy_state[0], numpy_state[1].tolist(), int(numpy_state[2]), int(numpy_state[3]),
                  float(numpy_state[4])],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _write_rng(folder: Path, states: list[dict[str, Any]]) -> None:
    tensors, json_part = {}, []
    for rank, state in enumerate(states):
        tensors[f"torch.{rank}"] = state["torch"]
        for device, cuda_state in enumerate(state["cuda"]):
            tensors[f"cuda.{rank}.{device}"] = cuda_state
        json_part.append({"cuda_devices": len(state["cuda"]), "numpy": state["numpy"], "python": state["python"]})
    save_file(tensors, str(folder / "rng.safetensors"))
    write_json(folder / "rng.json", json_part)


def _read_rng(folder: Path, rank: int) -> dict[str, Any] | None:
    json_part = read_json(folder / "rng.json")
    if rank >= len(json_part):
        return None
    tensors = load_file(str(folder / "rng.safetensors"))
    mine = json_part[rank]
    return {"torch": tensors[f"torch.{rank}"],
            "cuda": [tensors[f"cuda.{rank}.{d}"] for d in range(mine["cuda_devices"])],
            "numpy": mine["numpy"], "python": mine["python"]}


def save_state_dict(prefix: Path, state: Any) -> None:
    """Write a nested state (dicts, lists, numbers, tensors) as ``<prefix>.safetensors`` (the tensors)
    plus ``<prefix>.json`` (the structure, tensors replaced by references)."""
    tensors: dict[str, torch.Tensor] = {}

    def encode(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            key = f"t{len(tensors)}"
            tensors[key] = value.detach().cpu().contiguous()
            return {"__tensor__": key}
        if isinstance(value, dict):
            return {"__dict__": [[encode(k), encode(v)] for k, v in value.items()]}
        if isinstance(value, (list, tuple)):
            return {"__list__": [encode(v) for v in value], "tuple": isinstance(value, tuple)}
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise TypeError(f"cannot store {type(value).__name__} in a checkpoint state")

    structure = encode(state)
    save_file(tensors, f"{prefix}.safetensors")
    write_json(Path(f"{prefix}.json"), structure)


def load_state_dict(prefix: Path) -> Any:
    """Read what :func:`save_state_dict` wrote."""
    tensors = load_file(f"{prefix}.safetensors")

    def decode(value: Any) -> Any:
        if isinstance(value, dict):
            if "__tensor__" in value:
                return tensors[value["__tensor__"]]
            if "__dict__" in value:
                return {decode(k): decode(v) for k, v in value["__dict__"]}
            items = [decode(v) for v in value["__list__"]]
            return tuple(items) if value["tuple"] else items
        return value

    return decode(read_json(Path(f"{prefix}.json")))


def recover_run_folder(*folders: Path) -> list[str]:
    """Undo or finish writes a crash interrupted in run (or model) folders: a ``best`` or step
    checkpoint caught between its old and new copy is put back, and every ``.tmp-`` / ``.old-``
    leftover (of checkpoints, of files in a folder, of the folder itself) is deleted. Logs and returns
    what was done."""
    done: list[str] = []
    for output in dict.fromkeys(Path(folder) for folder in folders):
        done += (recover_leftovers(output / CHECKPOINTS) + recover_leftovers(output)
                 + recover_leftovers(output.parent, {output.name}))
    for action in done:
        log.info("Crash recovery: %s", action)
    return done


def checkpoint_dir(output: Path, step: int) -> Path:
    return Path(output) / CHECKPOINTS / f"step-{step:08d}"


def complete_checkpoints(output: Path) -> list[Path]:
    """Complete step checkpoints under ``output``, oldest first (partial ones are skipped)."""
    root = Path(output) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP.match(p.name)) and is_complete(p)]
    return [p for _, p in sorted(found)]


def latest_checkpoint(output: Path) -> Path | None:
    found = complete_checkpoints(output)
    return found[-1] if found else None


def save_checkpoint(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, trainer_state: dict[str, Any], rng_states: list[dict[str, Any]],
                    save_tokenizer) -> None:
    """Write one checkpoint folder atomically. ``save_tokenizer(dir)`` writes the tokenizer files."""
    with atomic_directory(folder) as staging:
        save_weights(model, staging / "model.safetensors")
        save_state_dict(staging / "optimizer", optimizer.state_dict())
        save_state_dict(staging / "scheduler", scheduler.state_dict())
        _write_rng(staging, rng_states)
        save_tokenizer(staging / "tokenizer")
        write_json(staging / "trainer_state.json", trainer_state)


def load_checkpoint(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, rank: int) -> dict[str, Any]:
    """Restore model, optimizer, scheduler and this process's RNG; return the trainer state."""
    load_model(model, str(folder / "model.safetensors"), strict=True)
    optimizer.load_state_dict(load_state_dict(folder / "optimizer"))
    scheduler.load_state_dict(load_state_dict(folder / "scheduler"))
    state = _read_rng(folder, rank)
    if state is not None:
        set_rng_state(state)
    return read_json(folder / "trainer_state.json")


def prune_checkpoints(output: Path, keep: int) -> None:
    """Delete all but the ``keep`` most recent complete step checkpoints."""
    for folder in complete_checkpoints(output)[:-keep]:
        shutil.rmtree(folder, ignore_errors=True)


def save_best_weights(output: Path, model: torch.nn.Module, info: dict[str, Any]) -> None:
    """Keep the best model's weights (by validation loss) in ``checkpoints/best``."""
    with atomic_directory(Path(output) / CHECKPOINTS / BEST) as staging:
        save_weights(model, staging / "model.safetensors")
        write_json(staging / "best.json", info)


def load_best_weights(output: Path, model: torch.nn.Module) -> dict[str, Any] | None:
    folder = Path(output) / CHECKPOINTS / BEST
    if not is_complete(folder):
        return None
    load_model(model, str(folder / "model.safetensors"), strict=True)
    return read_json(folder / "best.json")
