"""Image features computed once per distinct image, for training with frozen image encoders.

With frozen encoders an image's features never change during training, so they are computed once
and reused for every (product, attribute) example and every epoch, as the paper did with its
precomputed ResNet-152 vectors. The cache is a folder of memory-mapped ``.npy`` arrays (one row per
distinct image reference, one array per feature kind) plus ``index.json``. Its name is a SHA-256 of
everything the features depend on: the encoders' weights and preprocessing, and each image file's
path, size and modification time; when any of those changes, a new folder is built and the stale
ones are removed. It can be deleted at any time (it is rebuilt), and it is written to a temporary
folder and renamed into place, so a crash never leaves a half-written cache that looks complete.

:class:`FeatureCache` has the same ``load(references)`` contract as
:class:`~mxt_sdk.images.batching.ImageLoader`, so the training collator takes either.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mxt_sdk import progress
from mxt_sdk.errors import ImageError
from mxt_sdk.images.batching import ImageLoader
from mxt_sdk.images.io import resolve_image_path
from mxt_sdk.model.mxt import ImageFeatures, MXTModel
from mxt_sdk.model.numerics import channels_last, channels_last_pixels
from mxt_sdk.storage import write_json

__all__ = ["FeatureCache", "encoders_frozen", "build_feature_cache"]

log = logging.getLogger(__name__)

CACHE_VERSION = 1
INDEX_FILE = "index.json"


def encoders_frozen(model: MXTModel) -> bool:
    """Whether the model has image encoders and none of their weights is trained."""
    return model.uses_images and not any(p.requires_grad for p in model.encoders.parameters())


def _file_stamp(reference: str, root: Path | None) -> str:
    """What identifies the image file's content cheaply: its resolved path, size and mtime."""
    try:
        path = resolve_image_path(reference, root)
        stat = path.stat()
    except (ImageError, OSError) as exc:
        return f"{reference}|unreadable|{type(exc).__name__}"
    return f"{path}|{stat.st_size}|{stat.st_mtime_ns}"


def _cache_key(model: MXTModel, references: Sequence[str], root: Path | None) -> str:
    digest = hashlib.sha256(f"mxt-feature-cache-v{CACHE_VERSION}".encode())
    digest.update(json.dumps(model.preprocessing(), sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.encoders.state_dict().items()):
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    for reference in references:
        digest.update(_file_stamp(reference, root).encode())
    return digest.hexdigest()


class FeatureCache:
    """Read side of a built cache folder: features of any set of image references."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        index = json.loads((self.folder / INDEX_FILE).read_text(encoding="utf-8"))
        self.kinds: list[str] = index["kinds"]
        self.rows: dict[str, int] = {ref: row for row, ref in enumerate(index["references"])}
        self.errors: dict[str, str] = index["errors"]
        self._arrays: dict[str, np.ndarray] | None = None

    def __getstate__(self) -> dict[str, Any]:  # data-loader workers reopen the memory maps themselves
        return {**self.__dict__, "_arrays": None}

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            self._arrays = {kind: np.load(self.folder / f"{kind}.npy", mmap_mode="r")
                            for kind in (*self.kinds, "has_image")}
        return self._arrays

    def load(self, references: Sequence[str | None]) -> tuple[ImageFeatures, list[str | None]]:
        """Features of each reference (zeros and ``has_image=False`` for None, unknown or unreadable
        images) and, per reference, the error text or None."""
        known = [ref is not None and ref in self.rows for ref in references]
        rows = np.asarray([self.rows[ref] if ok else 0 for ref, ok in zip(references, known)], dtype=np.int64)
        present = torch.as_tensor(known, dtype=torch.bool)
        arrays = self.arrays
        has_image = torch.from_numpy(np.asarray(arrays["has_image"][rows])) & present
        features = {}
        for kind in self.kinds:
            values = torch.from_numpy(np.array(arrays[kind][rows], dtype=np.float32))
            values[~has_image] = 0.0
            features[kind] = values
        errors = [None if ref is None else self.errors.get(ref) if ok else f"image {ref!r} is not in the feature cache"
                  for ref, ok in zip(references, known)]
        return ImageFeatures(features, has_image), errors


@torch.no_grad()
def _encode_all(model: MXTModel, loader: ImageLoader, references: list[str], folder: Path,
                batch_size: int, device: torch.device) -> tuple[list[str], dict[str, str]]:
    """Encode ``references`` in order into ``<kind>.npy`` memory maps under ``folder``; return the
    feature kinds written and the errors by reference."""
    arrays: dict[str, np.ndarray] = {}
    has_image = np.lib.format.open_memmap(folder / "has_image.npy", mode="w+", dtype=np.bool_,
                                          shape=(len(references),))
    errors: dict[str, str] = {}
    was_training = model.training
    channels_last(model.eval())  # the engine's fp32 layout: same maths, much faster depthwise convolutions
    try:
        for start in progress.bar(iterable=range(0, len(references), batch_size), desc="Encoding images once",
                                  unit="batch"):
            chunk = references[start:start + batch_size]
            pixels, chunk_errors = loader.load(chunk)
            encoded = model.encode_images(channels_last_pixels(pixels.to(device)))
            for kind, values in encoded.features.items():
                if kind not in arrays:
                    arrays[kind] = np.lib.format.open_memmap(folder / f"{kind}.npy", mode="w+", dtype=np.float32,
                                                             shape=(len(references), *values.shape[1:]))
                arrays[kind][start:start + len(chunk)] = values.float().cpu().numpy()
            has_image[start:start + len(chunk)] = encoded.has_image.cpu().numpy()
            errors.update({ref: err for ref, err in zip(chunk, chunk_errors) if err})
    finally:
        model.train(was_training)
    for array in (*arrays.values(), has_image):
        array.flush()
    return sorted(arrays), errors


def build_feature_cache(model: MXTModel, references: Iterable[str | None], loader: ImageLoader,
                        root: Path, *, batch_size: int = 32, device: torch.device | str = "cpu") -> FeatureCache:
    """The cache of ``model``'s image features for ``references`` under ``root``: reused when one with
    the same key exists, built otherwise (stale caches under ``root`` are removed)."""
    if not encoders_frozen(model):
        raise ValueError("a feature cache needs frozen image encoders (their features must not change)")
    distinct = sorted({ref for ref in references if ref is not None})
    if not distinct:
        raise ValueError("no image references to cache")
    key = _cache_key(model, distinct, loader.root)
    folder = Path(root) / key[:32]
    if (folder / INDEX_FILE).is_file():
        log.info("Reusing the image feature cache %s (%d images)", folder, len(distinct))
        return FeatureCache(folder)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.iterdir():
        shutil.rmtree(stale, ignore_errors=True)
    staging = root / f".tmp-{key[:32]}"
    staging.mkdir()
    kinds, errors = _encode_all(model, loader, distinct, staging, batch_size, torch.device(device))
    write_json(staging / INDEX_FILE, {"version": CACHE_VERSION, "kinds": kinds,
                                      "references": distinct, "errors": errors})
    staging.rename(folder)
    log.info("Cached the features of %d images (%d unreadable) in %s", len(distinct), len(errors), folder)
    return FeatureCache(folder)
