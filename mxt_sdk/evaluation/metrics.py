"""Metrics for attribute extraction: P / R / F1 at thresholds, recall at a target precision, and the
zero-shot / value-absent / image slices.

Matching rule: a predicted value is correct when its *match key* equals the gold value's: both are
NFKC-normalised, case-folded, stripped of surrounding punctuation and whitespace-collapsed
(:func:`match_key`). "Not stated" gold values (``None``) count as negatives.

Counting, per (product type, attribute) pair: every gold row is one example. A prediction with a
value is a *positive* when it is accepted (``confidence >= threshold``); it is a true positive when it
matches a stated gold value, else a false positive. Recall's denominator is the number of stated gold
values. ``recall@P`` sweeps the threshold over the confidences and returns the highest recall whose
precision is at least ``P`` (0.0 and no threshold when no threshold reaches it).
"""
from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

__all__ = ["match_key", "written_in", "Scored", "threshold_sweep", "recall_at_precision", "prf", "PairMetrics", "pair_metrics",
           "micro_macro"]

_EDGE_PUNCTUATION = re.compile(r"^[\W_]+|[\W_]+$")


def match_key(value: str | None) -> str | None:
    """The form two values are compared in (see the module docstring)."""
    if value is None:
        return None
    text = unicodedata.normalize("NFKC", value).casefold()
    text = " ".join(text.split())
    return _EDGE_PUNCTUATION.sub("", text) or None


def written_in(value: str, text: str) -> bool:
    """Whether ``value`` occurs in ``text`` as whole words (case-insensitive, any whitespace)."""
    pattern = r"(?<!\w)" + r"\s+".join(map(re.escape, value.split())) + r"(?!\w)"
    return re.search(pattern, text, flags=re.IGNORECASE) is not None


@dataclass(frozen=True)
class Scored:
    """One evaluated row: the model's value and confidence next to the gold value."""

    predicted: str | None
    gold: str | None
    confidence: float

    @property
    def correct(self) -> bool:
        return self.predicted is not None and match_key(self.predicted) == match_key(self.gold) \
            and self.gold is not None


def threshold_sweep(rows: Sequence[Scored]) -> list[tuple[float, float, float]]:
    """``(threshold, precision, recall)`` for every distinct confidence, highest first.

    Accepting every prediction with confidence >= threshold; equal confidences are accepted together.
    """
    stated = sum(r.gold is not None for r in rows)
    candidates = sorted((r for r in rows if r.predicted is not None), key=lambda r: -r.confidence)
    points, true_positives = [], 0
    for index, row in enumerate(candidates):
        true_positives += row.correct
        if index + 1 < len(candidates) and candidates[index + 1].confidence == row.confidence:
            continue
        points.append((row.confidence, true_positives / (index + 1),
                       true_positives / stated if stated else 0.0))
    return points


def recall_at_precision(rows: Sequence[Scored], precision: float) -> tuple[float, float | None, float]:
    """``(recall, threshold, precision_there)``: the best recall whose precision is >= ``precision``;
    ``(0.0, None, 0.0)`` when no threshold reaches it."""
    best = (0.0, None, 0.0)
    for threshold, p, r in threshold_sweep(rows):
        if p >= precision and r > best[0]:
            best = (r, threshold, p)
    return best


def prf(rows: Iterable[Scored], threshold: float) -> dict[str, float]:
    """Precision, recall and F1 when accepting predictions with confidence >= ``threshold``."""
    tp = fp = stated = 0
    for row in rows:
        stated += row.gold is not None
        if row.predicted is not None and row.confidence >= threshold:
            tp += row.correct
            fp += not row.correct
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / stated if stated else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "true_positives": tp,
            "false_positives": fp, "stated": stated}


@dataclass
class PairMetrics:
    """The numbers of one (product type, attribute) pair."""

    product_type: str
    attribute: str
    support: int
    stated: int
    threshold: float
    precision: float
    recall: float
    f1: float
    recall_at_p: float
    threshold_at_p: float | None
    precision_at_p: float

    def as_dict(self) -> dict:
        """JSON-safe: a threshold that accepts nothing (infinite) becomes None."""
        data = asdict(self)
        if data["threshold"] == float("inf"):
            data["threshold"] = None
        return data


def pair_metrics(product_type: str, attribute: str, rows: Sequence[Scored], threshold: float,
                 target_precision: float) -> PairMetrics:
    at_threshold = prf(rows, threshold)
    recall_p, threshold_p, precision_p = recall_at_precision(rows, target_precision)
    return PairMetrics(product_type, attribute, len(rows), at_threshold["stated"], threshold,
                       at_threshold["precision"], at_threshold["recall"], at_threshold["f1"],
                       recall_p, threshold_p, precision_p)


def micro_macro(pairs: Sequence[PairMetrics], rows_by_pair: dict[tuple[str, str], Sequence[Scored]]
                ) -> dict[str, dict[str, float]]:
    """Micro (pooled rows, each at its pair's threshold) and macro (mean over pairs) averages."""
    tp = fp = stated = 0
    for pair in pairs:
        counts = prf(rows_by_pair[(pair.product_type, pair.attribute)], pair.threshold)
        tp, fp, stated = tp + counts["true_positives"], fp + counts["false_positives"], stated + counts["stated"]
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / stated if stated else 0.0
    micro = {"precision": precision, "recall": recall,
             "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0}
    n = len(pairs) or 1
    macro = {key: sum(getattr(p, key) for p in pairs) / n for key in ("precision", "recall", "f1", "recall_at_p")}
    return {"micro": micro, "macro": macro}


def group_by_pair(items: Iterable[tuple[str, str, Scored]]) -> dict[tuple[str, str], list[Scored]]:
    grouped: dict[tuple[str, str], list[Scored]] = defaultdict(list)
    for product_type, attribute, row in items:
        grouped[(product_type, attribute)].append(row)
    return dict(grouped)
