"""Per-(product type, attribute) confidence thresholds: a prediction is ``accepted`` when its
confidence reaches its pair's threshold. :func:`calibrate` picks each threshold as the one giving the
highest recall at a target precision on labelled data; pairs that cannot reach the target accept
nothing (and say so) rather than write unreliable values."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

from mxt_sdk.data.metadata import pair_key
from mxt_sdk.evaluation.metrics import Scored, recall_at_precision

DEFAULT_THRESHOLD = 0.5


class Thresholds(BaseModel):
    """``pairs[pair_key] = threshold`` (``None``: the target precision was unreachable, accept
    nothing); pairs absent from ``pairs`` use ``default``."""

    model_config = ConfigDict(extra="forbid")

    default: float = Field(default=DEFAULT_THRESHOLD, ge=0.0, le=1.0)
    target_precision: float | None = None
    pairs: dict[str, float | None] = Field(default_factory=dict)
    support: dict[str, int] = Field(default_factory=dict)

    def threshold_for(self, product_type: str, attribute: str) -> float:
        key = pair_key(product_type, attribute)
        if key not in self.pairs:
            return self.default
        value = self.pairs[key]
        return math.inf if value is None else value

    def accepts(self, product_type: str, attribute: str, confidence: float) -> bool:
        return confidence >= self.threshold_for(product_type, attribute)


def calibrate(rows_by_pair: Mapping[tuple[str, str], Sequence[Scored]], precision: float,
              default: float = DEFAULT_THRESHOLD) -> Thresholds:
    """Thresholds reaching ``precision`` per pair on labelled rows (see :mod:`mxt_sdk.evaluation.metrics`)."""
    pairs: dict[str, float | None] = {}
    support: dict[str, int] = {}
    for (product_type, attribute), rows in rows_by_pair.items():
        _, threshold, _ = recall_at_precision(rows, precision)
        pairs[pair_key(product_type, attribute)] = threshold
        support[pair_key(product_type, attribute)] = len(rows)
    return Thresholds(default=default, target_precision=precision, pairs=pairs, support=support)
