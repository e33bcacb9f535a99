"""Small embedded thumbnails of product photos, for the HTML report.

A thumbnail is a JPEG of at most ``size`` pixels on its longer side, as a ``data:`` URI, so the report
needs no other file and no network to show it. Only local files are read (resolved under the image
root with the same confinement and pixel limit as extraction); a URL image is never downloaded here.
"""
from __future__ import annotations

import base64
import io
from pathlib import Path

from mxt_sdk.errors import ImageError
from mxt_sdk.images.io import DEFAULT_MAX_PIXELS, open_image_bytes, resolve_image_path

THUMBNAIL_SIZE = 128


def data_uri(data: bytes, mime: str) -> str:
    """``data:<mime>;base64,...`` for ``data``."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def thumbnail(reference: str, root: Path | None, *, size: int = THUMBNAIL_SIZE,
              max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[str | None, str | None]:
    """``(data URI, None)`` for a readable local image, ``(None, why not)`` otherwise."""
    if "://" in reference:
        return None, f"remote image, not embedded: {reference}"
    try:
        path = resolve_image_path(reference, root)
        if not path.is_file():
            return None, f"image file not found: {reference}"
        image = open_image_bytes(path, max_pixels)
    except ImageError as exc:
        return None, str(exc)
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return data_uri(buffer.getvalue(), "image/jpeg"), None
