"""Fail fast when a run's images mostly do not load (a wrong image root, a refused folder link).

A training run with image encoders first decodes the first :data:`PROBE_IMAGES` (64) distinct image
references of its training products, in the data's order. When more than :data:`MAX_FAILED_SHARE`
(half) of them fail, the run stops before any training with one :class:`~mxt_sdk.errors.ImageError`
naming the image root, how many failed of how many tried, and the first failing record with its
reason: a model trained on (almost) no image would be an image model only in name. Fewer failures
are bad images, not a bad setup: the run goes on and skips them, each batch logging its unreadable
images. Decoding 64 images takes about a second.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from mxt_sdk.errors import ImageError
from mxt_sdk.images.batching import ImageLoader
from mxt_sdk.images.fetch import is_url
from mxt_sdk.images.io import image_root

__all__ = ["PROBE_IMAGES", "MAX_FAILED_SHARE", "check_images_load"]

log = logging.getLogger(__name__)

PROBE_IMAGES = 64
MAX_FAILED_SHARE = 0.5


def _first_distinct(records: Iterable[tuple[str | None, str]], limit: int) -> dict[str, str]:
    """The first ``limit`` distinct image references of ``records`` (``(reference, record name)``;
    None: no image), each with the name of the first record that has it. Stops reading there."""
    found: dict[str, str] = {}
    for reference, record in records:
        if len(found) >= limit:
            break
        if reference is not None and reference not in found:
            found[reference] = record
    return found


def check_images_load(loader: ImageLoader, records: Iterable[tuple[str | None, str]], *,
                      sample: int = PROBE_IMAGES, max_failed_share: float = MAX_FAILED_SHARE) -> tuple[int, int]:
    """Decode the first ``sample`` distinct images of ``records`` (``(image reference, record name)``
    pairs, read lazily) with ``loader``; raise :class:`ImageError` when more than ``max_failed_share``
    of them fail. Returns ``(failed, tried)``; ``(0, 0)`` when no record has an image."""
    tried = _first_distinct(records, sample)
    if not tried:
        return 0, 0
    _, errors = loader.load(list(tried))
    failed = [(reference, error) for reference, error in zip(tried, errors) if error]
    if len(failed) > max_failed_share * len(tried):
        reference, reason = failed[0]
        raise ImageError(
            f"{len(failed)} of the first {len(tried)} distinct images failed to load (image root "
            f"{_root_text(loader.root, tried)}), more than {max_failed_share:.0%}: stopping rather than "
            f"training without images. First failure: {tried[reference]}, image {reference!r}: {reason}. "
            "Check the image root (mxt train --images, fit(image_root=...), extraction.image_root): relative "
            "image paths are resolved under it and may not leave it, not even through a symbolic link."
        )
    log.info("Image check: %d of the first %d distinct images load", len(tried) - len(failed), len(tried))
    return len(failed), len(tried)


def _root_text(root: Path | None, references: Iterable[str]) -> str:
    """The image root as the error shows it (its resolved path; URLs need none)."""
    if all(is_url(reference) for reference in references):
        return "not used: every image is a URL"
    return repr(str(image_root(root)))
