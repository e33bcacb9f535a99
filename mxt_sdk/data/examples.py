"""Training examples: one per (product, attribute) label, and the catalog metadata they imply.

A label ``None`` ("not stated", e.g. ExtractGPT's ``n/a``) becomes the reserved answer
``ModelConfig.none_answer`` (default :data:`~mxt_sdk.config.NOT_STATED`, ``"n/a-not-stated"``, a
string no catalog writes as a value, so a genuine value ``"none"`` stays a value); the extractor
turns that answer back into ``Prediction.value = None``. Models saved before it keep the ``"none"``
in their config. Attributes a product does not list are not turned into examples.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from mxt_sdk.data.metadata import CatalogMetadata, pair_key
from mxt_sdk.data.prompt import build_prompt
from mxt_sdk.data.scrambles import ValueScrambler
from mxt_sdk.data.subwords import SubwordSplitter
from mxt_sdk.images.batching import truncate
from mxt_sdk.types import Product


def example_rows(products: Iterable[Product], none_answer: str, text_free_copies: bool = False,
                 scrambler: ValueScrambler | None = None) -> Iterator[dict[str, Any]]:
    """JSON-able rows ``{product_id, product_type, attribute, prompt, answer, image}``; with
    ``text_free_copies``, each row of a product with an image is followed by a copy whose prompt leaves
    the product's texts out (``training.text_free_copies``, with the true answer); with ``scrambler``,
    some values written in the text are scrambled in the prompt and answer alike
    (``training.scramble_copied_values``)."""
    for product in products:
        for attribute, value in product.attributes.items():
            answer = value if value is not None else none_answer
            source, shown = scrambler(product, attribute, value) if scrambler and value else (product, answer)
            row = {
                "product_id": product.id, "product_type": product.product_type, "attribute": attribute,
                "prompt": build_prompt(attribute, source), "answer": shown, "image": product.image,
            }
            yield row
            if text_free_copies and product.image is not None:
                yield {**row, "prompt": build_prompt(attribute, product, with_text=False), "answer": answer}


def collect_metadata(products: Iterable[Product]) -> CatalogMetadata:
    """Pairs seen and their value counts (``None`` labels mark the pair as seen, count no value)."""
    return metadata_from_labels((product.product_type, product.attributes) for product in products)


def metadata_from_labels(rows: Iterable[tuple[str, Mapping[str, str | None]]]) -> CatalogMetadata:
    """:func:`collect_metadata` from ``(product type, attributes)`` rows (which may stream from disk):
    memory grows with the distinct values, not with the products."""
    counts: dict[str, Counter] = {}
    for product_type, attributes in rows:
        for attribute, value in attributes.items():
            pair = counts.setdefault(pair_key(product_type, attribute), Counter())
            if value is not None:
                pair[value] += 1
    return CatalogMetadata(values={key: dict(counter.most_common()) for key, counter in counts.items()})


def example_tokenizer(tokenizer, limit: int, splitter: SubwordSplitter | None = None):
    """A batched ``datasets.map`` function: ``prompt`` / ``answer`` columns -> ``input_ids`` (cut to
    ``limit`` tokens), ``truncated`` and ``labels``; with ``splitter``, subword regularization keyed by
    the prompt, so a piece splits alike in an example's prompt and answer."""

    def tokenize(batch: dict[str, list]) -> dict[str, list]:
        inputs = tokenizer(batch["prompt"])["input_ids"]
        labels = tokenizer(batch["answer"])["input_ids"]
        if splitter is not None:
            pairs = [splitter.split_example(*example) for example in zip(inputs, labels, batch["prompt"])]
            inputs, labels = [prompt for prompt, _ in pairs], [answer for _, answer in pairs]
        return {"input_ids": [truncate(ids, limit) for ids in inputs],
                "truncated": [len(ids) > limit for ids in inputs], "labels": labels}

    return tokenize
