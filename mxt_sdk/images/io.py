"""Safe image loading and the preprocessing that turns a PIL image into model pixels.

* paths are resolved under an image root (the current directory when none is given) and may not
  escape it, neither by ``..``, nor as absolute paths, nor through a symbolic link;
* URLs follow :class:`~mxt_sdk.images.fetch.UrlPolicy` (off by default; see :mod:`mxt_sdk.images.fetch`);
* decompression bombs are refused before decoding (``max_pixels``);
* truncated or corrupt files raise :class:`~mxt_sdk.errors.ImageError`;
* every mode (CMYK, P, RGBA, L, I;16 ...) is converted to RGB; transparency is flattened on white.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, field_validator

from mxt_sdk.errors import ImageError
from mxt_sdk.images.fetch import UrlPolicy, fetch_bytes, is_url, remember

__all__ = ["Preprocessing", "image_root", "resolve_image_path", "load_image", "open_image_bytes", "to_pixels",
           "DEFAULT_MAX_PIXELS"]

DEFAULT_MAX_PIXELS = 50_000_000
ImageFile.LOAD_TRUNCATED_IMAGES = False

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
             "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS}


class Preprocessing(BaseModel):
    """How an encoder wants its images: the fields of a timm data config.

    The image is resized so its shorter side is ``size / crop_pct``, centre-cropped to ``size``,
    scaled to [0, 1] and normalised with ``mean``/``std``.
    """

    model_config = ConfigDict(extra="ignore")

    input_size: tuple[int, int, int] = (3, 224, 224)
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    crop_pct: float = 0.875
    crop_mode: str = "center"

    @field_validator("interpolation")
    @classmethod
    def _known_interpolation(cls, value: str) -> str:
        return value if value in _RESAMPLE else "bicubic"


def image_root(root: Path | None) -> Path:
    """The folder relative image paths are resolved under: ``root`` (None: the current directory), resolved."""
    return Path(root if root is not None else Path.cwd()).resolve()


def resolve_image_path(reference: str, root: Path | None) -> Path:
    """Resolve an image path under ``root`` (None: the current directory), symbolic links followed;
    refuse anything that ends outside ``root``."""
    path = Path(reference)
    root = image_root(root)
    resolved = (root / path).resolve()
    if not resolved.is_relative_to(root):
        raise ImageError(f"image path {reference!r} escapes the image root {str(root)!r}")
    return resolved


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        array = np.asarray(image, dtype=np.float64)
        peak = array.max() or 1.0
        image = Image.fromarray((array / peak * 255).astype(np.uint8))
    return image.convert("RGB")


def open_image_bytes(data: io.BytesIO | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode an image fully, refusing bombs and truncated files; returns an RGB image."""
    try:
        with Image.open(data) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(
                    f"image is {width}x{height} = {width * height:,} pixels, over the limit of "
                    f"{max_pixels:,} (possible decompression bomb)"
                )
            image.load()
            return _to_rgb(image)
    except ImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise ImageError(f"not a readable image: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"corrupt or truncated image: {exc}") from None


def load_image(reference: str, root: Path | None = None, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               urls: UrlPolicy | None = None) -> Image.Image:
    """Open the image a product refers to as RGB: a path under ``root`` (None: the current
    directory), or an http(s) URL when ``urls`` allows them (by default it does not)."""
    if is_url(reference):
        policy = urls or UrlPolicy()
        data, cached = fetch_bytes(reference, policy)
        image = open_image_bytes(io.BytesIO(data), max_pixels)
        if not cached:
            remember(reference, data, policy)
        return image
    path = resolve_image_path(reference, root)
    if not path.is_file():
        raise ImageError(f"image file not found: {str(path)!r}")
    return open_image_bytes(path, max_pixels)


def to_pixels(image: Image.Image, preprocessing: Preprocessing) -> torch.Tensor:
    """Resize, centre-crop and normalise an RGB image into a ``[3, H, W]`` float tensor."""
    _, height, width = preprocessing.input_size
    scale = 1.0 / preprocessing.crop_pct if preprocessing.crop_mode == "center" else 1.0
    target_h, target_w = round(height * scale), round(width * scale)
    ratio = max(target_h / image.height, target_w / image.width)
    resized = image.resize((max(width, round(image.width * ratio)), max(height, round(image.height * ratio))),
                           _RESAMPLE[preprocessing.interpolation])
    left, top = (resized.width - width) // 2, (resized.height - height) // 2
    cropped = resized.crop((left, top, left + width, top + height))
    array = np.asarray(cropped, dtype=np.float32) / 255.0
    array = (array - np.asarray(preprocessing.mean, dtype=np.float32)) / np.asarray(preprocessing.std,
                                                                                   dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
