"""``classify``: the classification baseline (CMA-CLIP style). It can only answer with a value seen
as a training label, so a value never seen in training (zero-shot) is out of its reach.

The fused T5 encoder output (text, plus the image where fusions put it) is mean-pooled over its
attention mask and a linear head scores every class of a :class:`~mxt_baselines.class_table.ClassTable`::

    p(class | input) = softmax(W . mean_n h_n + b)      over the classes stored so far
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
from pydantic import Field

from mxt_sdk import GreedyOutput, SharedStates
from mxt_t5.generator import T5Options

from mxt_baselines.class_table import ClassTable
from mxt_baselines.encoder import EncoderOnly
from mxt_baselines.tokens import IGNORE_INDEX, answer_sequences, answers_output

log = logging.getLogger("mxt_sdk.baselines")


class ClassifyOptions(T5Options):
    """The ``t5`` options (for the encoder) plus the size of the class table."""

    max_classes: int = Field(default=8192, ge=1, description="rows of the class head; later new answers are ignored")
    max_class_tokens: int = Field(default=64, ge=1, description="longest answer (in tokens) a class may be")


def _from_every_process(answers: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """``answers`` of all data-parallel processes in rank order (every process must call this at the
    same training step), so that each adds the same classes in the same order."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return answers
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, answers)
    return [tuple(answer) for part in gathered for answer in part]


class ClassifyGenerator(EncoderOnly):
    """T5 encoder + masked mean pooling + a linear head over the answers seen in training.

    The class table grows in :meth:`loss` while the module is in training mode, from the labels'
    ids (EOS, padding and -100 dropped): each new answer takes the next head row, up to
    ``max_classes``; unused rows are masked to -inf. Answers that find no row (table full, longer
    than ``max_class_tokens``, or unseen outside training) are left out of the loss, with a warning
    the first time. ``greedy`` returns the best class that fits ``max_new_tokens`` (its ids + EOS)
    with ``log p(class)`` on the first token; with no such class, the empty answer (log-prob 0).
    The table lives in buffers (see :mod:`mxt_baselines.class_table`), saved with the weights.
    """

    name = "classify"
    Options = ClassifyOptions
    example_options = {**EncoderOnly.example_options, "max_classes": 16, "max_class_tokens": 8}

    def __init__(self, options: ClassifyOptions, *, saved: Mapping[str, Any] | None = None):
        super().__init__(options, saved=saved)
        self.classes = ClassTable(options.max_classes, options.max_class_tokens)
        self.head = torch.nn.Linear(self.d_model, options.max_classes)
        self._warned = False

    def _class_logits(self, encoder_hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``[B, max_classes]`` scores (float32); rows of no class yet are -inf."""
        mask = attention_mask[..., None].to(encoder_hidden.dtype)
        pooled = (encoder_hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
        logits = self.head(pooled).float()
        unused = torch.arange(logits.size(-1), device=logits.device) >= len(self.classes)
        return logits.masked_fill(unused, float("-inf"))

    def _learn_classes(self, answers: list[tuple[int, ...]]) -> None:
        refused = self.classes.add(_from_every_process(list(dict.fromkeys(answers))))
        if refused and not self._warned:
            self._warned = True
            log.warning("classify: %d answer(s) got no class (max_classes=%d, max_class_tokens=%d); their "
                        "examples are left out of the loss. Raise the limits to learn them.",
                        len(refused), self.options.max_classes, self.options.max_class_tokens)

    def loss(self, encoder_hidden: torch.Tensor, attention_mask: torch.Tensor,
             labels: torch.Tensor, *, input_ids: torch.Tensor) -> torch.Tensor:
        answers = answer_sequences(labels, self.eos_id, self.pad_id)
        if self.training:
            self._learn_classes(answers)
        rows = self.classes.rows
        targets = torch.tensor([rows.get(answer, IGNORE_INDEX) for answer in answers], device=labels.device)
        logits = self._class_logits(encoder_hidden, attention_mask)
        if bool((targets == IGNORE_INDEX).all()):  # nothing to learn here; keep the graph, add nothing
            return encoder_hidden.sum() * 0.0
        return torch.nn.functional.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX)

    def greedy(self, encoder_hidden: torch.Tensor, attention_mask: torch.Tensor,
               max_new_tokens: int, *, input_ids: torch.Tensor, shared: SharedStates | None = None) -> GreedyOutput:
        batch, known = encoder_hidden.size(0), len(self.classes)
        if known == 0:
            return answers_output([()] * batch, encoder_hidden.new_zeros(batch), self.eos_id, self.pad_id)
        logprobs = self._class_logits(encoder_hidden, attention_mask)[:, :known].log_softmax(dim=-1)
        fits = self.classes.lengths[:known] < max_new_tokens                   # room for the EOS too
        best, row = logprobs.masked_fill(~fits, float("-inf")).max(dim=-1)
        found = torch.isfinite(best)
        answers = [self.classes.answer(int(r)) if ok else () for r, ok in zip(row.tolist(), found.tolist())]
        return answers_output(answers, torch.where(found, best, torch.zeros_like(best)), self.eos_id, self.pad_id)
