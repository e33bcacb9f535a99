"""Noising one token sequence for self-supervised pretraining (``mxt pretrain``).

Spans of the sequence are chosen as in T5 (Raffel et al. 2020, "random spans noise mask"): about
``density`` of the tokens (15%) in spans of ``mean_span`` tokens on average (3), never at the very
start; each span is replaced by its own sentinel token in the input::

    tokens   a b c d e f g h          noise: c d, g
    input    a b <s0> e f <s1> h </s>

The target is, by objective:

* ``"span"`` (T5's span corruption): only the dropped spans, each after its sentinel:
  ``<s0> c d <s1> g </s>``;
* ``"reconstruct"`` (BART-style text infilling, with T5's sentinels): the whole original sequence,
  ``a b c d e f g h </s>``, so the decoder learns to copy the tokens it sees and to fill in the ones
  it does not.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

__all__ = ["OBJECTIVES", "noise_mask", "apply_mask", "corrupt"]

Objective = Literal["span", "reconstruct"]
OBJECTIVES: tuple[str, ...] = ("span", "reconstruct")


def _split(total: int, parts: int, rng: np.random.Generator) -> np.ndarray:
    """``total`` items cut into ``parts`` non-empty runs of random lengths (a random composition)."""
    cuts = np.sort(rng.choice(np.arange(1, total), size=parts - 1, replace=False))
    return np.diff(np.concatenate([[0], cuts, [total]]))


def noise_mask(length: int, rng: np.random.Generator, density: float = 0.15, mean_span: float = 3.0,
               max_spans: int | None = None) -> np.ndarray:
    """Boolean ``[length]``: which tokens are dropped. ``round(length * density)`` tokens (at least 1,
    at most ``length - 1``) in ``round(noise / mean_span)`` spans (at least 1, at most ``max_spans``),
    alternating with kept runs and starting with a kept one. Nothing is dropped when ``length < 2``."""
    if length < 2:
        return np.zeros(length, dtype=bool)
    noise = min(max(round(length * density), 1), length - 1)
    spans = max(round(noise / mean_span), 1)
    spans = min(spans, noise, length - noise, max_spans or spans)
    dropped, kept = _split(noise, spans, rng), _split(length - noise, spans, rng)
    mask = np.zeros(length, dtype=bool)
    position = 0
    for keep, drop in zip(kept, dropped):
        position += keep
        mask[position:position + drop] = True
        position += drop
    return mask


def apply_mask(ids: Sequence[int], mask: np.ndarray, sentinels: Sequence[int], eos_id: int,
               objective: Objective = "span") -> tuple[list[int], list[int]]:
    """``(input_ids, labels)`` of ``ids`` with the ``mask``-ed spans replaced by ``sentinels`` in
    order (both end with ``eos_id``; see the module docstring for the two objectives)."""
    inputs: list[int] = []
    spans: list[int] = []
    sentinel = -1
    for index, token in enumerate(ids):
        if not mask[index]:
            inputs.append(token)
            continue
        if index == 0 or not mask[index - 1]:  # a span starts
            sentinel += 1
            if sentinel >= len(sentinels):
                raise ValueError(f"{sentinel + 1} noise spans but only {len(sentinels)} sentinel tokens")
            inputs.append(sentinels[sentinel])
            spans.append(sentinels[sentinel])
        spans.append(token)
    labels = list(ids) if objective == "reconstruct" else spans
    return inputs + [eos_id], labels + [eos_id]


def corrupt(ids: Sequence[int], sentinels: Sequence[int], eos_id: int, rng: np.random.Generator,
            objective: Objective = "span", density: float = 0.15,
            mean_span: float = 3.0) -> tuple[list[int], list[int]]:
    """Draw a :func:`noise_mask` for ``ids`` (token ids without EOS) and apply it."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown pretraining objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    mask = noise_mask(len(ids), rng, density, mean_span, max_spans=len(sentinels))
    return apply_mask(ids, mask, sentinels, eos_id, objective)
