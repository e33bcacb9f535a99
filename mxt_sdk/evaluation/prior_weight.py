"""Choosing ``extraction.image_prior_weight`` on labelled data (what :meth:`Extractor.calibrate` does first).

The image prior's log-probability is added, times this weight, to the generator's score of each known
value (see :mod:`mxt_sdk.inference.image_prior`). The right weight depends on how much the trained
generator already reads from the image, which only held-out data shows: on ImplicitAVE generators trained
for a third of an epoch gained up to 5 points from the prior at weight 1, and most trained for a full epoch
lost 1-3 (benchmarks/HISTORY.md, "Seventh pass"). A held-out set of a hundred products cannot tell apart weights a
point or two apart, so the configured weight is only replaced by one that is clearly better on the same rows.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

log = logging.getLogger(__name__)

#: the weights tried by default: off, half, the config default, and two stronger ones
PRIOR_WEIGHTS: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0)

#: a weight replaces the configured one when its wins minus losses on the same rows reach this many
#: standard deviations of a fair coin's (a two-sided sign test at about 95%)
SIGN_TEST_Z = 2.0


def correct_flags(rows: Sequence[dict[str, Any]]) -> list[bool]:
    """Per scored row (:func:`mxt_sdk.evaluation.report.score`) with a stated gold value: whether it is
    correct, whatever its confidence. Rows without a stated gold value are left out."""
    return [bool(row["correct"]) for row in rows if row["gold"] is not None]


def accuracy(flags: Sequence[bool]) -> float:
    """Share of true flags; 0.0 when there are none."""
    return sum(flags) / len(flags) if flags else 0.0


def clearly_better(candidate: Sequence[bool], baseline: Sequence[bool]) -> bool:
    """Whether ``candidate`` answers clearly more of the same rows right than ``baseline``: the rows only it
    gets right (wins) outnumber the rows only the baseline gets right (losses) by at least
    ``SIGN_TEST_Z * sqrt(wins + losses)``."""
    if len(candidate) != len(baseline):
        raise ValueError(f"the two weights were scored on {len(candidate)} and {len(baseline)} rows")
    wins = sum(c and not b for c, b in zip(candidate, baseline))
    losses = sum(b and not c for c, b in zip(candidate, baseline))
    return wins > losses and wins - losses >= SIGN_TEST_Z * math.sqrt(wins + losses)


def best_weight(flags_by_weight: Mapping[float, Sequence[bool]], current: float) -> float:
    """The most accurate weight (among equals the smallest, the least reliance on the prior) if it is
    :func:`clearly_better` than ``current`` on the same rows, else ``current``. ``current`` must have been
    scored."""
    if current not in flags_by_weight:
        raise ValueError(f"the configured weight {current:g} was not scored")
    top = max(accuracy(flags) for flags in flags_by_weight.values())
    best = min(weight for weight, flags in flags_by_weight.items() if accuracy(flags) == top)
    return best if clearly_better(flags_by_weight[best], flags_by_weight[current]) else current


def weigh(extractor: Any, setting: str, products: Sequence[Any], root: Any, batch_size: int | None,
          weights: Sequence[float]) -> tuple[dict[float, float], list[dict[str, Any]]]:
    """Score ``products`` (labelled, held out) with ``extractor`` at each weight of ``weights`` and at the
    configured one of the extraction setting ``setting`` (``image_prior_weight`` or ``text_prior_weight``),
    one pass each; leave :func:`best_weight` set and return the accuracy of each weight and the chosen
    weight's scored rows. An error leaves the configured weight."""
    extraction = extractor.config.extraction
    configured = getattr(extraction, setting)
    tried = list(dict.fromkeys([*(float(w) for w in weights), configured]))
    if min(tried) < 0:  # refused before any pass over the data
        raise ValueError(f"prior weights must be at least 0, got {min(tried)}")
    runs: dict[float, list[dict[str, Any]]] = {}
    try:
        for weight in tried:
            setattr(extraction, setting, weight)
            runs[weight] = extractor._score_products(products, root, batch_size)
    finally:
        setattr(extraction, setting, configured)
    flags = {weight: correct_flags(rows) for weight, rows in runs.items()}
    accuracy_by_weight = {weight: accuracy(f) for weight, f in flags.items()}
    setattr(extraction, setting, best_weight(flags, configured))
    log.info("%s %g (configured %g) after accuracy by weight on %d labelled products: %s",
             setting, getattr(extraction, setting), configured, len(products),
             ", ".join(f"{w:g}: {a:.4f}" for w, a in sorted(accuracy_by_weight.items())))
    return accuracy_by_weight, runs[getattr(extraction, setting)]
