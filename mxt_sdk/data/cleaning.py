"""Cleaning distantly supervised training labels with a sequence of normalizers.

* :func:`clean_products` (training data) runs the normalizers as a pipeline over every product's
  attribute values: each normalizer is fitted on the counts of the values *as the previous
  normalizers left them*, then applied. It returns the products and a summary of every step.
* :func:`apply_normalizers` (validation / evaluation data) applies already fitted normalizers in
  the same order, fitting nothing.

A ``None`` result drops the label. Values that are ``None`` ("known not to be stated") are labels
too, but no normalizer sees them: they pass through untouched. Every product comes back, in input
order, even when all its labels were dropped.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from mxt_sdk.plugins.components import Normalizer
from mxt_sdk.types import Product

__all__ = ["CleaningResult", "clean_products", "apply_normalizers"]

Label = tuple[str, str, str]  # (product type, attribute, value)


class CleaningResult(NamedTuple):
    """The cleaned products (input order) and a JSON-able summary of every step; unpacks as
    ``products, summary = clean_products(...)``.

    ``summary`` = ``{"products": n, "not_stated": n, "labels_before": n, "labels_after": n,
    "steps": [step, ...]}``; each step = ``{"normalizer": name, "labels_before", "labels_after",
    "distinct_before", "distinct_after", "changed", "dropped", "changes": {product_type:
    {attribute: {value: new value}}}, "drops": {product_type: {attribute: [value, ...]}}}``.
    ``labels_*`` count stated values (``None`` excluded), ``distinct_*`` distinct (product type,
    attribute, value) triples, ``changed`` / ``dropped`` labels. ``changes`` and ``drops`` list
    up to ``max_examples`` distinct values each, most frequent first.
    """

    products: list[Product]
    summary: dict[str, Any]


def clean_products(products: Iterable[Product], normalizers: Sequence[Normalizer], *,
                   max_examples: int = 50) -> CleaningResult:
    """Fit and apply ``normalizers`` in order to the attribute values of ``products``.

    The normalizers are fitted in place (save their ``get_state()`` with the model; reuse them on
    other data with :func:`apply_normalizers`). Raises ``TypeError`` naming the normalizer when one
    returns something other than text or None.
    """
    products = list(products)
    labels = [dict(p.attributes) for p in products]
    before = _counts(products, labels)
    steps = []
    for normalizer in normalizers:
        counts = _counts(products, labels)
        normalizer.fit(counts)
        results = {label: _apply(normalizer, label) for label in counts}
        labels = [_relabel(p.product_type, attrs, results) for p, attrs in zip(products, labels)]
        steps.append(_step_summary(normalizer, counts, results, _counts(products, labels), max_examples))
    summary = {
        "products": len(products),
        "not_stated": sum(v is None for attrs in labels for v in attrs.values()),
        "labels_before": sum(before.values()),
        "labels_after": sum(_counts(products, labels).values()),
        "steps": steps,
    }
    return CleaningResult(_with_labels(products, labels), summary)


def apply_normalizers(products: Iterable[Product], normalizers: Sequence[Normalizer]) -> list[Product]:
    """``products`` with every stated value passed through the (already fitted) ``normalizers`` in
    order; a ``None`` result drops the label. Nothing is fitted."""
    products = list(products)
    labels = [dict(p.attributes) for p in products]
    for normalizer in normalizers:
        results = {label: _apply(normalizer, label) for label in _counts(products, labels)}
        labels = [_relabel(p.product_type, attrs, results) for p, attrs in zip(products, labels)]
    return _with_labels(products, labels)


def _with_labels(products: Sequence[Product], labels: Sequence[dict[str, str | None]]) -> list[Product]:
    return [p.model_copy(update={"attributes": attrs}) for p, attrs in zip(products, labels)]


def _counts(products: Sequence[Product], labels: Sequence[dict[str, str | None]]) -> Counter[Label]:
    """How often each (product type, attribute, value) occurs among the stated values."""
    return Counter((p.product_type, attribute, value)
                   for p, attrs in zip(products, labels)
                   for attribute, value in attrs.items() if value is not None)


def _apply(normalizer: Normalizer, label: Label) -> str | None:
    product_type, attribute, value = label
    result = normalizer(value, product_type=product_type, attribute=attribute)
    if result is not None and not isinstance(result, str):
        raise TypeError(
            f"Normalizer {normalizer.name!r} returned {type(result).__name__} for {value!r} "
            f"({product_type} / {attribute}); a normalizer returns text, or None to drop the value."
        )
    return result or None


def _relabel(product_type: str, attrs: dict[str, str | None],
             results: dict[Label, str | None]) -> dict[str, str | None]:
    """``attrs`` with each stated value replaced by its result; dropped values leave the dict."""
    out: dict[str, str | None] = {}
    for attribute, value in attrs.items():
        new = value if value is None else results[(product_type, attribute, value)]
        if value is None or new is not None:
            out[attribute] = new
    return out


def _step_summary(normalizer: Normalizer, counts: Counter[Label], results: dict[Label, str | None],
                  after: Counter[Label], max_examples: int) -> dict[str, Any]:
    changed = [label for label in counts if results[label] not in (None, label[2])]
    dropped = [label for label in counts if results[label] is None]
    changes: dict[str, dict[str, dict[str, str]]] = {}
    for label in _most_frequent(changed, counts, max_examples):
        product_type, attribute, value = label
        changes.setdefault(product_type, {}).setdefault(attribute, {})[value] = results[label]
    drops: dict[str, dict[str, list[str]]] = {}
    for product_type, attribute, value in _most_frequent(dropped, counts, max_examples):
        drops.setdefault(product_type, {}).setdefault(attribute, []).append(value)
    return {
        "normalizer": normalizer.name,
        "labels_before": sum(counts.values()),
        "labels_after": sum(after.values()),
        "distinct_before": len(counts),
        "distinct_after": len(after),
        "changed": sum(counts[label] for label in changed),
        "dropped": sum(counts[label] for label in dropped),
        "changes": changes,
        "drops": drops,
    }


def _most_frequent(labels: list[Label], counts: Counter[Label], limit: int) -> list[Label]:
    return sorted(labels, key=lambda label: (-counts[label], label))[:limit]
