"""What a training run did (:class:`TrainingResult`, also ``<run>/summary.json``) and where its time
went: wall-clock seconds by part, measured with plain timers around the existing loop
(:class:`RunProfile`), and the share of input positions that were padding."""
from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from mxt_sdk.storage import write_json

__all__ = ["TrainingResult", "RunProfile", "PARTS", "synchronizer", "timed"]

log = logging.getLogger("mxt_sdk.training")

#: the parts, in the order of a run: staging the data, the example cache and tokenizer, the image
#: feature cache, then per batch drawing it (prompts, tokens, collation, images read), the forward
#: pass, the backward pass and optimizer step, then evaluations, checkpoints, the image, text and span prior fits
#: and the end (best weights, metadata, saving)
PARTS = ("staging", "prepare", "image_features", "data", "forward", "backward_optimizer", "evaluation",
         "checkpoints", "image_prior", "text_prior", "span_prior",
         "finish")


@dataclass
class TrainingResult:
    """What a run did: steps, where it resumed from, losses, and throughput."""

    steps: int
    resumed_from_step: int | None
    first_val_loss: float | None
    best_val_loss: float | None
    best_step: int | None
    final_val_loss: float | None
    examples_per_second: float
    truncated_examples: int  # examples drawn in this run (all processes) whose input was cut to max_input_tokens
    stopped_early: bool
    stopped_by_time: bool = False  # max_train_seconds ended the run before its planned steps
    seconds: dict[str, float] = field(default_factory=dict)  # where this process's time went, by PARTS
    input_padding: float = 0.0  # share of the input positions of this process's batches that were padding


class RunProfile:
    """Seconds spent in each of :data:`PARTS` by this process, and input tokens vs padded positions.
    ``synchronize`` (e.g. ``torch.cuda.synchronize``) is called as each timed part ends, so work a GPU
    runs asynchronously is counted in the part that queued it."""

    def __init__(self, synchronize: Callable[[], None] | None = None):
        self.seconds = dict.fromkeys(PARTS, 0.0)
        self.tokens = self.positions = 0
        self._synchronize = synchronize

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        """Add the time the ``with`` block takes to part ``name``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            if self._synchronize is not None:
                self._synchronize()
            self.seconds[name] += time.perf_counter() - started

    def batches(self, loader: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """``loader``'s batches, the time to draw each added to ``data`` and its input tokens counted."""
        iterator = iter(loader)
        while True:
            with self.part("data"):
                batch = next(iterator, None)
            if batch is None:
                return
            mask = batch["attention_mask"]
            self.tokens += int(mask.sum())
            self.positions += mask.numel()
            yield batch

    def summarize(self, result: TrainingResult, path: Path | None) -> None:
        """Fill in ``result.seconds`` and ``result.input_padding``, log them with the examples per
        second, and write ``result`` to ``path`` as JSON (unless None)."""
        result.seconds = {name: round(value, 3) for name, value in self.seconds.items()}
        result.input_padding = round(1.0 - self.tokens / self.positions if self.positions else 0.0, 4)
        log.info("%.1f examples/s; %.0f%% of input positions padding; seconds by part: %s",
                 result.examples_per_second, 100 * result.input_padding,
                 ", ".join(f"{part} {seconds:.1f}" for part, seconds in result.seconds.items() if seconds))
        if path is not None:
            write_json(path, asdict(result))


def synchronizer(device: torch.device) -> Callable[[], None] | None:
    """What :class:`RunProfile` calls to wait for ``device``'s queued work: CUDA's synchronize, else nothing."""
    return torch.cuda.synchronize if device.type == "cuda" else None


def timed(part: str) -> Callable[[Callable], Callable]:
    """Decorate a method of an object with a ``profile`` (:class:`RunProfile`) so that its calls add
    to ``part``."""
    def decorate(method: Callable) -> Callable:
        @functools.wraps(method)
        def wrapper(self, *args: Any, **kwargs: Any) -> Any:
            with self.profile.part(part):
                return method(self, *args, **kwargs)
        return wrapper
    return decorate
