"""Batches of about the same length, in a seeded order: the one implementation behind ``mxt
pretrain``'s batches (:class:`mxt_sdk.training.pretrain.Batches`) and fine-tuning's batch sampler
(:class:`LengthPooledBatches`, ``training.length_pool_batches``).

Items are drawn from a seeded shuffle in pools of a few dozen batches; a pool's items are sorted by
length and cut into batches, which are then taken in a seeded order. Batches of items of about the
same length pad little, and since a pool is a random draw the batches still mix the catalog.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import numpy as np
import torch

__all__ = ["epoch_order", "length_sorted_batches", "EpochShuffle", "LengthPooledBatches"]

T = TypeVar("T")


def epoch_order(seed: int, epoch: int, size: int) -> np.ndarray:
    """The seeded shuffle of ``range(size)`` for ``epoch``: the same in every process and run."""
    return np.random.default_rng([seed, 0, epoch]).permutation(size)


def length_sorted_batches(items: Sequence[T], lengths: Sequence[int], batch_size: int,
                          rng: np.random.Generator) -> list[list[T]]:
    """``items`` sorted by their ``lengths`` (stable: equal lengths keep their order), cut into
    batches of ``batch_size``, the full ones in the order ``rng.permutation`` draws, then the short
    one (the longest items left over) when ``batch_size`` does not divide them. Every item lands in
    exactly one batch."""
    ordered = [items[i] for i in np.argsort(np.asarray(lengths), kind="stable")]
    batches = [ordered[start:start + batch_size] for start in range(0, len(ordered), batch_size)]
    full = len(ordered) // batch_size
    return [batches[i] for i in rng.permutation(full)] + batches[full:]


class EpochShuffle(torch.utils.data.Sampler[int]):
    """The indices ``0 .. size-1`` in :func:`epoch_order` of the epoch last set (``set_epoch``, which
    accelerate's data loaders call on a batch sampler's ``sampler``)."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        return iter(epoch_order(self.seed, self.epoch, self.size).tolist())


class LengthPooledBatches(torch.utils.data.Sampler[list[int]]):
    """A batch sampler: the indices ``sampler`` yields, in pools of ``pool_batches`` batches, each
    pool cut by :func:`length_sorted_batches` on ``lengths(pool indices)`` with a generator seeded by
    ``(seed, epoch, pool)``. An epoch uses every index exactly once, in ``ceil(len(sampler) /
    batch_size)`` batches of which only one, in the last pool, may be short. The batches depend only
    on the seed, the epoch (``set_epoch``, passed on to ``sampler``) and the lengths, so every process
    and every resumed run draws the same ones. ``lengths`` is asked one pool at a time, as the pool is
    reached."""

    def __init__(self, sampler: torch.utils.data.Sampler[int], batch_size: int, pool_batches: int, seed: int,
                 lengths: Callable[[list[int]], Sequence[int]]):
        self.sampler, self.batch_size, self.pool_batches = sampler, batch_size, pool_batches
        self.seed, self.lengths, self.drop_last = seed, lengths, False

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order, size = list(self.sampler), self.pool_batches * self.batch_size
        epoch = getattr(self.sampler, "epoch", 0)
        for pool, start in enumerate(range(0, len(order), size)):
            indices = order[start:start + size]
            rng = np.random.default_rng([self.seed, 2, epoch, pool])
            yield from length_sorted_batches(indices, self.lengths(indices), self.batch_size, rng)
