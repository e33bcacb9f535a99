"""One training run under a time budget, shared by the ablation runner and the per-type runs:
the data files (:class:`AblationData`), the fit itself (:func:`fit_budgeted`) and what a run gave
(:class:`VariantRun`)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mxt_sdk.config import MXTConfig
from mxt_sdk.extractor import Extractor

__all__ = ["UNLIMITED_STEPS", "AblationData", "VariantRun", "fit_budgeted"]

UNLIMITED_STEPS = 1_000_000  # with a time budget the clock, not the step count, ends training


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
                 seconds: float | None = None, seed: int = 0):
    """Build a fresh model from ``config`` (weights initialised from ``seed``) and fit it.

    With ``seconds`` the clock ends training (``max_train_seconds``; the step limit is lifted, and
    without validation data no intermediate checkpoints are written); without, the config's
    ``epochs`` / ``max_steps`` do. Returns ``(extractor, TrainingResult, wall seconds of fit)``.
    """
    overrides: dict[str, Any] = {"seed": seed}
    if seconds is not None:
        overrides.update(max_train_seconds=seconds, max_steps=UNLIMITED_STEPS)
        if val is None:
            overrides["eval_every"] = UNLIMITED_STEPS
    torch.manual_seed(seed)
    extractor = Extractor.from_config(config)
    started = time.perf_counter()
    result = extractor.fit(train, val, output_dir=output_dir, image_root=image_root, **overrides)
    return extractor, result, time.perf_counter() - started
