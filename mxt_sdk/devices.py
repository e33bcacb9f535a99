"""Where a model runs: the one place a device name from a config, a CLI option or a call is turned
into a :class:`torch.device`.

Accepted names (``training.device``, ``extraction.device``, ``--device`` on every command that runs
the model, ``device=`` of :class:`mxt_sdk.Extractor`):

- ``auto`` (the default): ``cuda`` when :func:`torch.cuda.is_available`, else ``cpu``;
- ``cpu``;
- ``cuda``: the current CUDA device (an error when CUDA is absent);
- ``cuda:N``: CUDA device number ``N`` (an error when CUDA is absent or ``N`` is not below
  :func:`torch.cuda.device_count`).

:func:`check_device_name` checks only the form (configs are validated on machines without the
device); :func:`resolve_device` also checks that the device is there.
"""
from __future__ import annotations

import os
import re

import torch

from mxt_sdk.errors import ConfigError

__all__ = ["AUTO", "DEVICE_FORMS", "check_device_name", "resolve_device", "mixed_precision_for", "training_device",
           "loader_workers", "decode_threads"]

AUTO = "auto"
DEVICE_FORMS = "auto, cpu, cuda or cuda:N"
_FORM = re.compile(r"^(auto|cpu|cuda)$|^cuda:(\d+)$")


def check_device_name(name: str, where: str = "device") -> str:
    """``name`` normalised (trimmed, lower case) if it has one of the accepted forms; else a
    :class:`ConfigError` naming ``where`` (the field or option) and the forms."""
    text = str(name).strip().lower()
    if not _FORM.match(text):
        raise ConfigError(f"{where}: {name!r} is not a device; use {DEVICE_FORMS}.")
    return text


def resolve_device(name: str | torch.device | None = AUTO, where: str = "device") -> torch.device:
    """The :class:`torch.device` that ``name`` means on this machine (``None`` means ``auto``).

    Raises :class:`ConfigError` naming ``where`` when the form is wrong, when CUDA is asked for and
    absent, or when ``cuda:N`` names a device this machine does not have."""
    if isinstance(name, torch.device):
        name = str(name)
    text = check_device_name(AUTO if name is None else name, where)
    if text == AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"{where}: {text!r} asks for CUDA, which this machine does not have (no CUDA "
                          "device, or PyTorch built without CUDA); use 'cpu' or 'auto'.")
    if text == "cuda":
        return torch.device("cuda")
    index, count = int(text.split(":", 1)[1]), torch.cuda.device_count()
    if index >= count:
        raise ConfigError(f"{where}: {text!r} is out of range; this machine has {count} CUDA device"
                          f"{'s' if count != 1 else ''} (cuda:0{f' to cuda:{count - 1}' if count > 1 else ''}).")
    return torch.device("cuda", index)


def mixed_precision_for(setting: str, device: torch.device) -> str:
    """The autocast mode of training (``training.mixed_precision``) on ``device``: ``auto`` is
    ``bf16`` on a CUDA device that supports it and ``no`` elsewhere; any mode is ``no`` off CUDA, so
    CPU training is never autocast."""
    if device.type != "cuda":
        return "no"
    if setting == AUTO:
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    return setting


def training_device(name: str | None = AUTO) -> torch.device:
    """The device of a training run (``training.device``), resolved as :func:`resolve_device` does.

    accelerate trains a single process on the *current* CUDA device, so ``cuda:N`` makes device N
    current. Processes started by ``torchrun`` / ``accelerate launch`` (``WORLD_SIZE`` > 1) each
    take their local GPU and ignore N."""
    device = resolve_device(name, "training.device")
    if device.type == "cuda" and device.index is not None and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        torch.cuda.set_device(device)
    return device


def loader_workers(setting: int | str, device: torch.device, decodes_images: bool) -> int:
    """Data-loader worker processes for ``training.num_workers``: a number is kept; ``auto`` is 0 on
    CPU, where a worker would take cores from the model's own threads (tokenizing a batch as it is
    drawn costs a few milliseconds against a step's hundreds); on CUDA 1 when batches decode no images
    (it tokenizes the next batches while the GPU steps), and with image decoding half the cores, at
    most 4, so decoding overlaps the GPU's steps."""
    if setting != AUTO:
        return int(setting)
    if device.type != "cuda":
        return 0
    return min(4, max(1, (os.cpu_count() or 1) // 2)) if decodes_images else 1


def decode_threads(device: torch.device) -> int:
    """Threads that decode one chunk's images at extraction: 1 on CPU, where the model's own threads
    want the cores (a background thread still decodes the next chunk while the model runs); on CUDA
    half the cores, at most 4, as :func:`loader_workers` gives training."""
    return max(1, loader_workers(AUTO, device, decodes_images=True))
