"""Batch norms folded into the convolutions before them, for frozen networks at inference.

A frozen network's batch norm is an affine map per channel, ``y = (x - mean) / sqrt(var + eps) * w + b``.
When ``x`` is the output of a convolution and nothing else reads that output, the map can be moved into
the convolution: its weight is scaled by ``s = w / sqrt(var + eps)`` per output channel and its bias
becomes ``(bias - mean) * s + b``. The batch norm then leaves only what came after the normalisation
(timm's ``BatchNormAct2d`` keeps its dropout and activation), so one pass over the feature map is
saved per convolution: on EfficientNet-Lite0 at 224 px on 2 CPU cores about a third of the network's
time (``benchmarks/feature_cache_scale.py``).

:func:`folded_copy` works on any network: it runs one example through a copy of the network to see
which batch norm reads which convolution's output (hooks, no tracing), folds only pairs where the
convolution's output feeds that batch norm alone, and checks the folded copy against the original on
the example. Where the check fails (a network that reads a convolution's output twice, say) it gives
``None`` and the caller keeps the original network.
"""
from __future__ import annotations

import copy
import logging

import torch

log = logging.getLogger(__name__)

#: largest difference, relative to the largest output, allowed between the folded and original network
TOLERANCE = 1e-4


def folded_copy(network: torch.nn.Module, example: torch.Tensor) -> torch.nn.Module | None:
    """A copy of eval-mode ``network`` with its batch norms folded into their convolutions, or ``None``
    when nothing folds or the folded copy does not match ``network`` on ``example`` (within
    :data:`TOLERANCE`). ``network`` itself is not changed."""
    folded = copy.deepcopy(network).eval()
    pairs = _conv_norm_pairs(folded, example)
    if not pairs:
        return None
    modules = dict(folded.named_modules())
    with torch.no_grad():
        for conv_name, norm_name in pairs:
            _fold(modules[conv_name], modules[norm_name])
            _replace(folded, norm_name, _after_normalisation(modules[norm_name]))
        expected, got = network(example), folded(example)
    difference = (expected - got).abs().max().item()
    if difference > TOLERANCE * max(expected.abs().max().item(), 1.0):
        log.warning("Batch-norm folding changed %s's output by %.3g; running it unfolded.",
                    type(network).__name__, difference)
        return None
    return folded


def _conv_norm_pairs(network: torch.nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """(convolution, batch norm) names where the batch norm's input is that convolution's output and
    no other hooked module reads it."""
    calls: list[tuple[str, int, int]] = []  # (module name, id of its input, id of its output)
    readers: dict[int, int] = {}
    alive: list[torch.Tensor] = []  # every recorded tensor stays referenced, so no id is reused
    hooks = []
    for name, module in network.named_modules():
        # leaves see the tensors that flow between layers; timm's BatchNormAct2d has children
        if not list(module.children()) or isinstance(module, torch.nn.BatchNorm2d):
            def record(module, inputs, output, name=name):
                if inputs and isinstance(inputs[0], torch.Tensor) and isinstance(output, torch.Tensor):
                    alive.extend((inputs[0], output))
                    calls.append((name, id(inputs[0]), id(output)))
                    readers[id(inputs[0])] = readers.get(id(inputs[0]), 0) + 1
            hooks.append(module.register_forward_hook(record))
    try:
        with torch.no_grad():
            network(example)
    finally:
        for hook in hooks:
            hook.remove()
    modules = dict(network.named_modules())
    made_by: dict[int, str] = {}
    pairs = []
    for name, source, output in calls:
        module, producer = modules[name], modules.get(made_by.get(source, ""))
        if (_foldable_norm(module) and isinstance(producer, torch.nn.Conv2d) and readers[source] == 1
                and producer.out_channels == module.num_features):
            pairs.append((made_by[source], name))
        made_by[output] = name
    return pairs


def _foldable_norm(module: torch.nn.Module) -> bool:
    return (isinstance(module, torch.nn.BatchNorm2d) and not module.training
            and module.running_mean is not None and module.running_var is not None)


def _fold(conv: torch.nn.Conv2d, norm: torch.nn.BatchNorm2d) -> None:
    scale = torch.rsqrt(norm.running_var + norm.eps)
    shift = -norm.running_mean * scale
    if norm.affine:
        scale, shift = scale * norm.weight, shift * norm.weight + norm.bias
    bias = shift if conv.bias is None else conv.bias * scale + shift
    conv.weight.mul_(scale.reshape(-1, *([1] * (conv.weight.dim() - 1))))
    conv.bias = torch.nn.Parameter(bias.detach().clone(), requires_grad=False)


def _after_normalisation(norm: torch.nn.BatchNorm2d) -> torch.nn.Module:
    """What the batch norm module does after normalising: nothing for torch's, dropout + activation
    for timm's ``BatchNormAct2d``."""
    rest = [getattr(norm, name) for name in ("drop", "act") if isinstance(getattr(norm, name, None), torch.nn.Module)]
    return torch.nn.Sequential(*rest) if rest else torch.nn.Identity()


def _replace(network: torch.nn.Module, name: str, module: torch.nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(network.get_submodule(parent) if parent else network, leaf, module)
