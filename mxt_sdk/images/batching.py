"""Turning tokenized examples into padded tensors, with each product image decoded once per batch."""
from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from mxt_sdk.data.padding import pad_batch  # noqa: F401  (importable from here, as before)
from mxt_sdk.errors import ImageError
from mxt_sdk.images.fetch import UrlPolicy
from mxt_sdk.images.io import Preprocessing, load_image, open_image_bytes, to_pixels
from mxt_sdk.model.mxt import ImageFeatures, ImagePixels

IGNORE_INDEX = -100


def truncate(ids: list[int], limit: int) -> list[int]:
    """Cut ``ids`` to ``limit`` tokens, keeping the final (EOS) token."""
    return ids if len(ids) <= limit else ids[: limit - 1] + ids[-1:]


@dataclass
class ImageLoader:
    """Decodes images under ``root`` (URLs as ``urls`` allows) and preprocesses them for each encoder."""

    preprocessing: dict[str, dict[str, Any]]
    root: Path | None
    max_pixels: int
    urls: UrlPolicy | None = None
    #: images decoded at once (threads of one :meth:`load`); 1: one after the other
    decode_threads: int = 1
    _specs: dict[str, Preprocessing] = field(init=False)

    def __post_init__(self):
        self._specs = {kind: Preprocessing.model_validate(p) for kind, p in self.preprocessing.items()}

    def load(self, references: Sequence[str | bytes | None]) -> tuple[ImagePixels, list[str | None]]:
        """Pixels for each reference (a path or URL, or the image file's bytes; zeros and
        ``has_image=False`` when None or unreadable) and, per reference, the error text or None.
        With ``decode_threads`` > 1 the images are decoded on that many threads (Pillow decodes and
        resizes outside the GIL); the result is the same."""
        pixels = {kind: torch.zeros((len(references), *spec.input_size)) for kind, spec in self._specs.items()}
        has_image = torch.zeros(len(references), dtype=torch.bool)
        errors: list[str | None] = [None] * len(references)
        threads = min(self.decode_threads, sum(r is not None for r in references))
        if threads > 1:
            with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mxt-decode") as pool:
                decoded = list(pool.map(self._decode, references))
        else:
            decoded = [self._decode(reference) for reference in references]
        for row, result in enumerate(decoded):
            if isinstance(result, str):
                errors[row] = result
            elif result is not None:
                for kind in self._specs:
                    pixels[kind][row] = result[kind]
                has_image[row] = True
        return ImagePixels(pixels, has_image), errors

    def _decode(self, reference: str | bytes | None) -> dict[str, torch.Tensor] | str | None:
        """One image's pixels per encoder kind, its error text, or None for no image."""
        if reference is None:
            return None
        try:
            image = (open_image_bytes(io.BytesIO(reference), self.max_pixels) if isinstance(reference, bytes)
                     else load_image(reference, self.root, max_pixels=self.max_pixels, urls=self.urls))
        except ImageError as exc:
            return str(exc)
        return {kind: to_pixels(image, spec) for kind, spec in self._specs.items()}


class ImageSource(Protocol):
    """Gives the images of a batch: ``load(references) -> (ImagePixels | ImageFeatures, errors)``."""

    def load(self, references: Sequence[str | None]) -> tuple[ImagePixels | ImageFeatures, list[str | None]]: ...


@dataclass
class TrainingCollator:
    """Collates rows ``{"input_ids", "labels", "image"}`` (and ``truncated``: whether the input was
    cut) into model inputs; ``truncated`` in the batch counts its rows that were cut.

    Rows that share an image reference share one decoded image (``image_index`` points at it).
    ``images`` is anything with :meth:`ImageLoader.load`'s contract: an :class:`ImageLoader` (pixels)
    or a feature cache (``mxt_sdk.training.feature_cache``, features already encoded).
    """

    pad_id: int
    images: ImageSource | None

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        input_ids, attention_mask = pad_batch([r["input_ids"] for r in rows], self.pad_id)
        labels, _ = pad_batch([r["labels"] for r in rows], IGNORE_INDEX)
        batch: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
                                 "images": None, "image_index": None, "image_errors": [],
                                 "truncated": sum(bool(r.get("truncated")) for r in rows)}
        if self.images is not None:
            references = list(dict.fromkeys(r.get("image") for r in rows))
            pixels, errors = self.images.load(references)
            position = {reference: i for i, reference in enumerate(references)}
            batch["images"] = pixels
            batch["image_index"] = torch.tensor([position[r.get("image")] for r in rows])
            batch["image_errors"] = [f"{ref}: {err}" for ref, err in zip(references, errors) if err]
        return batch
