"""Fitting ``training.image_prior`` on a finished run's training examples.

The examples come from the run's example shards (streamed: product type, attribute, cleaned answer,
image reference); each distinct image's global vector comes from the feature cache when the run has
one, else from the frozen encoder. Examples whose image is missing or unreadable are left out.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator

import torch

from mxt_sdk.config import ImagePriorConfig
from mxt_sdk.data.metadata import pair_key
from mxt_sdk.images.batching import ImageLoader
from mxt_sdk.inference.image_prior import ImagePriorExample, ImageValuePrior
from mxt_sdk.model.mxt import MXTModel
from mxt_sdk.training.feature_cache import FeatureCache
from mxt_sdk.training.staging import read_arrow

__all__ = ["fit_image_prior", "check_image_prior"]

log = logging.getLogger(__name__)


def check_image_prior(model: MXTModel) -> None:
    """Raise ValueError unless ``model`` can have an image prior: a global image encoder, frozen (but for a
    tail trained by ``train_last_blocks``: the prior is fitted after the last step, on the trained tail)."""
    if model.config.global_encoder is None:
        raise ValueError("training.image_prior needs a global image encoder (model.global_encoder): the prior "
                         "reads its pooled vector")
    if not model.image_features_fixed:
        raise ValueError("training.image_prior needs frozen image encoders (training.freeze_image_encoders: "
                         "true, or an encoder frozen by its options): a prior fitted on features that "
                         "training changes would not match them")


def _global_vectors(model: MXTModel, images: FeatureCache | ImageLoader, references: list[str],
                    device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The global vectors [N, D] of ``references`` (zeros where unreadable) and which were read [N]."""
    with torch.no_grad():
        if isinstance(images, FeatureCache):
            fixed, _ = images.load(references)
            features = model.finish_features(fixed.to(device))  # a trained tail runs on the cached trunk
        else:
            pixels, _ = images.load(references)
            features = model.encode_images(pixels.to(device))
    return features.features["global"].float().cpu(), features.has_image.cpu()


def fit_image_prior(model: MXTModel, example_paths, images: FeatureCache | ImageLoader,
                    options: ImagePriorConfig, max_values: int, batch_size: int,
                    device: torch.device) -> ImageValuePrior | None:
    """The prior over the pairs of the training examples in ``example_paths`` (Arrow shards with
    ``product_type``, ``attribute``, ``answer`` and ``image`` columns) with at most ``max_values``
    values. Holds the distinct image references and one small record per example in memory.
    A catalog whose training products have no photo gets no prior (``None``, with a warning): the
    prior steps aside and the model answers as it would without one."""
    rows: dict[str, int] = {}
    examples: list[ImagePriorExample] = []
    for batch in read_arrow(example_paths, ["product_type", "attribute", "answer", "image"]):
        for product_type, attribute, answer, image in zip(batch["product_type"], batch["attribute"],
                                                          batch["answer"], batch["image"]):
            if image is not None:
                examples.append(ImagePriorExample(pair_key(product_type, attribute), answer,
                                                  rows.setdefault(image, len(rows))))
    references = list(rows)
    if not references:
        log.warning("No training product has a photo: no image prior is fitted (training.image_prior is "
                    "skipped; answers come from the generator alone)")
        return None
    readable: list[bool] = []  # per reference, filled by the first pass over the vectors

    def vector_chunks() -> Iterator[torch.Tensor]:
        for start in range(0, len(references), batch_size):
            vectors, ok = _global_vectors(model, images, references[start:start + batch_size], device)
            if len(readable) < len(references):
                readable.extend(ok.tolist())
            yield vectors[ok]

    def usable() -> Iterator[ImagePriorExample]:  # read by fit after the vectors, when ``readable`` is known
        kept = {row: index for index, row in enumerate(r for r, ok in enumerate(readable) if ok)}
        log.info("Fitting the image prior on the examples of %d readable images (%d unreadable)",
                 len(kept), len(references) - len(kept))
        yield from (e._replace(row=kept[e.row]) for e in examples if e.row in kept)

    was_training = model.training
    model.eval()
    try:
        return ImageValuePrior.fit(vector_chunks, usable(), max_values=max_values, dims=options.dims,
                                   l2=options.l2, max_iter=options.max_iter)
    finally:
        model.train(was_training)
