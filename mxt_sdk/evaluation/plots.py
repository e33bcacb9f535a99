"""Small PNG line plots drawn with Pillow (no plotting library needed): precision-recall curves,
loss curves."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

WIDTH, HEIGHT, MARGIN = 480, 360, 48
TICKS = 5


def _span(values: Sequence[float]) -> tuple[float, float]:
    low, high = min(values, default=0.0), max(values, default=1.0)
    return (low, high) if high > low else (low - 0.5, high + 0.5)


def line_plot(points: Sequence[tuple[float, float]], title: str, path: Path, *, x_label: str, y_label: str,
              x_range: tuple[float, float] | None = None, y_range: tuple[float, float] | None = None,
              guide_y: float | None = None) -> None:
    """Draw ``points`` (x, y) as a line, with a grid, tick values, labels and an optional horizontal
    guide at ``guide_y``, and save a PNG at ``path``. Ranges default to the data's."""
    (x0, x1), (y0, y1) = x_range or _span([x for x, _ in points]), y_range or _span([y for _, y in points])
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    pen = ImageDraw.Draw(image)
    left, top, right, bottom = MARGIN, MARGIN // 2, WIDTH - MARGIN // 2, HEIGHT - MARGIN

    def xy(x: float, y: float) -> tuple[float, float]:
        return left + (x - x0) / (x1 - x0) * (right - left), bottom - (y - y0) / (y1 - y0) * (bottom - top)

    for tick in range(TICKS + 1):
        x, y = x0 + tick / TICKS * (x1 - x0), y0 + tick / TICKS * (y1 - y0)
        pen.line([xy(x, y0), xy(x, y1)], fill=(232, 232, 232))
        pen.line([xy(x0, y), xy(x1, y)], fill=(232, 232, 232))
        pen.text((xy(x, y0)[0] - 8, bottom + 6), f"{x:.3g}", fill="black")
        pen.text((left - 30, xy(x0, y)[1] - 6), f"{y:.3g}", fill="black")
    pen.rectangle([left, top, right, bottom], outline="black")
    if guide_y is not None:
        pen.line([xy(x0, guide_y), xy(x1, guide_y)], fill=(200, 60, 60), width=1)
    if len(points) > 1:
        pen.line([xy(x, y) for x, y in points], fill=(30, 80, 200), width=2)
    pen.text((left, 4), title, fill="black")
    pen.text(((left + right) // 2 - 16, HEIGHT - 18), x_label, fill="black")
    pen.text((4, top - 2), y_label, fill="black")
    image.save(path)


def precision_recall_curve(points: Sequence[tuple[float, float]], title: str, path: Path,
                           target_precision: float | None = None) -> None:
    """Draw recall (x) against precision (y), both in [0, 1], and save a PNG at ``path``."""
    line_plot(points, title, path, x_label="recall", y_label="precision", x_range=(0.0, 1.0), y_range=(0.0, 1.0),
              guide_y=target_precision)
