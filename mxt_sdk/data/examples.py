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
from dataclasses import dataclass
from itertools import islice
from typing import Any

from mxt_sdk.data.metadata import CatalogMetadata, pair_key
from mxt_sdk.data.prompt import build_prompt, fit_prompts
from mxt_sdk.data.scrambles import ValueScrambler
from mxt_sdk.data.subwords import SubwordSplitter
from mxt_sdk.evaluation.metrics import written_in
from mxt_sdk.images.batching import truncate
from mxt_sdk.types import Product


def product_examples(product: Product, none_answer: str, scrambler: ValueScrambler | None = None
                     ) -> Iterator[tuple[str, str, str | None]]:
    """The examples of one product without the prompts that the product itself gives, as
    ``(attribute, answer, prompt)``, where ``prompt`` is None unless a scrambled value changed the text
    (then it is that prompt); otherwise the prompt is ``build_prompt(attribute, product)``
    (:func:`example_rows` fills it in, training builds it as each batch is drawn). With ``scrambler``,
    some values written in the text are scrambled in the prompt and answer alike
    (``training.scramble_copied_values``)."""
    for attribute, value in product.attributes.items():
        answer = value if value is not None else none_answer
        source, shown = scrambler(product, attribute, value) if scrambler and value else (product, answer)
        yield attribute, shown, None if source is product else build_prompt(attribute, source)


def example_rows(products: Iterable[Product], none_answer: str, scrambler: ValueScrambler | None = None
                 ) -> Iterator[dict[str, Any]]:
    """:func:`product_examples` of each product with their prompts, as
    ``{product_id, product_type, attribute, prompt, answer, image}``."""
    for product in products:
        for attribute, answer, prompt in product_examples(product, none_answer, scrambler):
            yield {"product_id": product.id, "product_type": product.product_type, "attribute": attribute,
                   "prompt": prompt or build_prompt(attribute, product), "answer": answer, "image": product.image}


def collect_metadata(products: Iterable[Product]) -> CatalogMetadata:
    """Pairs seen, their value counts (``None`` labels mark the pair as seen, count no value) and how
    many values each pair's texts state."""
    counter = MetadataCounter()
    for product in products:
        counter.add(product.product_type, product.attributes, product.text)
    return counter.metadata()


def metadata_from_labels(rows: Iterable[tuple[str, Mapping[str, str | None]]]) -> CatalogMetadata:
    """:func:`collect_metadata` from ``(product type, attributes)`` rows (which may stream from disk):
    memory grows with the distinct values, not with the products."""
    counter = MetadataCounter()
    for product_type, attributes in rows:
        counter.add(product_type, attributes)
    return counter.metadata()


class MetadataCounter:
    """:func:`metadata_from_labels` fed one product at a time (e.g. by a pass that does other work);
    given each product's ``text``, it also counts the values written in it (``CatalogMetadata.written``)."""

    def __init__(self):
        self._counts: dict[str, Counter] = {}
        self._written: Counter = Counter()
        self._with_text = False

    def add(self, product_type: str, attributes: Mapping[str, str | None], text: str | None = None) -> None:
        for attribute, value in attributes.items():
            key = pair_key(product_type, attribute)
            pair = self._counts.get(key)
            if pair is None:
                pair = self._counts[key] = Counter()
            if value is not None:
                pair[value] += 1
                if text is not None:
                    self._written[key] += written_in(value, text)
        self._with_text = self._with_text or text is not None

    def metadata(self) -> CatalogMetadata:
        """The pairs in order of first sight, each one's values most frequent first (ties: first seen)."""
        written = {key: self._written[key] for key in self._counts} if self._with_text else {}
        return CatalogMetadata(values={key: dict(counter.most_common()) for key, counter in self._counts.items()},
                               written=written)


@dataclass(frozen=True)
class ExampleEncoder:
    """Tokenizes training examples as they are drawn (a ``datasets`` transform, run wherever the batch
    is loaded: the training process or a data-loader worker): ``prompt`` / ``answer`` / ``image``
    columns -> ``input_ids`` (the prompt cut to ``limit`` tokens by the prompt rule,
    :func:`~mxt_sdk.data.prompt.fit_prompts`), ``truncated`` (whether it was cut), ``labels`` and
    ``image``. With ``splitter``, subword regularization keyed by the (cut) prompt, so a piece splits
    alike in an example's prompt and answer, and the same example gets the same tokens in every
    process and epoch; a prompt its splits make longer than ``limit`` is then cut from the end."""

    tokenizer: Any
    limit: int
    splitter: SubwordSplitter | None = None
    per_product: bool = False  #: question and context tokenized apart (``model.context_encoding: per_product``)

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        prompts, inputs = fit_prompts(self.tokenizer, self.limit, batch["prompt"], self.per_product)
        labels = self.tokenizer(batch["answer"])["input_ids"]
        if self.splitter is not None:
            pairs = [self.splitter.split_example(*example) for example in zip(inputs, labels, prompts)]
            inputs, labels = [prompt for prompt, _ in pairs], [answer for _, answer in pairs]
        cut = [fitted != prompt or len(ids) > self.limit
               for fitted, prompt, ids in zip(prompts, batch["prompt"], inputs)]
        return {"input_ids": [truncate(ids, self.limit) for ids in inputs], "truncated": cut, "labels": labels,
                "image": batch["image"]}

    def longest_answer(self, answers: Iterable[str], batch_size: int = 1024) -> int:
        """The most tokens any training label for ``answers`` can have (0 for none): the tokenizer's
        own length, or with subword regularization the length with every piece split at its worst
        point (:meth:`SubwordSplitter.longest`), since the splits drawn depend on the example. Meant
        for the *distinct* answers, which is all the generation bound needs."""
        longest, iterator = 0, iter(answers)
        while chunk := list(islice(iterator, batch_size)):
            for ids in self.tokenizer(chunk)["input_ids"]:
                longest = max(longest, len(ids) if self.splitter is None else self.splitter.longest(ids))
        return longest
