"""The optimizer of a training run: AdamW over the trained parameters."""
from __future__ import annotations

from typing import Any

import torch

from mxt_sdk.config import TrainingConfig
from mxt_sdk.model.mxt import MXTModel

__all__ = ["training_optimizer"]


def training_optimizer(model: MXTModel, config: TrainingConfig) -> torch.optim.AdamW:
    """AdamW at ``learning_rate`` over every parameter that trains; image-encoder weights that train (e.g.
    the blocks ``train_last_blocks`` opens) form a group of their own at ``image_learning_rate`` when it is
    set: pretrained layers fine-tuned beside a generator trained from scratch want a smaller step."""
    trained = [p for p in model.parameters() if p.requires_grad]
    image = {id(p) for p in model.encoders.parameters() if p.requires_grad}
    groups: list[dict[str, Any]] = [{"params": trained}]  # one group in the model's order, as checkpoints have it
    if image and config.image_learning_rate is not None:
        groups = [{"params": [p for p in trained if id(p) not in image]},
                  {"params": [p for p in trained if id(p) in image], "lr": config.image_learning_rate}]
    return torch.optim.AdamW(groups, lr=config.learning_rate, weight_decay=config.weight_decay)
