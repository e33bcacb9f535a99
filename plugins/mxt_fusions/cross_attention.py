"""``xattn``: multi-head cross-attention of the encoder output over projected image regions.

``F = LayerNorm(T_enc + Dropout(MultiHeadAttention(query=T_enc, key=R, value=R)))`` with
``R = W_R regions``. Rows without an image get a zero attention term (``F = LayerNorm(T_enc)``).
"""
from __future__ import annotations

import torch
from pydantic import Field

from mxt_sdk import Fusion, FusionOutput
from mxt_sdk.errors import ConfigError

from mxt_fusions.image_input import ImageInput, ImageInputOptions


class CrossAttentionOptions(ImageInputOptions):
    heads: int = Field(default=8, ge=1)
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    layer_norm_eps: float = Field(default=1e-6, gt=0.0)


class CrossAttentionFusion(Fusion):
    """Lets every text position attend over the regional feature map of the image."""

    name = "xattn"
    aliases = ("cross_attention",)
    Options = CrossAttentionOptions
    example_options = {"heads": 4, "dropout": 0.0}
    stage = "encoder_output"
    image_input = "regional"

    def __init__(self, options: CrossAttentionOptions, *, text_dim: int, image_dim: int):
        super().__init__(options, text_dim=text_dim, image_dim=image_dim)
        if text_dim % options.heads:
            raise ConfigError(f"xattn: heads={options.heads} must divide the text width {text_dim}.")
        self.image_prep = ImageInput(options, image_dim, options.layer_norm_eps)  # regions -> norm / dropout
        self.region_projection = torch.nn.Linear(image_dim, text_dim)
        # sequence-first: given batch-first inputs, torch transposes them into views, and its input projections
        # then run as batched matmuls over a copy of the weight per position (a quarter of bf16 extraction's time)
        self.attention = torch.nn.MultiheadAttention(text_dim, options.heads, dropout=options.dropout)
        self.dropout = torch.nn.Dropout(options.dropout)
        self.layer_norm = torch.nn.LayerNorm(text_dim, eps=options.layer_norm_eps)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor, image: torch.Tensor,
                has_image: torch.Tensor) -> FusionOutput:
        regions = self.region_projection(self.image_prep(image.to(hidden.dtype)))
        query, regions = hidden.transpose(0, 1).contiguous(), regions.transpose(0, 1).contiguous()
        attended = self.attention(query, regions, regions, need_weights=False)[0].transpose(0, 1)
        attended = attended * has_image[:, None, None].to(attended.dtype)
        return FusionOutput(self.layer_norm(hidden + self.dropout(attended)), attention_mask)
