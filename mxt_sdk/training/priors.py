"""The priors fitted after the last training step, beside the trained model (each optional, each named in
``training``): the image prior (:mod:`mxt_sdk.training.image_prior_fit`), the text prior
(:mod:`mxt_sdk.training.text_prior_fit`) and the span prior (:mod:`mxt_sdk.inference.span_prior`, on the
staged training products and every label they carry)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic_core import from_json

from mxt_sdk.config import SpanPriorConfig
from mxt_sdk.inference.span_prior import SpanPrior
from mxt_sdk.training.image_prior_fit import fit_image_prior
from mxt_sdk.training.staging import read_arrow, staged_product
from mxt_sdk.training.text_prior_fit import fit_text_prior
from mxt_sdk.types import Product

__all__ = ["fit_priors", "fit_span_prior"]

#: pairs with at most this many values get an image or text prior when extraction.choose_among_known is 0 (off)
DEFAULT_PRIOR_VALUES = 50


def fit_span_prior(products: Path, options: SpanPriorConfig, seed: int) -> SpanPrior:
    """The span prior of the staged products in ``products`` (an Arrow file of the run's training split)."""
    def staged() -> Iterator[Product]:
        for batch in read_arrow(products, ["product"]):
            yield from (staged_product(from_json(text)) for text in batch["product"])

    return SpanPrior.fit(staged, seed=seed, **options.model_dump())


def fit_priors(extractor: Any, model: Any, data: dict, images: Any, profile: Any, device: Any) -> None:
    """Fit the priors ``extractor.config.training`` names on the run's training split and set them on
    ``extractor`` (None for each one not named: a prior fitted for earlier weights never outlives them)."""
    config = extractor.config.training
    values = extractor.config.extraction.choose_among_known or DEFAULT_PRIOR_VALUES
    train = data["images"]["train"]
    extractor.image_prior = extractor.text_prior = extractor.span_prior = None
    if config.image_prior is not None:
        with profile.part("image_prior"):
            extractor.image_prior = fit_image_prior(model, train.paths, images, config.image_prior, values,
                                                    config.batch_size, device)
    if config.text_prior is not None:
        with profile.part("text_prior"):
            extractor.text_prior = fit_text_prior(train, config.text_prior, values)
    if config.span_prior is not None:
        with profile.part("span_prior"):
            extractor.span_prior = fit_span_prior(train.products, config.span_prior, config.seed)
