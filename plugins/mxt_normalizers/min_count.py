"""``min_count``: drop the long tail of values, the ones seen fewer than ``min_count`` times (default 2)
in their (product type, attribute) pair during :meth:`fit`.

``__call__`` returns the value when it is in its pair's kept vocabulary and ``None`` (the label is
dropped) otherwise, including every value of a pair unseen in fit. Meant for training labels: used
on generations at extraction it would drop every zero-shot value. State: the kept vocabulary,
``{"pairs": {product_type: {attribute: [value, ...]}}}`` (sorted).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from mxt_sdk import ComponentOptions

from mxt_normalizers._learned import PairNormalizer


class MinCountNormalizer(PairNormalizer):
    """Keeps the values seen at least ``min_count`` times in their pair."""

    name = "min_count"

    class Options(ComponentOptions):
        min_count: int = Field(default=2, ge=1)

    def learn_pair(self, values: Mapping[str, int]) -> frozenset[str]:
        return frozenset(v for v, n in values.items() if n >= self.options.min_count)

    def apply(self, value: str, pair_state: frozenset[str] | None) -> str | None:
        return value if pair_state is not None and value in pair_state else None

    def encode_pair(self, pair_state: frozenset[str]) -> list[str]:
        return sorted(pair_state)

    def decode_pair(self, data: Any) -> frozenset[str]:
        return frozenset(data)
