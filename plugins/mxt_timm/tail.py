"""An EfficientNet-family network cut in two: a fixed trunk and a trained tail.

With ``train_last_blocks: N`` the last ``N`` inverted-residual blocks (counted one by one across
stages) and the head convolution with its batch norm train, the rest keeps its pretrained weights. The
trunk's output map (at 224 px for EfficientNet-Lite0: 7x7x192 after the second-to-last block) is what
the training feature cache stores; the tail runs on it at every step. The tail's batch norms keep their
pretrained running statistics (only their scale and shift train): a training batch holds a few dozen
photos, too few for batch statistics.

Only timm's ``EfficientNet`` class (``efficientnet_*``, ``tf_efficientnet_*``, ``tf_efficientnet_lite*``,
``mnasnet``, ``mixnet``...) is supported: its ``forward_features`` is stem -> blocks -> head convolution,
which is the layout the cut relies on.
"""
from __future__ import annotations

import torch
from timm.models.efficientnet import EfficientNet

from mxt_sdk.errors import ConfigError

__all__ = ["check_cut", "tail_modules", "trunk_forward", "tail_forward"]


def _blocks(network: torch.nn.Module) -> list[torch.nn.Module]:
    """The network's blocks one by one, in order (stages flattened)."""
    return [block for stage in network.blocks for block in stage]


def check_cut(network: torch.nn.Module, blocks: int, model_name: str) -> None:
    """Raise :class:`ConfigError` unless ``network`` can train its last ``blocks`` blocks over a fixed trunk."""
    if not isinstance(network, EfficientNet):
        raise ConfigError(f"train_last_blocks needs a timm EfficientNet-family network (e.g. tf_efficientnet_lite0); "
                          f"{model_name!r} is a {type(network).__name__}")
    total = len(_blocks(network))
    if blocks >= total:
        raise ConfigError(f"train_last_blocks: {blocks}, but {model_name!r} has {total} blocks; the trunk must keep "
                          "at least one")


def tail_modules(network: torch.nn.Module, blocks: int) -> list[torch.nn.Module]:
    """The modules that train: the last ``blocks`` blocks, the head convolution and its norm."""
    return [*_blocks(network)[-blocks:], network.conv_head, network.bn2]


def trunk_forward(network: torch.nn.Module, pixels: torch.Tensor, blocks: int) -> torch.Tensor:
    """The map ``[B, C, h, w]`` before the last ``blocks`` blocks (``network`` may be a batch-norm-folded copy)."""
    x = network.bn1(network.conv_stem(pixels))
    for block in _blocks(network)[:-blocks]:
        x = block(x)
    return x


def tail_forward(network: torch.nn.Module, trunk: torch.Tensor, blocks: int) -> torch.Tensor:
    """What ``network.forward_features`` gives, from the trunk's map: ``trunk_forward`` then this equals it."""
    x = trunk
    for block in _blocks(network)[-blocks:]:
        x = block(x)
    return network.bn2(network.conv_head(x))
