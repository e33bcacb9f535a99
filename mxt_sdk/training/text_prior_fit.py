"""Fitting ``training.text_prior`` on a finished run's training examples.

The examples come from the run's example shards (streamed: product row, product type, attribute, cleaned
answer); each product's document (:func:`~mxt_sdk.inference.text_prior.product_document`) comes from the
split's staged products, read once in order. Scrambled examples (``training.scramble_copied_values``) are
fitted on their product's own text, like every other.
"""
from __future__ import annotations

from collections.abc import Iterator

from mxt_sdk.config import TextPriorConfig
from mxt_sdk.data.metadata import pair_key
from mxt_sdk.inference.text_prior import TextPriorExample, TextValuePrior, product_document
from mxt_sdk.training.example_cache import ExampleShards
from mxt_sdk.training.staging import read_arrow, staged_product
from pydantic_core import from_json

__all__ = ["fit_text_prior"]


def fit_text_prior(shards: ExampleShards, options: TextPriorConfig, max_values: int) -> TextValuePrior:
    """The prior over the pairs of the training examples in ``shards`` with at most ``max_values`` values.
    Reads the staged products twice; holds each product's packed TF-IDF vector and one small record per
    example in memory."""
    def documents() -> Iterator[str]:
        for batch in read_arrow(shards.products, ["product"]):
            yield from (product_document(staged_product(from_json(text))) for text in batch["product"])

    examples = [TextPriorExample(pair_key(product_type, attribute), answer, row)
                for batch in read_arrow(shards.paths, ["product_row", "product_type", "attribute", "answer"])
                for row, product_type, attribute, answer in zip(batch["product_row"], batch["product_type"],
                                                                batch["attribute"], batch["answer"])]
    return TextValuePrior.fit(documents, examples, max_values=max_values, max_words=options.max_words,
                              l2=options.l2, max_iter=options.max_iter)
