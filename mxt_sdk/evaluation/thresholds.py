"""Per-(product type, attribute) confidence thresholds: a prediction is ``accepted`` when its
confidence reaches its pair's threshold. :func:`calibrate` picks each threshold as the one giving the
highest recall at a target precision on labelled data; pairs that cannot reach the target accept
nothing (and say so) rather than write unreliable values.

A threshold set from a handful of rows is noise, so a pair needs ``min_support`` labelled rows
(default 20) to get its own (*source* ``pair``). A pair with fewer, and a pair missing from the
calibration data, gets the threshold calibrated on the pooled rows of its attribute across product
types (``attribute``), or, when the attribute has fewer than ``min_support`` rows too, on all rows
(``global``). Never calibrated, every pair uses ``default`` (``default``).

**Per decision path.** Answers of one pair come from different paths (``Prediction.decided_by``: free
generation, a choice among known values, the image prior moving that choice, decoding bound to the text),
and one confidence is not equally reliable on each: on Myntra, one threshold per pair left the answers the
image prior moved at 0.46 precision while the pair's others were at 0.94. So calibration also looks at each
(pair, path): a (pair, path) with ``min_support`` rows gets its own threshold (``pair_path``); any other
answer must also pass its path's threshold pooled over every pair (``path``), when that one is higher than
the pair's. A path whose pooled rows cannot reach the target accepts nothing outside the pairs where it
can. A lookup without a path, and files written before paths, use the pair's threshold alone.

:class:`CallThresholds` lays thresholds given to one extraction call (``threshold=``) over these
(source ``call``)."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from mxt_sdk.data.metadata import pair_key
from mxt_sdk.errors import ConfigError
from mxt_sdk.types import Prediction
from mxt_sdk.evaluation.metrics import Scored, recall_at_precision

DEFAULT_THRESHOLD = 0.5
DEFAULT_MIN_SUPPORT = 20
ThresholdSource = Literal["pair", "attribute", "global", "default", "call", "pair_path", "path"]
#: a per-call threshold: one number for every pair, or a mapping from attribute name, ``(product_type,
#: attribute)`` or ``"product_type\tattribute"`` to a number
ThresholdOverride = Union[float, Mapping[Union[str, tuple[str, str]], float]]


class Pooled(BaseModel):
    """A threshold calibrated on pooled rows (``None``: the target precision was unreachable)."""

    model_config = ConfigDict(extra="forbid")

    threshold: float | None
    support: int


class Thresholds(BaseModel):
    """``pairs[pair_key] = threshold`` (``None``: the target precision was unreachable, accept
    nothing) and ``sources[pair_key]``, which kind of threshold it is (absent, as in files written
    before sources existed: ``pair``). Pairs absent from ``pairs`` use their attribute's pooled
    threshold (``attributes``), else the one pooled over all rows (``all_rows``), else ``default``."""

    model_config = ConfigDict(extra="forbid")

    default: float = Field(default=DEFAULT_THRESHOLD, ge=0.0, le=1.0)
    target_precision: float | None = None
    min_support: int | None = None
    pairs: dict[str, float | None] = Field(default_factory=dict)
    support: dict[str, int] = Field(default_factory=dict)
    sources: dict[str, ThresholdSource] = Field(default_factory=dict)
    attributes: dict[str, Pooled] = Field(default_factory=dict)
    all_rows: Pooled | None = None
    #: ``path_key(product_type, attribute, path)`` -> the threshold of a (pair, path) with enough rows
    pair_paths: dict[str, float | None] = Field(default_factory=dict)
    #: decision path -> its threshold pooled over every pair (a floor for the pairs without their own)
    paths: dict[str, Pooled] = Field(default_factory=dict)

    def lookup(self, product_type: str, attribute: str, path: str | None = None) -> tuple[float, ThresholdSource]:
        """The threshold (``inf``: accept nothing) of an answer of the pair decided by ``path`` (None: the
        pair's alone), and which kind it is (see the module docstring)."""
        threshold, source = self._pair_lookup(product_type, attribute)
        if path is None:
            return threshold, source
        own = path_key(product_type, attribute, path)
        if own in self.pair_paths:
            value = self.pair_paths[own]
            return (math.inf if value is None else value), "pair_path"
        pooled = self.paths.get(path)
        if pooled is not None:
            floor = math.inf if pooled.threshold is None else pooled.threshold
            if floor > threshold:
                return floor, "path"
        return threshold, source

    def _pair_lookup(self, product_type: str, attribute: str) -> tuple[float, ThresholdSource]:
        key = pair_key(product_type, attribute)
        if key in self.pairs:
            value, source = self.pairs[key], self.sources.get(key, "pair")
        elif attribute in self.attributes:
            value, source = self.attributes[attribute].threshold, "attribute"
        elif self.all_rows is not None:
            value, source = self.all_rows.threshold, "global"
        else:
            return self.default, "default"
        return (math.inf if value is None else value), source

    def threshold_for(self, product_type: str, attribute: str, path: str | None = None) -> float:
        return self.lookup(product_type, attribute, path)[0]

    def accepts(self, product_type: str, attribute: str, confidence: float, path: str | None = None) -> bool:
        return confidence >= self.threshold_for(product_type, attribute, path)


def path_key(product_type: str, attribute: str, path: str) -> str:
    """The key of a (pair, decision path) in :attr:`Thresholds.pair_paths`."""
    return f"{pair_key(product_type, attribute)}\t{path}"


def calibrate(rows_by_pair: Mapping[tuple[str, str], Sequence[Scored]], precision: float,
              default: float = DEFAULT_THRESHOLD, min_support: int = DEFAULT_MIN_SUPPORT,
              rows_by_path: Mapping[tuple[str, str, str], Sequence[Scored]] | None = None) -> Thresholds:
    """Thresholds reaching ``precision`` on labelled rows (see :mod:`mxt_sdk.evaluation.metrics`): per
    pair with at least ``min_support`` rows, else pooled; with ``rows_by_path`` (the same rows grouped by
    ``(product type, attribute, decision path)``), per (pair, path) and per path too (see the module
    docstring)."""
    by_attribute: dict[str, list[Scored]] = {}
    for (_, attribute), rows in rows_by_pair.items():
        by_attribute.setdefault(attribute, []).extend(rows)
    everything = [row for rows in by_attribute.values() for row in rows]
    all_rows = Pooled(threshold=recall_at_precision(everything, precision)[1], support=len(everything))
    attributes = {attribute: Pooled(threshold=recall_at_precision(rows, precision)[1], support=len(rows))
                  for attribute, rows in sorted(by_attribute.items()) if len(rows) >= min_support}
    pairs: dict[str, float | None] = {}
    support: dict[str, int] = {}
    sources: dict[str, ThresholdSource] = {}
    for (product_type, attribute), rows in rows_by_pair.items():
        key = pair_key(product_type, attribute)
        support[key] = len(rows)
        if len(rows) >= min_support:
            pairs[key], sources[key] = recall_at_precision(rows, precision)[1], "pair"
        elif attribute in attributes:
            pairs[key], sources[key] = attributes[attribute].threshold, "attribute"
        else:
            pairs[key], sources[key] = all_rows.threshold, "global"
    pair_paths: dict[str, float | None] = {}
    paths: dict[str, Pooled] = {}
    if rows_by_path:
        by_path: dict[str, list[Scored]] = {}
        for (product_type, attribute, path), rows in sorted(rows_by_path.items()):
            by_path.setdefault(path, []).extend(rows)
            if len(rows) >= min_support:
                pair_paths[path_key(product_type, attribute, path)] = recall_at_precision(rows, precision)[1]
        # every path pooled, however few its rows (as all_rows): a rare path is judged on what there is, and
        # one that never reaches the target there accepts nothing outside the pairs that calibrate it alone
        paths = {path: Pooled(threshold=recall_at_precision(rows, precision)[1], support=len(rows))
                 for path, rows in by_path.items()}
    return Thresholds(default=default, target_precision=precision, min_support=min_support, pairs=pairs,
                      support=support, sources=sources, attributes=attributes, all_rows=all_rows,
                      pair_paths=pair_paths, paths=paths)


def calibration_summary(thresholds: Thresholds) -> dict[str, Any]:
    """What ``mxt calibrate`` prints: how many pairs have each kind of threshold, and the pairs (and
    pooled groups) that cannot reach the target precision and so accept nothing."""
    kinds = {kind: sorted(k.replace("\t", " / ") for k in thresholds.pairs
                          if thresholds.sources.get(k, "pair") == kind) for kind in ("pair", "attribute", "global")}
    unreachable = sorted(k.replace("\t", " / ") for k, v in thresholds.pairs.items() if v is None)
    return {
        "target_precision": thresholds.target_precision, "min_support": thresholds.min_support,
        "pairs": len(thresholds.pairs), "reached": len(thresholds.pairs) - len(unreachable),
        "own_threshold": len(kinds["pair"]), "pooled_by_attribute": kinds["attribute"],
        "pooled_over_all_rows": kinds["global"],
        "unreachable_accept_nothing": unreachable,
        "unreachable_attributes": sorted(a for a, p in thresholds.attributes.items() if p.threshold is None),
        "all_rows": thresholds.all_rows.model_dump() if thresholds.all_rows is not None else None,
        "pair_paths_own_threshold": len(thresholds.pair_paths),
        "paths": {path: pooled.model_dump() for path, pooled in sorted(thresholds.paths.items())},
    }


@dataclass(frozen=True)
class CallThresholds:
    """Thresholds of one extraction call laid over calibrated ones: a pair's own override, else its
    attribute's, else the call-wide number, else the calibrated threshold (:meth:`Thresholds.lookup`)."""

    base: Thresholds
    everywhere: float | None = None
    by_pair: dict[str, float] = field(default_factory=dict)
    by_attribute: dict[str, float] = field(default_factory=dict)

    @classmethod
    def over(cls, base: Thresholds, threshold: ThresholdOverride) -> "CallThresholds":
        """Check ``threshold`` (each number from 0 to 1; :class:`~mxt_sdk.errors.ConfigError` naming the
        key otherwise) and lay it over ``base``."""
        if not isinstance(threshold, Mapping):
            return cls(base, everywhere=_threshold_value(threshold, "threshold"))
        by_pair, by_attribute = {}, {}
        for key, value in threshold.items():
            checked = _threshold_value(value, f"threshold[{key!r}]")
            if isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, str) for k in key):
                by_pair[pair_key(*key)] = checked
            elif isinstance(key, str) and "\t" in key:
                by_pair[key] = checked
            elif isinstance(key, str) and key:
                by_attribute[key] = checked
            else:
                raise ConfigError(f"threshold key {key!r}: expected an attribute name, a (product_type, attribute) "
                                  "pair or 'product_type<TAB>attribute'.")
        return cls(base, by_pair=by_pair, by_attribute=by_attribute)

    def lookup(self, product_type: str, attribute: str, path: str | None = None) -> tuple[float, ThresholdSource]:
        key = pair_key(product_type, attribute)
        if key in self.by_pair:
            return self.by_pair[key], "call"
        if attribute in self.by_attribute:
            return self.by_attribute[attribute], "call"
        if self.everywhere is not None:
            return self.everywhere, "call"
        return self.base.lookup(product_type, attribute, path)

    def apply(self, prediction: Prediction) -> Prediction:
        """``prediction`` decided again under these thresholds (a row with an error, or without a product
        type, is returned as it is)."""
        if prediction.error is not None or prediction.product_type is None:
            return prediction
        threshold, source = self.lookup(prediction.product_type, prediction.attribute, prediction.decided_by)
        return prediction.model_copy(update={"accepted": accepts_answer(prediction.value, prediction.confidence,
                                                                        threshold),
                                             "threshold_source": source})


def accepts_answer(value: str | None, confidence: float, threshold: float) -> bool:
    """The acceptance rule of every prediction: a value (a "not stated" answer has nothing to write) whose
    confidence reaches the threshold."""
    return value is not None and confidence >= threshold


def _threshold_value(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{name} must be a number from 0 to 1, got {value!r}.")
    return float(value)
