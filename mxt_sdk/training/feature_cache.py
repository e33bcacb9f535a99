"""Image features computed once per distinct image, for training with frozen image encoders.

With frozen encoders an image's features never change during training, so they are computed once
and reused for every (product, attribute) example and every epoch, as the paper did with its
precomputed ResNet-152 vectors. The cache is a folder of memory-mapped ``.npy`` arrays (one row per
distinct image reference, one float16 array per feature kind) plus ``index.json``. Its name is a
SHA-256 of everything the features depend on: the encoders' weights and preprocessing, and each image
file's path, size and modification time; when any of those changes, a new folder is built and the
stale ones are removed. It can be deleted at any time (it is rebuilt).

Size: float16 halves the float32 features; a regional encoder with ``grid: 3`` (as in ``mxt-cpu``)
gives 9 regions instead of the 7x7 map, so an EfficientNet-Lite0 image takes 9x1280 + 1280 halves +
1 byte = 25,601 bytes (the 7x7 float32 layout took 256,001). Readers get float32 back. An encoder
that trains its last blocks (``train_last_blocks``) has its trunk's map cached instead, which its tail
reads at every step: 7x7x192 halves + 1 byte = 18,817 bytes for EfficientNet-Lite0 at 224 px.

Build: the sorted distinct references are encoded in chunks of ``chunk_images`` (memory bounded by
one chunk, never the whole catalog), each written under ``.tmp-<key>/chunks/`` and renamed into
place when complete; a build that is killed resumes from the chunks on disk (the same chunks and
batches give the same bytes). When every chunk is there they are joined into the final arrays, and
the staging folder is renamed to ``<key>``: a cache never looks complete when it is not.

:class:`FeatureCache` has the same ``load(references)`` contract as
:class:`~mxt_sdk.images.batching.ImageLoader`, so the training collator takes either.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from mxt_sdk import progress
from mxt_sdk.errors import ImageError
from mxt_sdk.images.batching import ImageLoader
from mxt_sdk.images.io import resolve_image_path
from mxt_sdk.model.mxt import ImageFeatures, MXTModel
from mxt_sdk.model.numerics import channels_last, channels_last_pixels
from mxt_sdk.storage import read_json, write_json

__all__ = ["FeatureCache", "ChunkEncoder", "encoders_frozen", "build_feature_cache", "encode_chunk",
           "encode_chunks_here", "encoder_digest"]

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # 2: float16 arrays, built in chunks
INDEX_FILE, PLAN_FILE, CHUNKS = "index.json", "plan.json", "chunks"
STORED_DTYPE = np.float16
#: images per chunk: what a killed build can lose, and what it holds in memory (1024 x 25.6 KB at grid 3)
CHUNK_IMAGES = 1024


def encoders_frozen(model: MXTModel) -> bool:
    """Whether the model has image encoders and training changes none of the features the cache holds
    (:meth:`MXTModel.fixed_features`: the whole output of a frozen encoder, the trunk's map of one
    that trains its last blocks)."""
    return model.image_features_fixed


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
    digest.update(encoder_digest(model).encode())
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

    @property
    def bytes_per_image(self) -> float:
        """Bytes of the feature arrays (``has_image`` included) per cached image."""
        files = (self.folder / f"{kind}.npy" for kind in (*self.kinds, "has_image"))
        return sum(path.stat().st_size for path in files) / max(len(self.rows), 1)

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


@dataclass
class _Chunk:
    """The encoded features of consecutive references: ``{kind: float16 [n, ...]}``, ``has_image [n]``
    and the errors by reference."""

    features: dict[str, np.ndarray]
    has_image: np.ndarray
    errors: dict[str, str]

    def save(self, folder: Path) -> None:
        """Write the chunk to ``folder`` (written aside and renamed: it exists only when complete)."""
        partial = folder.with_name(f".part-{folder.name}")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for kind, values in (*self.features.items(), ("has_image", self.has_image)):
            np.save(partial / f"{kind}.npy", values)
        write_json(partial / "errors.json", self.errors)
        partial.rename(folder)

    @classmethod
    def load(cls, folder: Path, kinds: Sequence[str]) -> "_Chunk":
        """A chunk :meth:`save` wrote (arrays memory-mapped)."""
        return cls({kind: np.load(folder / f"{kind}.npy", mmap_mode="r") for kind in kinds},
                   np.load(folder / "has_image.npy"), read_json(folder / "errors.json"))


@torch.no_grad()
def _encode_chunk(model: MXTModel, loader: ImageLoader, references: Sequence[str], batch_size: int,
                  device: torch.device) -> _Chunk:
    """Encode ``references`` in batches of ``batch_size`` (the model in eval mode, channels-last)."""
    parts: dict[str, list[np.ndarray]] = {}
    has_image: list[np.ndarray] = []
    errors: dict[str, str] = {}
    for start in range(0, len(references), batch_size):
        batch = references[start:start + batch_size]
        pixels, batch_errors = loader.load(batch)
        encoded = model.fixed_features(channels_last_pixels(pixels.to(device)))
        for kind, values in encoded.features.items():
            parts.setdefault(kind, []).append(values.to(torch.float16).cpu().numpy())
        has_image.append(encoded.has_image.cpu().numpy())
        errors.update({ref: err for ref, err in zip(batch, batch_errors) if err})
    return _Chunk({kind: _stack(kind_parts) for kind, kind_parts in parts.items()},
                  np.concatenate(has_image), errors)


def _stack(parts: Sequence[np.ndarray], shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``parts`` (rows of one feature kind) as one array whose rows have ``shape`` (default: the
    largest part's). Parts of another shape must be all zeros, as a batch without any image gives
    (a single zero region, :meth:`MXTModel.encode_images`); they become zero rows of ``shape``."""
    shape = shape or _largest(part.shape[1:] for part in parts)
    return np.concatenate([_widened(part, shape) for part in parts])


