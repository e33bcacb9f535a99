"""``merge``: merge near-duplicate values of a (product type, attribute) pair into its most frequent
spelling.

:meth:`fit` walks each pair's values from most to least frequent (ties: alphabetical), and each value
either joins an earlier, more frequent *canonical* value or becomes one. A value joins a canonical
value when, in this order of preference:

1. their :func:`~mxt_normalizers._similarity.variant_key` is equal: same after case folding and
   removing spaces, hyphens and punctuation (``T-Shirt`` / ``t shirt`` / ``TShirt``);
2. (option ``plural``) their keys are equal after dropping one plural ``s`` (``Boots`` / ``Boot``);
3. their keys are within ``floor(max_edit_ratio * longer key length)`` edits, at most
   ``max_edits`` (``Leathr`` / ``Leather``), *and* the edit looks like a typo: both values have
   as many words, and every differing word is alphabetic and at least ``min_word_length`` long
   (so ``128 GB`` never joins ``256 GB``, nor ``Vitamin A`` ``Vitamin C``, nor ``335e`` ``335b``);
   the nearest canonical value wins, then the more frequent.

Values only join canonical values, never other joiners, so merges do not chain (``a``~``b``~``c``
does not pull ``c`` into ``a``). ``__call__`` maps a learned variant to its canonical value and
returns every other value unchanged (including values of pairs unseen in fit).
State: ``{"pairs": {product_type: {attribute: {variant: canonical}}}}``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

from pydantic import Field

from mxt_sdk import ComponentOptions

from mxt_normalizers._learned import PairNormalizer
from mxt_normalizers._similarity import NeighbourIndex, edit_distance, singular, typo_of, variant_key


class MergeNormalizer(PairNormalizer):
    """Maps near-duplicate spellings of a pair's values onto the most frequent one."""

    name = "merge"

    class Options(ComponentOptions):
        max_edit_ratio: float = Field(default=0.15, ge=0.0, le=0.5)
        max_edits: int = Field(default=2, ge=0, le=3)
        min_word_length: int = Field(default=4, ge=1)
        plural: bool = True

    def _edit_limit(self, length: int) -> int:
        return min(self.options.max_edits, math.floor(self.options.max_edit_ratio * length))

    def learn_pair(self, values: Mapping[str, int]) -> dict[str, str]:
        by_key: dict[str, str] = {}        # variant key -> canonical value
        by_singular: dict[str, str] = {}   # singular variant key -> canonical value
        rank: dict[str, int] = {}          # variant key -> 0 for the most frequent canonical value, ...
        index = NeighbourIndex()
        mapping: dict[str, str] = {}
        for value, _ in sorted(values.items(), key=lambda item: (-item[1], item[0])):
            key = variant_key(value)
            target = by_key.get(key)
            if target is None and self.options.plural:
                target = by_singular.get(singular(key))
            if target is None:
                target = self._nearest(value, key, by_key, rank, index)
            if target is None:
                by_key[key], rank[key] = value, len(rank)
                by_singular.setdefault(singular(key), value)
                index.add(key, self._edit_limit(len(key) + self.options.max_edits))
            elif target != value:
                mapping[value] = target
        return mapping

    def _nearest(self, value: str, key: str, by_key: dict[str, str], rank: dict[str, int],
                 index: NeighbourIndex) -> str | None:
        """The closest canonical value within the edit limit whose difference looks like a typo;
        ties go to the more frequent canonical value."""
        radius = self._edit_limit(len(key) + self.options.max_edits)
        if radius == 0:
            return None
        scored = []
        for candidate in index.candidates(key, radius):
            limit = self._edit_limit(max(len(key), len(candidate)))
            distance = edit_distance(key, candidate, limit)
            if distance <= limit and typo_of(value, by_key[candidate], self.options.min_word_length):
                scored.append((distance, rank[candidate], by_key[candidate]))
        return min(scored)[2] if scored else None

    def apply(self, value: str, pair_state: dict[str, str] | None) -> str | None:
        return pair_state.get(value, value) if pair_state else value
