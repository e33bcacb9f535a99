"""What a fusion does to the image features before its own projection: optional layer norm and dropout.

Frozen backbone features arrive on the backbone's scale (EfficientNet's pooled vector: non-negative,
per-dimension means from ~0 to ~2), which suits a classifier trained on them after standardisation but
not a projection trained from scratch next to unit-scale text embeddings. ``image_norm`` puts each
vector (or each region) through a LayerNorm; ``image_dropout`` drops feature dimensions in training,
a regulariser for small catalogs where the fusion would otherwise memorise each photo.
"""
from __future__ import annotations

import torch
from pydantic import Field

from mxt_sdk import ComponentOptions

__all__ = ["ImageInputOptions", "ImageInput"]


class ImageInputOptions(ComponentOptions):
    image_norm: bool = Field(default=False, description="LayerNorm over the image features' last dimension")
    image_dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="dropout on the image features")


class ImageInput(torch.nn.Module):
    """``Dropout(LayerNorm(v))`` (each part only when asked for) over the last dimension of ``v``."""

    def __init__(self, options: ImageInputOptions, image_dim: int, eps: float):
        super().__init__()
        # Only built when asked for, so that folders saved without it keep loading strictly.
        self.norm = torch.nn.LayerNorm(image_dim, eps=eps) if options.image_norm else None
        self.dropout = torch.nn.Dropout(options.image_dropout)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.norm is not None:
            image = self.norm(image)
        return self.dropout(image)