def _largest(shapes: Iterable[tuple[int, ...]]) -> tuple[int, ...]:
    """The shape with the most elements."""
    return max(shapes, key=math.prod)


def _widened(part: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if part.shape[1:] == shape:
        return part
    if part.any():
        raise ValueError(f"image features of shape {part.shape[1:]} and {shape} in one cache")
    return np.zeros((len(part), *shape), dtype=part.dtype)


def _claim_staging(root: Path, key: str, plan: dict[str, Any]) -> Path:
    """The staging folder of cache ``key`` under ``root``, kept (to resume) when it was started with the
    same ``plan``, fresh otherwise; every other entry of ``root`` (stale caches, other builds) is removed."""
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".tmp-{key[:32]}"
    for stale in root.iterdir():
        if stale != staging:
            shutil.rmtree(stale, ignore_errors=True)
    if staging.is_dir() and (staging / PLAN_FILE).is_file() and read_json(staging / PLAN_FILE) == plan:
        return staging
    shutil.rmtree(staging, ignore_errors=True)
    (staging / CHUNKS).mkdir(parents=True)
    write_json(staging / PLAN_FILE, plan)
    return staging


class ChunkEncoder(Protocol):
    """Writes the chunks numbered ``todo`` of ``references`` (chunk ``n``: ``references[n * chunk_images:
    (n + 1) * chunk_images]``, saved with :meth:`_Chunk.save` to ``folders[n]``); the in-process one is
    :func:`encode_chunks_here`, :mod:`mxt_sdk.training.feature_cache_ray` spreads them over Ray Data actors."""

    def __call__(self, references: list[str], folders: list[Path], todo: list[int], chunk_images: int) -> None: ...


def encode_chunk(model: MXTModel, loader: ImageLoader, references: list[str], number: int, folder: Path,
                 chunk_images: int, batch_size: int, device: torch.device) -> None:
    """Encode chunk ``number`` of ``references`` and save it to ``folder`` (the model in eval mode, channels-last:
    the engine's fp32 layout, same maths, much faster depthwise convolutions)."""
    was_training = model.training
    channels_last(model.eval())
    try:
        chunk = references[number * chunk_images:(number + 1) * chunk_images]
        _encode_chunk(model, loader, chunk, batch_size, device).save(folder)
    finally:
        model.train(was_training)


def encode_chunks_here(model: MXTModel, loader: ImageLoader, batch_size: int, device: torch.device) -> ChunkEncoder:
    """The :class:`ChunkEncoder` that encodes every chunk in this process, with a progress bar."""
    def encode(references: list[str], folders: list[Path], todo: list[int], chunk_images: int) -> None:
        for number in progress.bar(iterable=todo, desc="Encoding images once", unit="chunk"):
            encode_chunk(model, loader, references, number, folders[number], chunk_images, batch_size, device)
    return encode


def encoder_digest(model: MXTModel) -> str:
    """SHA-256 of the image encoders' preprocessing and of the weights their cached features depend on (a
    trained tail's are left out: they change as training goes); what a worker checks its own copy against."""
    digest = hashlib.sha256(json.dumps(model.preprocessing(), sort_keys=True, default=str).encode())
    fixed = {f"{kind}.{name}": tensor for kind, encoder in model.encoders.items()
             for name, tensor in encoder.fixed_state_dict().items()}
    for name, tensor in sorted(fixed.items()):
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _encode_chunks(encoder: ChunkEncoder, references: list[str], staging: Path, chunk_images: int) -> list[Path]:
    """Make sure every chunk of ``references`` is written under ``staging``; returns their folders in
    order. Chunks already on disk (a killed build's) are kept."""
    folders = [staging / CHUNKS / f"{number:06d}" for number in range(math.ceil(len(references) / chunk_images))]
    todo = [number for number, folder in enumerate(folders) if not folder.is_dir()]
    if len(todo) < len(folders):
        log.info("Resuming the image feature cache: %d of %d chunks already encoded", len(folders) - len(todo),
                 len(folders))
    if todo:
        encoder(references, folders, todo, chunk_images)
    missing = [folder.name for folder in folders if not folder.is_dir()]
    if missing:
        raise RuntimeError(f"the image feature cache's chunks {', '.join(missing[:5])} were not written")
    return folders


def _join_chunks(chunks: list[Path], staging: Path, rows: int) -> tuple[list[str], dict[str, str]]:
    """Copy the chunks, one at a time, into ``<kind>.npy`` arrays of ``rows`` rows under ``staging``;
    returns the feature kinds and the errors by reference."""
    kinds = sorted(path.stem for path in chunks[0].glob("*.npy") if path.stem != "has_image")
    shapes = {kind: _largest(np.load(folder / f"{kind}.npy", mmap_mode="r").shape[1:] for folder in chunks)
              for kind in kinds}  # from the files' headers
    arrays = {kind: np.lib.format.open_memmap(staging / f"{kind}.npy", mode="w+", dtype=STORED_DTYPE,
                                              shape=(rows, *shape)) for kind, shape in shapes.items()}
    arrays["has_image"] = np.lib.format.open_memmap(staging / "has_image.npy", mode="w+", dtype=np.bool_,
                                                    shape=(rows,))
    errors: dict[str, str] = {}
    start = 0
    for folder in chunks:
        chunk = _Chunk.load(folder, kinds)
        stop = start + len(chunk.has_image)
        for kind in kinds:
            arrays[kind][start:stop] = _stack([chunk.features[kind]], arrays[kind].shape[1:])
        arrays["has_image"][start:stop] = chunk.has_image
        errors.update(chunk.errors)
        start = stop
    for array in arrays.values():
        array.flush()
    return kinds, errors


def build_feature_cache(model: MXTModel, references: Iterable[str | None], loader: ImageLoader,
                        root: Path, *, batch_size: int = 32, device: torch.device | str = "cpu",
                        chunk_images: int = CHUNK_IMAGES, encoder: ChunkEncoder | None = None) -> FeatureCache:
    """The cache of ``model``'s image features for ``references`` under ``root``: reused when one with
    the same key exists, built (or a killed build resumed) otherwise; stale caches under ``root`` are
    removed. ``chunk_images`` images are encoded and written at a time, by ``encoder`` (default: in this
    process, :func:`encode_chunks_here`)."""
    if not encoders_frozen(model):
        raise ValueError("a feature cache needs frozen image encoders (their features must not change)")
    distinct = sorted({ref for ref in references if ref is not None})
    if not distinct:
        raise ValueError("no image references to cache")
    key = _cache_key(model, distinct, loader.root)
    root = Path(root)
    folder = root / key[:32]
    if (folder / INDEX_FILE).is_file():
        log.info("Reusing the image feature cache %s (%d images)", folder, len(distinct))
        return FeatureCache(folder)
    plan = {"version": CACHE_VERSION, "key": key, "images": len(distinct), "chunk_images": chunk_images,
            "batch_size": batch_size}
    staging = _claim_staging(root, key, plan)
    if not (staging / INDEX_FILE).is_file():  # else a killed build had joined its chunks already
        encoder = encoder or encode_chunks_here(model, loader, batch_size, torch.device(device))
        chunks = _encode_chunks(encoder, distinct, staging, chunk_images)
        kinds, errors = _join_chunks(chunks, staging, len(distinct))
        write_json(staging / INDEX_FILE, {"version": CACHE_VERSION, "kinds": kinds,
                                          "references": distinct, "errors": errors})
    shutil.rmtree(staging / CHUNKS, ignore_errors=True)
    staging.rename(folder)  # plan.json stays: how the cache was built
    cache = FeatureCache(folder)
    log.info("Cached the features of %d images (%d unreadable) in %s: %.0f bytes per image", len(distinct),
             len(cache.errors), folder, cache.bytes_per_image)
    return cache
