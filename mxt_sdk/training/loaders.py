"""The data loaders of a fine-tuning run: memory-mapped examples (tokenized as drawn) -> batches,
straight from a seeded shuffle or grouped by prompt length (``training.length_pool_batches``,
:class:`~mxt_sdk.training.length_pools.LengthPooledBatches`) -> :class:`TrainingCollator`."""
from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import torch

from mxt_sdk.config import TrainingConfig
from mxt_sdk.devices import loader_workers
from mxt_sdk.images.batching import ImageLoader, TrainingCollator
from mxt_sdk.training.length_pools import EpochShuffle, LengthPooledBatches, ProductBatches

if TYPE_CHECKING:
    import datasets

    from mxt_sdk.training.feature_cache import FeatureCache

__all__ = ["example_loader", "token_lengths"]


def token_lengths(data: datasets.Dataset, indices: list[int]) -> list[int]:
    """The input tokens of the examples at ``indices``, as training draws them (prompt cut to the
    budget, subword splits applied)."""
    return [len(ids) for ids in data[indices]["input_ids"]]


def example_loader(data: datasets.Dataset, config: TrainingConfig, pad_id: int,
                   images: ImageLoader | FeatureCache | None, device: torch.device,
                   shuffle: bool, product_bounds: list[int] | None = None) -> torch.utils.data.DataLoader:
    """Batches of ``config.batch_size`` examples of ``data``, every example once per epoch, in an
    order that depends only on ``config.seed`` and the epoch (``set_epoch``): shuffled when
    ``shuffle``; with ``config.length_pool_batches``, pools of that many batches are sorted by
    :func:`token_lengths` (validation, unshuffled, is pooled alike: its loss does not depend on the
    order). The loader has its own generator, so starting an iteration (as a resumed run does
    mid-epoch) draws no number from the global RNG, whose sequence (dropout) must not depend on
    where a run was resumed. With ``product_bounds`` (:func:`~mxt_sdk.training.length_pools.product_groups`
    of the examples' products) a product's examples are drawn together (:class:`ProductBatches`)."""
    workers = loader_workers(config.num_workers, device, isinstance(images, ImageLoader))
    common = {"collate_fn": TrainingCollator(pad_id, images), "num_workers": workers,
              "persistent_workers": workers > 0, "pin_memory": device.type == "cuda",
              "generator": torch.Generator().manual_seed(config.seed)}
    if product_bounds is not None:
        batches = ProductBatches(product_bounds, config.batch_size, config.length_pool_batches, config.seed,
                                 partial(token_lengths, data), shuffle)
        return torch.utils.data.DataLoader(data, batch_sampler=batches, **common)
    if not config.length_pool_batches:
        return torch.utils.data.DataLoader(data, batch_size=config.batch_size, shuffle=shuffle, **common)
    order = EpochShuffle(len(data), config.seed) if shuffle else torch.utils.data.SequentialSampler(data)
    batches = LengthPooledBatches(order, config.batch_size, config.length_pool_batches, config.seed,
                                  partial(token_lengths, data))
    return torch.utils.data.DataLoader(data, batch_sampler=batches, **common)
