"""Small PNG line plots drawn with Pillow (no plotting library needed): precision-recall curves."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

WIDTH, HEIGHT, MARGIN = 480, 360, 48


def precision_recall_curve(points: Sequence[tuple[float, float]], title: str, path: Path,
                           target_precision: float | None = None) -> None:
    """Draw recall (x) against precision (y), both in [0, 1], and save a PNG at ``path``."""
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    pen = ImageDraw.Draw(image)
    left, top, right, bottom = MARGIN, MARGIN // 2, WIDTH - MARGIN // 2, HEIGHT - MARGIN

    def xy(recall: float, precision: float) -> tuple[float, float]:
        return left + recall * (right - left), bottom - precision * (bottom - top)

    for tick in range(0, 11, 2):
        value = tick / 10
        pen.line([xy(value, 0), xy(value, 1)], fill=(232, 232, 232))
        pen.line([xy(0, value), xy(1, value)], fill=(232, 232, 232))
        pen.text((xy(value, 0)[0] - 8, bottom + 6), f"{value:.1f}", fill="black")
        pen.text((left - 30, xy(0, value)[1] - 6), f"{value:.1f}", fill="black")
    pen.rectangle([left, top, right, bottom], outline="black")
    if target_precision is not None:
        pen.line([xy(0, target_precision), xy(1, target_precision)], fill=(200, 60, 60), width=1)
    if points:
        pen.line([xy(r, p) for r, p in points], fill=(30, 80, 200), width=2)
    pen.text((left, 4), title, fill="black")
    pen.text(((left + right) // 2 - 16, HEIGHT - 18), "recall", fill="black")
    pen.text((4, top - 2), "precision", fill="black")
    image.save(path)
