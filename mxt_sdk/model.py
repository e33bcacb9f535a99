"""The MXT network assembled from registered components, and its save/load format.

``images -> encoders -> ImageFeatures`` (once per product), then per example::

    token ids -> generator.embed -> fusions@"embeddings" (MAG / concat) -> generator.encode
              -> fusions@"encoder_output" (cross-attention) -> generator.loss / generator.greedy

Examples point at their product's image features through ``image_index``, so an image is encoded
once however many attributes are asked of it.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from mxt_sdk import registry
from mxt_sdk.components import Fusion, GreedyOutput, ImageEncoder
from mxt_sdk.config import ComponentSpec, ModelConfig
from mxt_sdk.errors import ConfigError

__all__ = ["ImageFeatures", "ImagePixels", "MXTModel", "ENCODER_SLOTS"]

#: config field -> the ``output`` an encoder in that slot must produce
ENCODER_SLOTS = {"global_encoder": "global", "regional_encoder": "regional"}


@dataclass
class ImagePixels:
    """Preprocessed pixels of P products, one tensor per encoder slot, and which products have one."""

    pixels: dict[str, torch.Tensor]
    has_image: torch.Tensor

    def to(self, device: torch.device | str) -> "ImagePixels":
        return ImagePixels({k: v.to(device) for k, v in self.pixels.items()}, self.has_image.to(device))


@dataclass
class ImageFeatures:
    """Encoded images of P products: ``global`` ``[P, D]``, ``regional`` ``[P, R, D]``, ``has_image [P]``."""

    features: dict[str, torch.Tensor]
    has_image: torch.Tensor

    def select(self, index: torch.Tensor) -> "ImageFeatures":
        """Features for examples ``index[B]`` (each an index into the P products)."""
        return ImageFeatures({k: v[index] for k, v in self.features.items()}, self.has_image[index])


class MXTModel(torch.nn.Module):
    """Generator + optional image encoders + fusions, built from a :class:`ModelConfig`.

    ``saved`` maps component slots to the states exported when the model was saved; with it no
    pretrained weights are fetched (the saved tensors are loaded afterwards).
    """

    def __init__(self, config: ModelConfig, saved: Mapping[str, Any] | None = None):
        super().__init__()
        saved = saved or {}
        self.config = config
        self.generator = registry.create("generators", config.generator.name, config.generator.options,
                                         saved=saved.get("generator"))
        self.encoders = torch.nn.ModuleDict()
        for slot, expected in ENCODER_SLOTS.items():
            spec: ComponentSpec | None = getattr(config, slot)
            if spec is None:
                continue
            encoder: ImageEncoder = registry.create("image_encoders", spec.name, spec.options,
                                                    saved=saved.get(slot))
            if encoder.output != expected:
                raise ConfigError(
                    f"model.{slot}: image encoder {spec.name!r} gives {encoder.output!r} features but this "
                    f"slot needs {expected!r} ones (for the generic 'timm' encoder set pool: "
                    f"{str(expected == 'global').lower()})."
                )
            self.encoders[expected] = encoder
        self.embedding_fusions = torch.nn.ModuleList()
        self.encoder_fusions = torch.nn.ModuleList()
        for position, spec in enumerate(config.fusions):
            fusion = self._build_fusion(position, spec)
            (self.embedding_fusions if fusion.stage == "embeddings" else self.encoder_fusions).append(fusion)
        consumed = {f.image_input for f in (*self.embedding_fusions, *self.encoder_fusions)}
        for kind in set(self.encoders) - consumed:
            slot = next(s for s, out in ENCODER_SLOTS.items() if out == kind)
            raise ConfigError(
                f"model.{slot} is set but no fusion uses {kind!r} image features; add a fusion that does "
                f"(e.g. {'mag' if kind == 'global' else 'xattn'}) or remove model.{slot}."
            )

    def _build_fusion(self, position: int, spec: ComponentSpec) -> Fusion:
        cls = registry.get_component("fusions", spec.name).cls
        encoder = self.encoders[cls.image_input] if cls.image_input in self.encoders else None
        if encoder is None:
            slot = next(s for s, out in ENCODER_SLOTS.items() if out == cls.image_input)
            raise ConfigError(
                f"model.fusions[{position}] {spec.name!r} needs {cls.image_input!r} image features: "
                f"set model.{slot}."
            )
        return registry.create("fusions", spec.name, spec.options, text_dim=self.generator.d_model,
                               image_dim=encoder.out_dim)

    @property
    def uses_images(self) -> bool:
        return len(self.encoders) > 0

    def preprocessing(self) -> dict[str, dict[str, Any]]:
        """Per encoder output kind, how images must be preprocessed for it."""
        return {kind: encoder.preprocessing() for kind, encoder in self.encoders.items()}

    # ----------------------------------------------------------------- compute
    def encode_images(self, images: ImagePixels) -> ImageFeatures:
        """Run each encoder once over the products that have an image; others get zeros."""
        has_image = images.has_image
        features = {}
        for kind, encoder in self.encoders.items():
            pixels = images.pixels[kind]
            present = pixels[has_image]
            encoded = encoder(present) if present.size(0) else None
            shape = (pixels.size(0), *encoded.shape[1:]) if encoded is not None else \
                (pixels.size(0), *self._empty_shape(encoder, pixels))
            out = torch.zeros(shape, dtype=encoded.dtype if encoded is not None else pixels.dtype,
                              device=pixels.device)
            if encoded is not None:
                out[has_image] = encoded
            features[kind] = out
        return ImageFeatures(features, has_image)

    @staticmethod
    def _empty_shape(encoder: ImageEncoder, pixels: torch.Tensor) -> tuple[int, ...]:
        if encoder.output == "global":
            return (encoder.out_dim,)
        with torch.no_grad():  # no product has an image: learn the region count from one blank image
            return tuple(encoder(pixels[:1]).shape[1:])

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    images: ImageFeatures | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder-side states after all fusions, and their attention mask. ``images`` is per example."""
        if images is None and (self.embedding_fusions or self.encoder_fusions):
            raise ValueError("this model fuses images: pass image features (ImageFeatures) for the batch")
        hidden = self.generator.embed(input_ids)
        mask = attention_mask
        for fusion in self.embedding_fusions:
            out = fusion(hidden, mask, images.features[fusion.image_input], images.has_image)
            hidden, mask = out.hidden, out.attention_mask
        hidden = self.generator.encode(hidden, mask)
        for fusion in self.encoder_fusions:
            out = fusion(hidden, mask, images.features[fusion.image_input], images.has_image)
            hidden, mask = out.hidden, out.attention_mask
        return hidden, mask

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
                images: ImageFeatures | None = None) -> torch.Tensor:
        """Token-level NLL of ``labels`` (-100 ignored) given text and per-example image features."""
        hidden, mask = self.encode_text(input_ids, attention_mask, images)
        return self.generator.loss(hidden, mask, labels)

    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 images: ImageFeatures | None, max_new_tokens: int) -> GreedyOutput:
        """Greedy answers with per-token log-probabilities."""
        hidden, mask = self.encode_text(input_ids, attention_mask, images)
        return self.generator.greedy(hidden, mask, max_new_tokens)

    def export_states(self) -> dict[str, Any]:
        """JSON-able state of each component slot, for :class:`MXTModel` ``saved=``."""
        states: dict[str, Any] = {"generator": self.generator.export_state()}
        for slot, kind in ENCODER_SLOTS.items():
            if kind in self.encoders:
                states[slot] = self.encoders[kind].export_state()
        return states
