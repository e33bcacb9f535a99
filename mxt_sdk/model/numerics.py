"""Numeric mode (dtype) of extraction: how the engine runs a model, never how it is trained or saved.

Modes (``extraction.dtype``, ``Extractor.extract(dtype=...)``, ``mxt extract --dtype``):

- ``fp32``: full precision; image encoders run channels-last (same maths, faster convolutions).
- ``bf16``: autocast to bfloat16 for matmuls and convolutions, run on a copy of the model whose linear and
  convolution weights are stored in bfloat16 once (autocast would cast them again at every call: a third of
  the time on CPU); norms, embeddings and the generator's log-probabilities stay float32. Fast on CPUs with
  AVX-512 BF16 / AMX and on GPUs.
- ``int8``: dynamic int8 quantization of every ``nn.Linear`` (CPU only), run on a quantized copy of
  the model (the model itself stays trainable); convolutions stay fp32 channels-last.
- ``auto``: ``bf16`` on CUDA, ``fp32`` on CPU.

The fast modes change floating-point results, so an answer can differ from fp32 where two tokens
are nearly tied; ``benchmarks/speed.py`` reports their agreement with fp32 on a trained model.
"""
from __future__ import annotations

import contextlib
import copy
import warnings
from typing import TYPE_CHECKING

import torch

from mxt_sdk.errors import ConfigError

if TYPE_CHECKING:
    from mxt_sdk.model.mxt import ImagePixels, MXTModel

DTYPES = ("auto", "fp32", "bf16", "int8")


def resolve_dtype(dtype: str, device: torch.device | str) -> str:
    """The concrete mode for ``dtype`` on ``device`` (``auto`` resolved); clear error if unusable."""
    kind = torch.device(device).type
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}.")
    if dtype == "auto":
        return "bf16" if kind == "cuda" else "fp32"
    if dtype == "int8" and kind != "cpu":
        raise ConfigError(f"dtype 'int8' (dynamic quantization) runs on CPU only; this model is on {kind}. "
                          "Use 'bf16' on GPU.")
    return dtype


def autocast(dtype: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """The autocast context for a resolved ``dtype`` (a no-op unless ``bf16``)."""
    if dtype != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def channels_last(model: "MXTModel") -> "MXTModel":
    """Put the image encoders' weights in channels-last layout (in place; returns ``model``)."""
    for encoder in model.encoders.values():
        encoder.to(memory_format=torch.channels_last)
    return model


def channels_last_pixels(pixels: "ImagePixels") -> "ImagePixels":
    """Image batches in channels-last layout, matching :func:`channels_last` encoders."""
    pixels.pixels = {kind: value.contiguous(memory_format=torch.channels_last) if value.dim() == 4 else value
                     for kind, value in pixels.pixels.items()}
    return pixels


def bf16_weights(model: "MXTModel") -> "MXTModel":
    """Store the weights (and biases) of every ``nn.Linear`` and convolution of ``model`` in bfloat16, in place
    and in their memory layout; a weight shared with an embedding (T5's tied output layer) gets its own copy,
    so the embedding stays float32. Only for running under :func:`autocast`, which then finds its matmul and
    convolution operands already in bfloat16 instead of casting the weights at every call."""
    for module in model.modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
            for name in ("weight", "bias"):
                tensor = getattr(module, name, None)
                if tensor is not None:
                    setattr(module, name, torch.nn.Parameter(tensor.detach().to(torch.bfloat16), requires_grad=False))
    return model


def inference_model(model: "MXTModel", dtype: str) -> "MXTModel":
    """The module the engine runs for a resolved ``dtype``: ``model`` itself (channels-last encoders) for
    fp32, a copy with bfloat16 weights for bf16 (:func:`bf16_weights`), a dynamically quantized copy for int8.
    The copies never train: the model itself stays the one weights are saved from."""
    if dtype == "fp32":
        return channels_last(model)
    if dtype == "bf16":
        return bf16_weights(channels_last(copy.deepcopy(model).eval()))
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch announces a move of this API to torchao; it still works here
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        quantized = quantize_dynamic(copy.deepcopy(model).eval(), {torch.nn.Linear}, dtype=torch.qint8)
    return channels_last(quantized)
