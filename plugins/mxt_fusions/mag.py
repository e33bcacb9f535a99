"""``mag``: the multimodal adaptation gate, applied to the generator's input embeddings.

For each token embedding ``T_i`` and the global image vector ``V``::

    g_i = ReLU(W_g [T_i ; V] + b_g)
    H_i = g_i * (W_H V) + b_H
    a_i = min(||T_i|| / ||H_i|| * beta, 1)      (a_i = 0 where ||H_i|| = 0)
    F_i = Dropout(LayerNorm(T_i + a_i * H_i))

Rows without an image get ``H_i = 0`` (so ``F_i = Dropout(LayerNorm(T_i))``).
"""
from __future__ import annotations

import torch
from pydantic import Field

from mxt_sdk import Fusion, FusionOutput

from mxt_fusions.image_input import ImageInput, ImageInputOptions


class MAGOptions(ImageInputOptions):
    beta: float = Field(default=1.0, gt=0.0, description="scale of the displacement's norm ratio")
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    layer_norm_eps: float = Field(default=1e-6, gt=0.0)


class MAGFusion(Fusion):
    """Shifts each token embedding by a gated, norm-bounded displacement computed from the image."""

    name = "mag"
    Options = MAGOptions
    example_options = {"dropout": 0.0}
    stage = "embeddings"
    image_input = "global"

    def __init__(self, options: MAGOptions, *, text_dim: int, image_dim: int):
        super().__init__(options, text_dim=text_dim, image_dim=image_dim)
        self.gate = torch.nn.Linear(text_dim + image_dim, text_dim)            # W_g, b_g
        self.displacement = torch.nn.Linear(image_dim, text_dim, bias=False)   # W_H
        self.displacement_bias = torch.nn.Parameter(torch.zeros(text_dim))     # b_H
        self.layer_norm = torch.nn.LayerNorm(text_dim, eps=options.layer_norm_eps)
        self.dropout = torch.nn.Dropout(options.dropout)
        self.image_prep = ImageInput(options, image_dim, options.layer_norm_eps)  # V -> norm / dropout

    def _gate(self, hidden: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """``W_g [T_i ; V] + b_g`` as ``W_g,T T_i + W_g,V V + b_g``: the image's part once per product, not
        per token. A quantized ``gate`` (int8 extraction) has no weight to slice: it gets the concatenation."""
        weight = self.gate.weight
        if not isinstance(weight, torch.Tensor):
            return self.gate(torch.cat([hidden, image[:, None, :].expand(-1, hidden.size(1), -1)], dim=-1))
        text_dim = hidden.size(-1)
        text_part = torch.nn.functional.linear(hidden, weight[:, :text_dim], self.gate.bias)
        return text_part + torch.nn.functional.linear(image, weight[:, text_dim:])[:, None, :]

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor, image: torch.Tensor,
                has_image: torch.Tensor) -> FusionOutput:
        image = self.image_prep(image.to(hidden.dtype))
        gate = torch.relu(self._gate(hidden, image))                                     # g_i
        shift = gate * self.displacement(image)[:, None, :] + self.displacement_bias  # H_i
        shift = shift * has_image[:, None, None].to(shift.dtype)                     # no image: H_i = 0
        text_norm = hidden.norm(dim=-1)
        shift_norm = shift.norm(dim=-1)
        ratio = text_norm / shift_norm.clamp_min(torch.finfo(shift_norm.dtype).tiny) * self.options.beta
        alpha = torch.where(shift_norm > 0, ratio.clamp(max=1.0), torch.zeros_like(ratio))  # a_i
        fused = self.dropout(self.layer_norm(hidden + alpha[..., None] * shift))     # F_i
        return FusionOutput(fused, attention_mask)
