"""Images of a batch of products, as pixels or as encoded features (what :class:`~mxt_sdk.model.mxt.MXTModel`
reads and the training feature cache stores)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["ImagePixels", "ImageFeatures", "scattered"]


@dataclass
class ImagePixels:
    """Preprocessed pixels of P products, one tensor per encoder slot, and which products have one."""

    pixels: dict[str, torch.Tensor]
    has_image: torch.Tensor

    def to(self, device: torch.device | str, **kwargs) -> "ImagePixels":
        return ImagePixels({k: v.to(device, **kwargs) for k, v in self.pixels.items()},
                           self.has_image.to(device, **kwargs))


@dataclass
class ImageFeatures:
    """Encoded images of P products: ``global`` ``[P, D]``, ``regional`` ``[P, R, D]``, ``has_image [P]``; or,
    before a trained tail has run, ``<kind>_trunk`` ``[P, C, h, w]`` (:meth:`MXTModel.fixed_features`)."""

    features: dict[str, torch.Tensor]
    has_image: torch.Tensor

    def to(self, device: torch.device | str) -> "ImageFeatures":
        return ImageFeatures({k: v.to(device) for k, v in self.features.items()}, self.has_image.to(device))

    def select(self, index: torch.Tensor) -> "ImageFeatures":
        """Features for examples ``index[B]`` (each an index into the P products)."""
        return ImageFeatures({k: v[index] for k, v in self.features.items()}, self.has_image[index])


def scattered(names: tuple[str, ...], outputs: tuple[torch.Tensor, ...], has_image: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each output (rows of the products with an image) placed at its products' rows, zeros elsewhere."""
    placed = {}
    for name, values in zip(names, outputs):
        out = values.new_zeros((has_image.size(0), *values.shape[1:]))
        out[has_image] = values
        placed[name] = out
    return placed
