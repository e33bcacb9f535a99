"""Loading a local weights file into a timm network without pickle."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from mxt_sdk.errors import ConfigError


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file, or of a torch file read with ``weights_only=True``."""
    if not path.is_file():
        raise ConfigError(f"checkpoint_path {str(path)!r} does not exist.")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def load_backbone_weights(network: torch.nn.Module, path: Path) -> None:
    """Load ``path`` into ``network``; classifier weights in the file are ignored, anything else
    missing or mis-shaped is an error naming the keys."""
    state = read_state_dict(path)
    own = network.state_dict()
    usable = {k: v for k, v in state.items() if k in own}
    wrong_shape = [k for k, v in usable.items() if v.shape != own[k].shape]
    missing = [k for k in own if k not in usable]
    if wrong_shape or missing:
        raise ConfigError(
            f"checkpoint {str(path)!r} does not fit this network: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"wrong shape {wrong_shape[:5]}{'...' if len(wrong_shape) > 5 else ''}."
        )
    network.load_state_dict(usable)
