"""``tiny_cnn``: a two-layer convolutional image encoder, small enough for tests and CPU demos.

* ``output: global``   -> ``forward(pixels[B,3,S,S]) -> [B, out_dim]`` (average-pooled);
* ``output: regional`` -> ``forward(pixels[B,3,S,S]) -> [B, R, out_dim]`` with ``R = (S/4)**2``
  (the un-pooled feature map, one vector per cell).

It has no pretrained weights: its layers start random and are trained with the rest of the model.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from pydantic import Field

from mxt_sdk import ComponentOptions, ImageEncoder


class TinyCNNOptions(ComponentOptions):
    """What a config may set under ``options:`` (unknown keys are rejected by ComponentOptions)."""

    output: Literal["global", "regional"] = Field(
        default="global", description="'global': one pooled vector per image; 'regional': the feature map")
    out_dim: int = Field(default=32, ge=1, description="channels of the last convolution = feature width")
    hidden_channels: int = Field(default=16, ge=1, description="channels of the first convolution")
    image_size: int = Field(default=64, ge=8, description="square input side in pixels")


class TinyCNNEncoder(ImageEncoder):
    """conv(3->hidden, stride 2) -> ReLU -> conv(hidden->out_dim, stride 2) -> ReLU [-> mean pool]."""

    name = "tiny_cnn"
    aliases = ("tiny-cnn",)
    Options = TinyCNNOptions
    #: what mxt_sdk's conformance tests build this encoder with (small and offline)
    example_options = {"out_dim": 16, "image_size": 32}

    def __init__(self, options: TinyCNNOptions, *, saved: Mapping[str, Any] | None = None):
        super().__init__(options, saved=saved)
        self.output = options.output
        self.out_dim = options.out_dim
        self.layers = torch.nn.Sequential(
            torch.nn.Conv2d(3, options.hidden_channels, kernel_size=3, stride=2, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(options.hidden_channels, options.out_dim, kernel_size=3, stride=2, padding=1),
            torch.nn.ReLU(),
        )
        # A saved model carries the preprocessing it was trained with; reuse it verbatim so loading
        # never depends on this package's current defaults. (The weights come from model.safetensors.)
        self._preprocessing = dict(saved["preprocessing"]) if saved else self._default_preprocessing(options)

    @staticmethod
    def _default_preprocessing(options: TinyCNNOptions) -> dict[str, Any]:
        return {
            "input_size": [3, options.image_size, options.image_size],
            "mean": [0.5, 0.5, 0.5],
            "std": [0.5, 0.5, 0.5],
            "interpolation": "bilinear",
            "crop_pct": 1.0,
            "crop_mode": "center",
        }

    def preprocessing(self) -> dict[str, Any]:
        return dict(self._preprocessing)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        features = self.layers(pixels)                   # [B, out_dim, h, w]
        if self.output == "global":
            return features.mean(dim=(2, 3))              # [B, out_dim]
        return features.flatten(2).transpose(1, 2)        # [B, h*w, out_dim]
