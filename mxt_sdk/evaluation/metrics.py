"""Metrics for attribute extraction: P / R / F1 at thresholds, recall at a target precision, and the
zero-shot / value-absent / image slices.

Matching rule (:func:`values_match`): a predicted value is correct when its *match key* equals the
gold value's and both carry the same *numbers and signs*. The match key (:func:`match_key`) is the
value NFKC-normalised, case-folded and whitespace-collapsed, with wrapping punctuation stripped from
its ends: quotes, brackets and ``, ; : ! ?``, and a ``.`` unless it starts a number. Signs and
symbols are kept (``-20``, ``+5``, ``10%``, ``C++``, ``C#``, ``<5``). The numbers and signs
(:func:`number_signature`) are every number with its sign, leading dot and percent sign, and every
``+`` / ``#`` run after a word, in order; the report takes them from the values before the
normalizers ran, so no normalizer can equate ``-20`` with ``20``. "Not stated" gold values
(``None``) count as negatives.

Counting, per (product type, attribute) pair: every gold row is one example. A prediction with a
value is a *positive* when it is accepted (``confidence >= threshold``); it is a true positive when it
matches a stated gold value, else a false positive. Recall's denominator is the number of stated gold
values. ``recall@P`` sweeps the threshold over the confidences and returns the highest recall whose
precision is at least ``P`` (0.0 and no threshold when no threshold reaches it). Macro averages run
over the pairs with at least one stated gold value; the others are counted apart
(:func:`unstated_pairs`).
"""
from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache

__all__ = ["match_key", "number_signature", "values_match", "written_in", "Scored", "threshold_sweep", "recall_at_precision", "prf", "PairMetrics", "pair_metrics",
           "micro_macro", "unstated_pairs"]

_WRAPPING = r"\s,;:!?\"'`“”‘’«»()\[\]{}"
_EDGE_PUNCTUATION = re.compile(rf"^(?:[{_WRAPPING}]|\.(?!\d))+|[{_WRAPPING}.]+$")
_NUMBERS_AND_SIGNS = re.compile(r"(?:(?<!\w)[-+±])?(?:\d+(?:[.,]\d+)*|(?<!\d)\.\d+)%?|(?<=\w)[+#]+")


def _folded(value: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", value).casefold().replace("\u2212", "-").split())


def match_key(value: str | None) -> str | None:
    """The form two values are compared in (see the module docstring)."""
    if value is None:
        return None
    return _EDGE_PUNCTUATION.sub("", _folded(value)) or None


def number_signature(value: str | None) -> tuple[str, ...]:
    """The numbers (with sign, leading dot and ``%``) and ``+`` / ``#`` runs of ``value``, in order:
    ``"-20 %"`` -> ``("-20",)``, ``"10%"`` -> ``("10%",)``, ``"C++"`` -> ``("++",)``."""
    if value is None:
        return ()
    return tuple(m.replace(".", "0.", 1) if m.startswith(".") else m
                 for m in _NUMBERS_AND_SIGNS.findall(_folded(value)))


def values_match(predicted: str | None, gold: str | None, *, raw_predicted: str | None = None,
                 raw_gold: str | None = None) -> bool:
    """Whether ``predicted`` matches a stated ``gold`` (see the module docstring). ``raw_*``: the values
    before normalizers ran, whose numbers and signs must agree too."""
    if predicted is None or gold is None or match_key(predicted) != match_key(gold):
        return False
    return number_signature(predicted) == number_signature(gold) and \
        number_signature(raw_predicted or predicted) == number_signature(raw_gold or gold)


def written_in(value: str, text: str) -> bool:
    """Whether ``value`` occurs in ``text`` as whole words (case-insensitive, any whitespace)."""
    return _written_pattern(value).search(text) is not None


@lru_cache(maxsize=65_536)
def _written_pattern(value: str) -> re.Pattern:
    """The compiled whole-word pattern of ``value`` (training counts it for every label of a catalog)."""
    return re.compile(r"(?<!\w)" + r"\s+".join(map(re.escape, value.split())) + r"(?!\w)", re.IGNORECASE)


@dataclass(frozen=True)
class Scored:
    """One evaluated row: the model's value and confidence next to the gold value. ``match``: whether
    they match, when already decided (e.g. with the values before normalizers); else computed."""

    predicted: str | None
    gold: str | None
    confidence: float
    match: bool | None = None
    #: this row's own threshold (e.g. its decision path's, :mod:`mxt_sdk.evaluation.thresholds`), which
    #: :func:`prf` uses instead of the one it is given; None: that one
    threshold: float | None = None

    @property
    def correct(self) -> bool:
        if self.match is not None:
            return self.match and self.predicted is not None and self.gold is not None
        return values_match(self.predicted, self.gold)


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
    """Precision, recall and F1 when accepting predictions with confidence >= ``threshold`` (or the row's
    own :attr:`Scored.threshold`)."""
    tp = fp = stated = 0
    for row in rows:
        stated += row.gold is not None
        if row.predicted is not None and row.confidence >= (threshold if row.threshold is None else row.threshold):
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
    """Micro (pooled rows, each at its pair's threshold) and macro (mean over the pairs with a stated
    gold value; ``macro["pairs"]`` says how many) averages."""
    tp = fp = stated = 0
    for pair in pairs:
        counts = prf(rows_by_pair[(pair.product_type, pair.attribute)], pair.threshold)
        tp, fp, stated = tp + counts["true_positives"], fp + counts["false_positives"], stated + counts["stated"]
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / stated if stated else 0.0
    micro = {"precision": precision, "recall": recall,
             "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0}
    stated_pairs = [p for p in pairs if p.stated]
    n = len(stated_pairs) or 1
    macro = {key: sum(getattr(p, key) for p in stated_pairs) / n for key in ("precision", "recall", "f1", "recall_at_p")}
    macro["pairs"] = len(stated_pairs)
    return {"micro": micro, "macro": macro}


def unstated_pairs(pairs: Sequence[PairMetrics], rows_by_pair: dict[tuple[str, str], Sequence[Scored]]
                   ) -> dict[str, object]:
    """The pairs left out of the macro averages (no stated gold value): how many, and the predictions
    with a value made there (``predictions``) and accepted there (``accepted``), all false positives."""
    left_out = [p for p in pairs if not p.stated]
    predictions = accepted = 0
    for pair in left_out:
        rows = rows_by_pair[(pair.product_type, pair.attribute)]
        predictions += sum(r.predicted is not None for r in rows)
        accepted += prf(rows, pair.threshold)["false_positives"]
    return {"count": len(left_out), "predictions": predictions, "accepted": accepted,
            "pairs": [f"{p.product_type} / {p.attribute}" for p in left_out]}


def group_by_pair(items: Iterable[tuple[str, str, Scored]]) -> dict[tuple[str, str], list[Scored]]:
    grouped: dict[tuple[str, str], list[Scored]] = defaultdict(list)
    for product_type, attribute, row in items:
        grouped[(product_type, attribute)].append(row)
    return dict(grouped)
