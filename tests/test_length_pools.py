"""Batches grouped by length (``training.length_pool_batches``): every example once per epoch, the
same batches for the same seed and epoch in any process, little padding, and the one implementation
that ``mxt pretrain`` uses too."""
from __future__ import annotations

import numpy as np
import torch

from mxt_sdk.training.length_pools import EpochShuffle, LengthPooledBatches, length_sorted_batches

SIZE, BATCH, POOL = 203, 8, 5  # 25 full batches and a short one of 3


def _lengths(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(5, 300, size=SIZE)


def _sampler(lengths: np.ndarray, seed: int = 11) -> LengthPooledBatches:
    return LengthPooledBatches(EpochShuffle(len(lengths), seed), BATCH, POOL, seed, lambda indices: lengths[indices])


def _epoch(sampler: LengthPooledBatches, epoch: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


def test_an_epoch_draws_every_example_once_and_only_its_last_batch_is_short():
    lengths = _lengths()
    sampler = _sampler(lengths)
    for epoch in range(3):
        batches = _epoch(sampler, epoch)
        assert len(batches) == len(sampler) == -(-SIZE // BATCH)
        assert sorted(i for batch in batches for i in batch) == list(range(SIZE))
        assert [len(batch) for batch in batches[:-1]] == [BATCH] * (len(batches) - 1) and len(batches[-1]) == 3


def test_the_batches_depend_only_on_the_seed_the_epoch_and_the_lengths():
    lengths = _lengths()
    first, again = _sampler(lengths), _sampler(lengths)
    assert _epoch(first, 0) == _epoch(again, 0)  # another process, or a resumed run
    assert _epoch(first, 1) == _epoch(again, 1) != _epoch(first, 0)
    assert _epoch(_sampler(lengths, seed=12), 1) != _epoch(first, 1)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    _epoch(first, 2)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG (dropout) is left alone


def test_batches_of_a_pool_have_about_the_same_length_and_pools_follow_the_shuffle():
    lengths = _lengths()
    pooled = _epoch(_sampler(lengths), 0)
    shuffled = np.random.default_rng([11, 0, 0]).permutation(SIZE)
    spread = lambda batches: np.mean([np.ptp(lengths[b]) for b in batches])  # noqa: E731
    assert spread(pooled) < spread([shuffled[i:i + BATCH] for i in range(0, SIZE, BATCH)]) / 3
    pool = POOL * BATCH
    assert set(i for batch in pooled[:POOL] for i in batch) == set(shuffled[:pool].tolist())


def test_length_sorted_batches_keeps_full_batches_in_a_seeded_order_and_the_short_one_last():
    items, lengths = list("abcdefg"), [7, 1, 6, 2, 5, 3, 4]
    batches = length_sorted_batches(items, lengths, 2, np.random.default_rng(0))
    assert sorted(batches[:-1]) == [["b", "d"], ["e", "c"], ["f", "g"]] and batches[-1] == ["a"]
    assert batches == length_sorted_batches(items, lengths, 2, np.random.default_rng(0))


def test_unshuffled_examples_are_pooled_too():
    lengths = _lengths()
    sampler = LengthPooledBatches(torch.utils.data.SequentialSampler(range(SIZE)), BATCH, POOL, 11,
                                  lambda indices: lengths[indices])
    batches = list(sampler)
    assert set(i for batch in batches[:POOL] for i in batch) == set(range(POOL * BATCH))
    assert sorted(i for batch in batches for i in batch) == list(range(SIZE))


def _product_rows(seed: int = 0) -> list[int]:
    """Example -> product, products of 1 to 9 examples stored together (as the example shards are)."""
    sizes = np.random.default_rng(seed).integers(1, 10, size=40)
    return [product for product, size in enumerate(sizes) for _ in range(size)]


def test_product_batches_draw_every_example_once_keep_products_together_and_repeat_by_seed():
    from mxt_sdk.training.length_pools import ProductBatches, product_groups

    rows = _product_rows()
    bounds = product_groups(rows)
    assert bounds[0] == 0 and bounds[-1] == len(rows) and len(bounds) == 41
    lengths = np.random.default_rng(1).integers(5, 300, size=len(rows))
    for pool in (0, 3):
        sampler = ProductBatches(bounds, BATCH, pool, 11, lambda indices: lengths[indices], shuffle=True)
        for epoch in range(2):
            sampler.set_epoch(epoch)
            batches = list(sampler)
            assert sorted(i for batch in batches for i in batch) == list(range(len(rows)))
            assert len(batches) == len(sampler) and all(len(b) == BATCH for b in batches[:-1])
            # a product is split only where a batch boundary falls inside it: at most two batches hold it
            holders = {}
            for number, batch in enumerate(batches):
                for i in batch:
                    holders.setdefault(rows[i], set()).add(number)
            assert all(len(h) <= 2 for h in holders.values())
            again = ProductBatches(bounds, BATCH, pool, 11, lambda indices: lengths[indices], shuffle=True)
            again.set_epoch(epoch)
            assert list(again) == batches
        sampler.set_epoch(0)
        first = list(sampler)
        sampler.set_epoch(1)
        assert list(sampler) != first


def test_unshuffled_product_batches_follow_the_stored_order():
    from mxt_sdk.training.length_pools import ProductBatches, product_groups

    rows = _product_rows(3)
    sampler = ProductBatches(product_groups(rows), BATCH, 0, 11, lambda indices: [0] * len(indices), shuffle=False)
    assert [i for batch in sampler for i in batch] == list(range(len(rows)))
