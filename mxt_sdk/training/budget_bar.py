"""The training progress bar: it counts the budget the run will actually stop at.

A run stops at its planned steps or when its seconds budget (``max_train_seconds``) is spent,
whichever comes first. With a seconds budget the bar's total is the step at which the budget will run
out at the rate measured so far (capped at the planned steps), so its ETA is the time left, not the
time that the planned steps would take; at the end the total is the step the run stopped at. The rate
is shown in steps/s and examples/s. Without a terminal (or with bars off) a log line reports the same
every 30 seconds instead.
"""
from __future__ import annotations

import logging
import math
import time

from mxt_sdk import progress

log = logging.getLogger("mxt_sdk.training")

LOG_EVERY_SECONDS = 30.0
_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"


class BudgetBar:
    """Progress of one training run from step ``initial`` towards ``planned_steps`` or ``max_seconds``
    of training time (``seconds_before`` of it spent by earlier, resumed runs)."""

    def __init__(self, planned_steps: int, initial: int, *, max_seconds: float | None, seconds_before: float,
                 enabled: bool = True, desc: str = "Training"):
        self.planned, self.initial, self.max_seconds = planned_steps, initial, max_seconds
        self.seconds_before = seconds_before
        self.started = self.last_log = time.perf_counter()
        self.desc = progress.stage_prefix() + desc
        self.logging = enabled and not progress.bars_enabled()
        self.bar = progress.bar(desc=desc, enabled=enabled, total=planned_steps, initial=initial, unit="step",
                                bar_format=_FORMAT)
        self.total = planned_steps

    def expected_stop(self, step: int, train_seconds: float) -> int:
        """The step the run will stop at: the planned steps, or earlier where the seconds budget ends."""
        done = step - self.initial
        if self.max_seconds is None or done <= 0:
            return self.planned
        seconds_per_step = (train_seconds - self.seconds_before) / done
        left = self.max_seconds - train_seconds
        if left <= 0:
            return step
        return min(self.planned, step + max(1, math.ceil(left / max(seconds_per_step, 1e-9))))

    def update(self, step: int, train_seconds: float, examples_per_second: float, loss: float | None = None) -> None:
        """Record that optimizer step ``step`` is done after ``train_seconds`` of training in total."""
        self.total = self.expected_stop(step, train_seconds)
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        steps_per_second = (step - self.initial) / elapsed
        postfix = f", {steps_per_second:.2f} steps/s, {examples_per_second:.1f} examples/s"
        if loss is not None:
            postfix += f", loss {loss:.4f}"
        if self.total < self.planned:
            postfix += f", stops at the {self.max_seconds:.0f} s budget"
        self.bar.total = self.total
        self.bar.set_postfix_str(postfix.lstrip(", "), refresh=False)
        self.bar.update(step - self.bar.n)
        if self.logging and time.perf_counter() - self.last_log >= LOG_EVERY_SECONDS:
            self.last_log = time.perf_counter()
            log.info("%s: step %d of %d%s", self.desc, step, self.total, postfix)

    def close(self, step: int) -> None:
        """End the bar at ``step``, the step the run stopped at (its total becomes that step)."""
        self.total = step
        self.bar.total = step
        self.bar.update(step - self.bar.n)
        self.bar.close()
