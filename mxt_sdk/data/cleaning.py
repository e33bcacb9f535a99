"""Cleaning distantly supervised training labels with a sequence of normalizers.

* :func:`plan_cleaning` reads the labels of a catalog once, as ``(product type, attributes)`` rows
  that may stream from disk, and keeps only the count of each distinct (product type, attribute,
  value). Each normalizer is fitted on the counts *as the previous normalizers left them*
  (aggregated from the previous counts, never by re-reading the catalog), then applied to each
  distinct label. The result is a :class:`CleaningPlan`: what every distinct label becomes, and a
  summary of every step. Memory grows with the distinct labels, not with the products.
* :func:`clean_products` (training data in memory) and :func:`apply_normalizers` (validation /
  evaluation data; already fitted normalizers, nothing is fitted) are that plan applied to a list.

A ``None`` result drops the label. Values that are ``None`` ("known not to be stated") are labels
too, but no normalizer sees them: they pass through untouched. Every product comes back, in input
order, even when all its labels were dropped.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from mxt_sdk.plugins.components import Normalizer
from mxt_sdk.types import Product

__all__ = ["CleaningPlan", "CleaningResult", "LabelCounts", "plan_cleaning", "clean_products", "apply_normalizers"]

Label = tuple[str, str, str]  # (product type, attribute, value)
LabelRow = tuple[str, Mapping[str, "str | None"]]  # (product type, attributes) of one product


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


class CleaningPlan(NamedTuple):
    """What each distinct stated label of a catalog becomes (``results[label]``: the cleaned value, or
    None when dropped) and the summary described in :class:`CleaningResult` (empty ``steps`` when
    the normalizers were applied, not fitted)."""

    results: dict[Label, str | None]
    summary: dict[str, Any]

    def relabel(self, product_type: str, attributes: Mapping[str, str | None]) -> dict[str, str | None]:
        """``attributes`` of a product of the planned catalog, cleaned: each stated value replaced by
        its result, dropped ones left out, ``None`` ("not stated") kept; order kept."""
        out: dict[str, str | None] = {}
        for attribute, value in attributes.items():
            new = value if value is None else self.results[(product_type, attribute, value)]
            if value is None or new is not None:
                out[attribute] = new
        return out


class LabelCounts:
    """What :func:`plan_cleaning` reads from a catalog: the count of each distinct stated label, in
    order of first occurrence, and the numbers of products and of not-stated labels. Fed one product
    at a time (:meth:`add`), so it can be taken in a pass that does other work (staging the data)."""

    def __init__(self):
        self.counts: Counter[Label] = Counter()
        self.products = self.not_stated = 0

    @classmethod
    def of(cls, rows: Iterable[LabelRow]) -> "LabelCounts":
        counted = cls()
        for product_type, attributes in rows:
            counted.add(product_type, attributes)
        return counted

    def add(self, product_type: str, attributes: Mapping[str, str | None]) -> None:
        self.products += 1
        for attribute, value in attributes.items():
            if value is None:
                self.not_stated += 1
            else:
                self.counts[(product_type, attribute, value)] += 1

    def to_json(self) -> dict[str, Any]:
        return {"products": self.products, "not_stated": self.not_stated,
                "labels": [[*label, count] for label, count in self.counts.items()]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "LabelCounts":
        counted = cls()
        counted.products, counted.not_stated = data["products"], data["not_stated"]
        counted.counts.update({(pt, attribute, value): count for pt, attribute, value, count in data["labels"]})
        return counted


def plan_cleaning(rows: Iterable[LabelRow] | LabelCounts, normalizers: Sequence[Normalizer], *, fit: bool = True,
                  max_examples: int = 50) -> CleaningPlan:
    """One pass over ``rows`` (``(product type, attributes)`` per product; or their counts, taken
    already), then the normalizers in order on the label counts: fitted first when ``fit`` (in place: save their ``get_state()`` with
    the model), applied as they are otherwise. Raises ``TypeError`` naming the normalizer when one
    returns something other than text or None."""
    labels = rows if isinstance(rows, LabelCounts) else LabelCounts.of(rows)
    counts, products, not_stated = labels.counts, labels.products, labels.not_stated
    final: dict[Label, str | None] = {label: label[2] for label in counts}
    current, steps = counts, []
    for normalizer in normalizers:
        if fit:
            normalizer.fit(current)
        results = {label: _apply(normalizer, label) for label in current}
        after: Counter[Label] = Counter()  # in order of first occurrence, as a count over the products is
        for label, count in current.items():
            if results[label] is not None:
                after[(label[0], label[1], results[label])] += count
        if fit:
            steps.append(_step_summary(normalizer, current, results, after, max_examples))
        final = {label: None if value is None else results[(label[0], label[1], value)]
                 for label, value in final.items()}
        current = after
    summary = {"products": products, "not_stated": not_stated, "labels_before": sum(counts.values()),
               "labels_after": sum(current.values()), "steps": steps}
    return CleaningPlan(final, summary)


def clean_products(products: Iterable[Product], normalizers: Sequence[Normalizer], *,
                   max_examples: int = 50) -> CleaningResult:
    """Fit and apply ``normalizers`` in order to the attribute values of ``products`` (see
    :func:`plan_cleaning`)."""
    products = list(products)
    plan = plan_cleaning(((p.product_type, p.attributes) for p in products), normalizers,
                         max_examples=max_examples)
    return CleaningResult(_cleaned(products, plan), plan.summary)


def apply_normalizers(products: Iterable[Product], normalizers: Sequence[Normalizer]) -> list[Product]:
    """``products`` with every stated value passed through the (already fitted) ``normalizers`` in
    order; a ``None`` result drops the label. Nothing is fitted."""
    products = list(products)
    plan = plan_cleaning(((p.product_type, p.attributes) for p in products), normalizers, fit=False)
    return _cleaned(products, plan)


def _cleaned(products: Sequence[Product], plan: CleaningPlan) -> list[Product]:
    return [p.model_copy(update={"attributes": plan.relabel(p.product_type, p.attributes)}) for p in products]


def _apply(normalizer: Normalizer, label: Label) -> str | None:
    product_type, attribute, value = label
    result = normalizer(value, product_type=product_type, attribute=attribute)
    if result is not None and not isinstance(result, str):
        raise TypeError(
            f"Normalizer {normalizer.name!r} returned {type(result).__name__} for {value!r} "
            f"({product_type} / {attribute}); a normalizer returns text, or None to drop the value."
        )
    return result or None


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
