"""Choosing among known values: closed-vocabulary answers for the pairs whose values are a short list.

Many attributes are enumerations (sleeve length, pattern, heel height, an animal theme): training saw
every value the catalog uses. For a (product type, attribute) pair with at most ``max_values`` known
values, :class:`KnownValueChooser` scores each known value, and the none answer, as a whole answer
under the model (the probability greedy decoding would give it) and answers the most likely one; its
confidence is that probability. Pairs with more values (brands, materials of a long tail) and pairs
training never saw keep the free greedy answer, and so does a free answer written in the product's
text (the engine does not ask for those), so values new to training stay possible where the text
states them. Each example's prompt is encoded once; all candidates of a batch are scored in one
decoder pass.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from mxt_sdk.data.metadata import CatalogMetadata, pair_key
from mxt_sdk.model.mxt import ImageFeatures, MXTModel

__all__ = ["KnownValueChooser"]


class KnownValueChooser:
    """Answers pairs with at most ``max_values`` known values by the most likely of them."""

    def __init__(self, model: MXTModel, tokenizer: Any, metadata: CatalogMetadata, none_answer: str,
                 max_values: int):
        self.model, self.tokenizer, self.metadata = model, tokenizer, metadata
        self.none_answer, self.max_values = none_answer, max_values
        self._candidates: dict[str, tuple[list[str], list[list[int]]] | None] = {}

    def candidates(self, product_type: str, attribute: str) -> tuple[list[str], list[list[int]]] | None:
        """The pair's known values and the none answer with their token ids; None when the pair is unknown
        or has more than ``max_values`` values."""
        key = pair_key(product_type, attribute)
        if key not in self._candidates:
            values = sorted(self.metadata.values.get(key, {}))
            if not values or len(values) > self.max_values:
                self._candidates[key] = None
            else:
                texts = [*values, self.none_answer] if self.none_answer not in values else values
                self._candidates[key] = (texts, self.tokenizer(texts)["input_ids"])
        return self._candidates[key]

    def choose(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, features: ImageFeatures | None,
               image_index: torch.Tensor | None,
               pairs: Sequence[tuple[str, str] | None]) -> list[tuple[str, float] | None]:
        """For each example (row of ``input_ids``) of pair ``pairs[i]``: (value, probability) of its most
        likely candidate, or None where the pair keeps the free answer (and where ``pairs[i]`` is None)."""
        lists = [None if pair is None else self.candidates(*pair) for pair in pairs]
        example, labels, owners = [], [], []
        for row, found in enumerate(lists):
            if found is None:
                continue
            for position, ids in enumerate(found[1]):
                example.append(row)
                labels.append(ids)
                owners.append((row, position))
        if not labels:
            return [None] * len(pairs)
        width = max(map(len, labels))
        device = input_ids.device
        label_tensor = torch.tensor([ids + [-100] * (width - len(ids)) for ids in labels], device=device)
        scores = self.model.answer_logprobs(input_ids, attention_mask, features, label_tensor,
                                            torch.tensor(example, device=device), image_index).float().tolist()
        best: dict[int, tuple[float, int]] = {}
        for (row, position), score in zip(owners, scores):
            if row not in best or score > best[row][0]:
                best[row] = (score, position)
        chosen: list[tuple[str, float] | None] = []
        for row, found in enumerate(lists):
            if row not in best:
                chosen.append(None)
                continue
            score, position = best[row]
            chosen.append((found[0][position], min(math.exp(score), 1.0)))
        return chosen
