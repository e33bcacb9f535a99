"""Batches of about the same length, in a seeded order: the one implementation behind ``mxt
pretrain``'s batches (:class:`mxt_sdk.training.pretrain.Batches`) and fine-tuning's batch sampler
(:class:`LengthPooledBatches`, ``training.length_pool_batches``).

Items are drawn from a seeded shuffle in pools of a few dozen batches; a pool's items are sorted by
length and cut into batches, which are then taken in a seeded order. Batches of items of about the
same length pad little, and since a pool is a random draw the batches still mix the catalog.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

import numpy as np
import torch

__all__ = ["epoch_order", "length_sorted_batches", "product_groups", "EpochShuffle", "LengthPooledBatches",
           "ProductBatches"]

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


def product_groups(product_rows: Iterable[int]) -> list[int]:
    """Where each product's examples start in the example order (examples of one product are stored
    together), and the number of examples at the end: ``[0, s1, s2, ..., n]``."""
    starts, previous, total = [], object(), 0
    for total, row in enumerate(product_rows, start=1):
        if row != previous:
            starts.append(total - 1)
            previous = row
    return [*starts, total]


class ProductBatches(torch.utils.data.Sampler[list[int]]):
    """A batch sampler that keeps a product's examples together (``model.context_encoding: per_product``, where
    a batch encodes each product's context once): the products (``bounds`` from :func:`product_groups`) in a
    seeded shuffle of the epoch (in order when not ``shuffle``), their examples cut into batches of
    ``batch_size``; a product is split only where a batch boundary falls inside it.

    With ``pool_batches``, the products of each pool of about that many batches are sorted by ``lengths`` (of
    one example per product) first, and the pool's full batches taken in a seeded order; the examples left over
    open the next pool. An epoch uses every example once, in ``ceil(examples / batch_size)`` batches of which
    only the last may be short; the batches depend only on the seed, the epoch (``set_epoch``) and the lengths.
    """

    def __init__(self, bounds: Sequence[int], batch_size: int, pool_batches: int, seed: int,
                 lengths: Callable[[list[int]], Sequence[int]], shuffle: bool):
        self.bounds, self.batch_size, self.pool_batches = list(bounds), batch_size, pool_batches
        self.seed, self.lengths, self.drop_last = seed, lengths, False
        products = len(self.bounds) - 1
        # the products' order; as ``sampler`` (like LengthPooledBatches') so that accelerate's data loaders,
        # which look for a batch sampler's ``sampler`` when sharding it over processes, pass the epoch on
        self.sampler = EpochShuffle(products, seed) if shuffle else torch.utils.data.SequentialSampler(range(products))

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        return getattr(self.sampler, "epoch", 0)

    def __len__(self) -> int:
        return -(-self.bounds[-1] // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        count = len(self.bounds) - 1
        pool_size = max(1, self.pool_batches) * self.batch_size
        carried: list[int] = []
        pool: list[int] = []
        examples = 0
        for position, product in enumerate(self.sampler):
            pool.append(product)
            examples += self.bounds[product + 1] - self.bounds[product]
            if examples >= pool_size or position == count - 1:
                batches = self._cut(pool, carried, position)
                carried = batches.pop() if batches and len(batches[-1]) < self.batch_size else []
                yield from batches
                pool, examples = [], 0
        if carried:
            yield carried

    def _cut(self, pool: list[int], carried: list[int], position: int) -> list[list[int]]:
        """``carried`` then the pool's examples (products sorted by length with ``pool_batches``) in batches;
        the full ones in a seeded order, a short one last."""
        if self.pool_batches:
            lengths = self.lengths([self.bounds[product] for product in pool])
            pool = [pool[i] for i in np.argsort(np.asarray(lengths), kind="stable")]
        ordered = carried + [i for product in pool for i in range(self.bounds[product], self.bounds[product + 1])]
        batches = [ordered[start:start + self.batch_size] for start in range(0, len(ordered), self.batch_size)]
        full = len(ordered) // self.batch_size
        if not self.pool_batches:
            return batches
        rng = np.random.default_rng([self.seed, 3, self.epoch, position])
        return [batches[i] for i in rng.permutation(full)] + batches[full:]
