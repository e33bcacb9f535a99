"""What a model learned about its catalog: the (product type, attribute) pairs and their values.

Written by training, saved as ``metadata.json`` in the model folder, and used at extraction for
default attribute lists, the generation length bound, and the ``novel`` (zero-shot) flag.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from functools import cached_property

from pydantic import BaseModel, ConfigDict, Field


def pair_key(product_type: str, attribute: str) -> str:
    """The JSON key of a (product type, attribute) pair."""
    return f"{product_type}\t{attribute}"


def good_turing_new_share(counts: Iterable[int]) -> float | None:
    """Good-Turing estimate (Good, 1953) of the share of a pair's future values that training never saw,
    from how often each of its distinct values was seen: values seen exactly once over all values; None
    for no values. Near 0 for enumerations (a sleeve length), near 1 for names and codes that keep
    coming (brands, model names, part numbers)."""
    counts = list(counts)
    total = sum(counts)
    return sum(1 for count in counts if count == 1) / total if total else None


def new_value_shares(labels: Mapping[tuple[str, str, str], int]) -> dict[str, float]:
    """:func:`good_turing_new_share` of each pair of ``labels`` (``(product type, attribute, value)`` ->
    count), values compared case-folded."""
    pairs: dict[str, Counter] = {}
    for (product_type, attribute, value), count in labels.items():
        pairs.setdefault(pair_key(product_type, attribute), Counter())[value.casefold()] += count
    return {key: good_turing_new_share(counter.values()) for key, counter in pairs.items()}


class CatalogMetadata(BaseModel):
    """``values[pair_key] = {value: count}`` seen in training, the longest answer in tokens, and
    ``written[pair_key]``: how many of the pair's training values were written, as whole words, in
    their product's text (absent in models trained before it was counted)."""

    model_config = ConfigDict(extra="forbid")

    values: dict[str, dict[str, int]] = Field(default_factory=dict)
    max_answer_tokens: int | None = None
    written: dict[str, int] = Field(default_factory=dict)
    #: Good-Turing new-value share of each pair over its training labels before cleaning (a cleaning step
    #: such as ``min_count`` drops the values seen once that the estimate counts); absent in older models
    new_values: dict[str, float] = Field(default_factory=dict)

    def written_share(self, product_type: str, attribute: str) -> float | None:
        """The share of the pair's training values that its products' texts state; None when unknown."""
        key = pair_key(product_type, attribute)
        total = sum(self.values.get(key, {}).values())
        return self.written[key] / total if key in self.written and total else None

    def new_value_share(self, product_type: str, attribute: str) -> float | None:
        """The share of the pair's future values that training never saw (:func:`good_turing_new_share`
        of its labels before cleaning, or of its kept values in models that did not record it); None when
        the pair is unknown."""
        key = pair_key(product_type, attribute)
        if key in self.new_values:
            return self.new_values[key]
        return good_turing_new_share(self.values.get(key, {}).values())

    def attributes_for(self, product_type: str) -> list[str]:
        """Attributes seen in training for ``product_type``, sorted by name (stable across save/load)."""
        prefix = f"{product_type}\t"
        return sorted(key[len(prefix):] for key in self.values if key.startswith(prefix))

    def knows_value(self, product_type: str, attribute: str, value: str) -> bool | None:
        """Whether ``value`` was seen for the pair (case-insensitive); None if the pair is unknown."""
        vocabulary = self._folded_values.get(pair_key(product_type, attribute))
        return None if vocabulary is None else value.casefold() in vocabulary

    def knows_value_anywhere(self, value: str) -> bool:
        """Whether ``value`` was seen in training for any pair (case-insensitive)."""
        return value.casefold() in self._all_folded_values

    @cached_property
    def _all_folded_values(self) -> frozenset[str]:
        return frozenset().union(*self._folded_values.values())

    @cached_property
    def _folded_values(self) -> dict[str, frozenset[str]]:
        return {key: frozenset(v.casefold() for v in counts) for key, counts in self.values.items()}
