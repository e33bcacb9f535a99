"""What the normalizers that learn per (product type, attribute) pair share: grouping the fit counts
by pair, the "not fitted" guard, and the JSON shape of their state.

State shape: ``{"pairs": {product_type: {attribute: <per-pair state>}}}``, keys sorted, so equal
fits give byte-identical JSON.
"""
from __future__ import annotations

import abc
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from mxt_sdk import Normalizer
from mxt_sdk.errors import NotFittedError

Pair = tuple[str, str]


def group_by_pair(counts: Mapping[tuple[str, str, str], int]) -> dict[Pair, dict[str, int]]:
    """``{(product_type, attribute, value): n}`` -> ``{(product_type, attribute): {value: n}}``."""
    grouped: dict[Pair, dict[str, int]] = defaultdict(dict)
    for (product_type, attribute, value), count in counts.items():
        grouped[(product_type, attribute)][value] = grouped[(product_type, attribute)].get(value, 0) + count
    return dict(grouped)


class PairNormalizer(Normalizer, abc.ABC):
    """A normalizer whose learned state is one JSON-able object per (product type, attribute) pair.

    Subclasses implement :meth:`learn_pair` (from the pair's value counts) and :meth:`apply`; they
    may override :meth:`encode_pair` / :meth:`decode_pair` when their in-memory form is not JSON.
    Calling before :meth:`fit` or :meth:`set_state` raises :class:`NotFittedError`.
    """

    def __init__(self, options):
        super().__init__(options)
        self._pairs: dict[Pair, Any] | None = None

    @abc.abstractmethod
    def learn_pair(self, values: Mapping[str, int]) -> Any:
        """The state of one pair, from ``{value: count}``."""

    @abc.abstractmethod
    def apply(self, value: str, pair_state: Any | None) -> str | None:
        """Normalize ``value`` with its pair's state (``None`` for a pair unseen in fit)."""

    def encode_pair(self, pair_state: Any) -> Any:
        return pair_state

    def decode_pair(self, data: Any) -> Any:
        return data

    def fit(self, counts: Mapping[tuple[str, str, str], int]) -> None:
        self._pairs = {pair: self.learn_pair(values) for pair, values in group_by_pair(counts).items()}

    def __call__(self, value: str, *, product_type: str, attribute: str) -> str | None:
        if self._pairs is None:
            raise NotFittedError(
                f"The {self.name!r} normalizer learns from the training labels: call fit(counts) "
                "(mxt_sdk.data.cleaning.clean_products does) or set_state(saved) before using it."
            )
        return self.apply(value, self._pairs.get((product_type, attribute)))

    def get_state(self) -> dict[str, Any]:
        if self._pairs is None:
            return {}
        nested: dict[str, dict[str, Any]] = {}
        for (product_type, attribute) in sorted(self._pairs):
            nested.setdefault(product_type, {})[attribute] = self.encode_pair(self._pairs[(product_type, attribute)])
        return {"pairs": nested}

    def set_state(self, state: Mapping[str, Any]) -> None:
        if "pairs" not in state:
            self._pairs = None
            return
        self._pairs = {
            (product_type, attribute): self.decode_pair(data)
            for product_type, attributes in state["pairs"].items()
            for attribute, data in attributes.items()
        }
