"""When to write a training checkpoint between evaluations: every ``checkpoint_every`` steps and/or
when ``checkpoint_every_minutes`` of wall-clock time passed since the last one. A checkpoint only
saves state, so the clock decides nothing about the weights: runs stay reproducible."""
from __future__ import annotations

import time

import torch


class CheckpointSchedule:
    """``due(step)`` says whether to checkpoint now; all processes decide together."""

    def __init__(self, every_steps: int | None, every_minutes: float | None, accelerator):
        self.every_steps, self.every_minutes, self.accelerator = every_steps, every_minutes, accelerator
        self.last = time.monotonic()

    def saved(self) -> None:
        """Note that a checkpoint was just written (restarts the clock)."""
        self.last = time.monotonic()

    def due(self, step: int) -> bool:
        if self.every_steps and step % self.every_steps == 0:
            return True
        if self.every_minutes is None:
            return False
        late = float(time.monotonic() - self.last >= self.every_minutes * 60)
        late = torch.tensor(late, device=self.accelerator.device)
        return bool(self.accelerator.reduce(late, reduction="sum") > 0)
