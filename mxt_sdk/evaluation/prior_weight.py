"""Choosing ``extraction.image_prior_weight`` on labelled data (what :meth:`Extractor.calibrate` does first).

The image prior's log-probability is added, times this weight, to the generator's score of each known
value (see :mod:`mxt_sdk.inference.image_prior`). The right weight depends on how much the trained
generator already reads from the image, which only held-out data shows: on ImplicitAVE a generator trained
briefly gained up to 5 points from the prior, and one trained for a full epoch lost 2 (benchmarks/README.md).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: the weights tried by default: off, half, the config default, and two stronger ones
PRIOR_WEIGHTS: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0)


def accuracy(rows: Sequence[dict[str, Any]]) -> float:
    """Share of the scored rows (:func:`mxt_sdk.evaluation.report.score`) with a stated gold value that are
    correct, whatever their confidence; 0.0 when none has one."""
    stated = [row for row in rows if row["gold"] is not None]
    return sum(bool(row["correct"]) for row in stated) / len(stated) if stated else 0.0


def best_weight(accuracy_by_weight: Mapping[float, float], current: float) -> float:
    """The weight with the highest accuracy. Among equally accurate weights: ``current`` if it is one of them
    (a tie is no reason to change), else the smallest (the least reliance on the prior)."""
    if not accuracy_by_weight:
        raise ValueError("no weight was tried")
    top = max(accuracy_by_weight.values())
    tied = sorted(weight for weight, value in accuracy_by_weight.items() if value == top)
    return current if current in tied else tied[0]
