"""Choosing among known values: closed-vocabulary answers for the pairs whose values are a short list.

Many attributes are enumerations (sleeve length, pattern, heel height, an animal theme): training saw
every value the catalog uses. For a (product type, attribute) pair with at most ``max_values`` known
values, :class:`KnownValueChooser` scores each known value, and the none answer, as a whole answer
under the model (the probability greedy decoding would give it) and answers the most likely one; its
confidence is that probability. Pairs with more values (brands, materials of a long tail) and pairs
training never saw keep the free greedy answer, and so does a free answer written in the product's
text that is a known value or belongs to a pair that usually writes its values (the engine does not ask
for those; ``Engine._may_be_new``), so values new to training stay possible where the text states them. Each example's prompt is encoded once; all candidates of a batch are scored in one
decoder pass.

With an ``image_prior`` (:mod:`mxt_sdk.inference.image_prior`), a product with an image has each known
value's score raised by ``prior_weight`` times the prior's log-probability of it; with a ``text_prior``
(:mod:`mxt_sdk.inference.text_prior`), every product has it raised by ``text_prior_weight`` times that
prior's log-probability. Where a prior applies, the confidence is the chosen value's softmax share of the
combined scores, and the path names the priors that applied when they changed which value won.

"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from mxt_sdk.data.metadata import CatalogMetadata, pair_key
from mxt_sdk.inference.image_prior import ImageValuePrior
from mxt_sdk.inference.text_prior import TextValuePrior, product_document
from mxt_sdk.model.mxt import ImageFeatures, MXTModel
from mxt_sdk.types import Product

__all__ = ["KnownValueChooser"]

class KnownValueChooser:
    """Answers pairs with at most ``max_values`` known values by the most likely of them."""

    def __init__(self, model: MXTModel, tokenizer: Any, metadata: CatalogMetadata, none_answer: str,
                 max_values: int, open_share: float | None = None,
                 image_prior: ImageValuePrior | None = None, prior_weight: float = 1.0,
                 text_prior: TextValuePrior | None = None, text_prior_weight: float = 1.0):
        self.model, self.tokenizer, self.metadata = model, tokenizer, metadata
        self.none_answer, self.max_values = none_answer, max_values
        self.open_share = open_share
        self.image_prior, self.prior_weight = image_prior, prior_weight
        self.text_prior, self.text_prior_weight = text_prior, text_prior_weight
        self._candidates: dict[str, tuple[list[str], list[list[int]]] | None] = {}

    def candidates(self, product_type: str, attribute: str) -> tuple[list[str], list[list[int]]] | None:
        """The pair's known values and the none answer with their token ids; None when the pair is unknown,
        has more than ``max_values`` values or is open (its Good-Turing share of new values,
        :meth:`CatalogMetadata.new_value_share`, above ``open_share``)."""
        key = pair_key(product_type, attribute)
        if key not in self._candidates:
            values = sorted(self.metadata.values.get(key, {}))
            new_share = self.metadata.new_value_share(product_type, attribute)
            is_open = self.open_share is not None and new_share is not None and new_share > self.open_share
            if not values or len(values) > self.max_values or is_open:
                self._candidates[key] = None
            else:
                self._candidates[key] = self._encoded(values)
        return self._candidates[key]

    def _encoded(self, values: list[str]) -> tuple[list[str], list[list[int]]]:
        texts = [*values, self.none_answer] if self.none_answer not in values else values
        return texts, self.tokenizer(texts)["input_ids"]

    def choose(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, features: ImageFeatures | None,
               image_index: torch.Tensor | None,
               questions: Sequence[tuple[Product, str] | None]) -> list[tuple[str, float, str] | None]:
        """For each example (row of ``input_ids``) asking ``questions[i]`` (product, attribute): (value,
        probability, path) of its most likely candidate, or None where it keeps the free answer (and where
        ``questions[i]`` is None). The path (:data:`mxt_sdk.types.DecidedBy`) is ``known_value``, or
        ``known_value+`` the priors that applied (``image_prior``, ``text_prior`` or both, in that order)
        where they changed which value won."""
        lists = [None if question is None else self.candidates(question[0].product_type, question[1])
                 for question in questions]
        example, labels, owners = [], [], []
        for row, found in enumerate(lists):
            if found is None:
                continue
            for position, ids in enumerate(found[1]):
                example.append(row)
                labels.append(ids)
                owners.append((row, position))
        if not labels:
            return [None] * len(questions)
        width = max(map(len, labels))
        device = input_ids.device
        label_tensor = torch.tensor([ids + [-100] * (width - len(ids)) for ids in labels], device=device)
        scores = self.model.answer_logprobs(input_ids, attention_mask, features, label_tensor,
                                            torch.tensor(example, device=device), image_index).float().tolist()
        by_row: dict[int, list[float]] = {}
        for (row, _), score in zip(owners, scores):
            by_row.setdefault(row, []).append(score)
        text_vectors: dict[int, dict[int, float]] = {}  # per product (by id): its questions share one vector
        chosen: list[tuple[str, float] | None] = []
        for row, found in enumerate(lists):
            if row not in by_row:
                chosen.append(None)
                continue
            question = questions[row]
            unaided = max(range(len(by_row[row])), key=by_row[row].__getitem__)
            priors = self._priors(question, found[0], features, image_index, row, text_vectors)
            if not priors:
                chosen.append((found[0][unaided], min(math.exp(by_row[row][unaided]), 1.0), "known_value"))
                continue
            combined = torch.tensor(by_row[row])
            for _, weight, log_probs in priors:
                combined = combined + weight * torch.tensor(log_probs)
            position = int(combined.argmax())
            path = "+".join(["known_value", *(name for name, _, _ in priors)]) if position != unaided else "known_value"
            chosen.append((found[0][position], float(torch.softmax(combined, 0)[position]), path))
        return chosen

    def _priors(self, question: tuple[Product, str], candidates: list[str], features: ImageFeatures | None,
                image_index: torch.Tensor | None, row: int,
                text_vectors: dict[int, dict[int, float]]) -> list[tuple[str, float, list[float]]]:
        """(name, weight, log-probabilities of ``candidates``) of each prior that applies to the question;
        ``text_vectors`` keeps each product's text-prior vector for its other questions."""
        found = []
        image = self._image_prior(question, candidates, features, image_index, row)
        if image is not None:
            found.append(("image_prior", self.prior_weight, image))
        if self.text_prior is not None:
            product, attribute = question
            if id(product) not in text_vectors:
                text_vectors[id(product)] = self.text_prior.vector(product_document(product))
            text = self.text_prior.log_probs(pair_key(product.product_type, attribute), text_vectors[id(product)],
                                             candidates)
            if text is not None:
                found.append(("text_prior", self.text_prior_weight, text))
        return found

    def _image_prior(self, question: tuple[Product, str], candidates: list[str], features: ImageFeatures | None,
               image_index: torch.Tensor | None, row: int) -> list[float] | None:
        """The image prior's log-probabilities of a known-value candidate list, when there is a prior for the
        pair and an image for the example; else None."""
        if self.image_prior is None or features is None or "global" not in features.features:
            return None
        product, attribute = question
        image = int(image_index[row]) if image_index is not None else row
        if not bool(features.has_image[image]):
            return None
        return self.image_prior.log_probs(pair_key(product.product_type, attribute),
                                          features.features["global"][image].cpu(), candidates)
