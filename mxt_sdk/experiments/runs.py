"""One training run with a step budget, shared by the ablation runner, the per-type runs and the demo:
the data files (:class:`AblationData`), the fit itself (:func:`fit_budgeted`) and what a run gave
(:class:`VariantRun`). Budgets are steps, so that variants see the same examples and a rerun with the
same seed gives the same numbers; a seconds cap may stop a run early but never shapes it."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mxt_sdk.config import MXTConfig
from mxt_sdk.extractor import Extractor

__all__ = ["AblationData", "VariantRun", "fit_budgeted", "stop_note"]

UNTIL_THE_END = 1_000_000_000  # eval_every without validation data: checkpoint at the last step only


@dataclass(frozen=True)
class AblationData:
    """The files every variant is trained and tested on; ``images`` is the image root (default: each
    data file's folder)."""

    train: Path
    test: Path
    val: Path | None = None
    images: Path | None = None


@dataclass
class VariantRun:
    """What training and evaluating one variant gave."""

    report: dict[str, Any]
    report_path: Path
    steps: int
    train_seconds: float
    eval_seconds: float
    notes: list[str] = field(default_factory=list)
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)


def fit_budgeted(config: MXTConfig, train, output_dir: Path, *, val=None, image_root: Path | None = None,
                 steps: int | None = None, max_seconds: float | None = None, seed: int = 0):
    """Build a fresh model from ``config`` with ``training.seed = seed`` (so its initial weights, data
    order and dropout follow ``seed``) and fit it for ``steps`` optimizer steps (``None``: the
    config's ``epochs`` / ``max_steps``). The learning-rate schedule follows the steps alone;
    ``max_seconds`` is only a safety stop (``TrainingResult.stopped_by_time`` says when it ended the
    run early). Without validation data no intermediate checkpoints are written. Returns
    ``(extractor, TrainingResult, wall seconds of fit)``.
    """
    overrides: dict[str, Any] = {"seed": seed}
    if steps is not None:
        overrides["max_steps"] = steps
    if max_seconds is not None:
        overrides["max_train_seconds"] = max_seconds
    if val is None:
        overrides["eval_every"] = UNTIL_THE_END
    training = config.training.model_copy(update={"seed": seed})
    extractor = Extractor.from_config(config.model_copy(update={"training": training}))
    started = time.perf_counter()
    result = extractor.fit(train, val, output_dir=output_dir, image_root=image_root, **overrides)
    return extractor, result, time.perf_counter() - started


def stop_note(result) -> list[str]:
    """A note for a run that the seconds cap ended before its planned steps (empty otherwise)."""
    if not result.stopped_by_time:
        return []
    return [f"stopped by the seconds cap after {result.steps} steps, before the planned end: its numbers are "
            "not comparable with runs that did all their steps"]
