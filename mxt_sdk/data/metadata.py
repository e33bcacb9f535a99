"""What a model learned about its catalog: the (product type, attribute) pairs and their values.

Written by training, saved as ``metadata.json`` in the model folder, and used at extraction for
default attribute lists, the generation length bound, and the ``novel`` (zero-shot) flag.
"""
from __future__ import annotations

from functools import cached_property

from pydantic import BaseModel, ConfigDict, Field


def pair_key(product_type: str, attribute: str) -> str:
    """The JSON key of a (product type, attribute) pair."""
    return f"{product_type}\t{attribute}"


class CatalogMetadata(BaseModel):
    """``values[pair_key] = {value: count}`` seen in training, the longest answer in tokens, and
    ``written[pair_key]``: how many of the pair's training values were written, as whole words, in
    their product's text (absent in models trained before it was counted)."""

    model_config = ConfigDict(extra="forbid")

    values: dict[str, dict[str, int]] = Field(default_factory=dict)
    max_answer_tokens: int | None = None
    written: dict[str, int] = Field(default_factory=dict)

    def written_share(self, product_type: str, attribute: str) -> float | None:
        """The share of the pair's training values that its products' texts state; None when unknown."""
        key = pair_key(product_type, attribute)
        total = sum(self.values.get(key, {}).values())
        return self.written[key] / total if key in self.written and total else None

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
