"""``concat``: the "without MAG" ablation. The projected global image vector becomes one extra
input position in front of the text; rows without an image mask that position out."""
from __future__ import annotations

import torch

from mxt_sdk import ComponentOptions, Fusion, FusionOutput


class ConcatFusion(Fusion):
    """Prepends the image as a pseudo-token instead of gating it into every token."""

    name = "concat"
    Options = ComponentOptions
    stage = "embeddings"
    image_input = "global"

    def __init__(self, options: ComponentOptions, *, text_dim: int, image_dim: int):
        super().__init__(options, text_dim=text_dim, image_dim=image_dim)
        self.projection = torch.nn.Linear(image_dim, text_dim)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor, image: torch.Tensor,
                has_image: torch.Tensor) -> FusionOutput:
        image_token = self.projection(image.to(hidden.dtype))[:, None, :]
        image_mask = has_image[:, None].to(attention_mask.dtype)
        return FusionOutput(torch.cat([image_token, hidden], dim=1),
                            torch.cat([image_mask, attention_mask], dim=1))
