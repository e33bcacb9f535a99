"""The "one model per product type" ablation: train a model on each product type's training products,
answer each test product with its type's model, and evaluate the merged predictions as one run.

Contract of :func:`train_and_evaluate_per_type`:

* each product type with labelled training products gets its own model, trained on those products
  (and on its type's validation products, if any) for ``steps × its share of the training
  examples`` (one example per labelled attribute; the shares add up to ``steps``, so the types
  together see as many examples as one model for all), from the same seed; a seconds cap, if any, is
  shared the same way;
* every labelled test row is accounted for: a product whose type has no model (no training products,
  or its training failed) gets error rows without a value, which count as misses; the failure is
  listed in the run's ``notes``;
* the merged rows are scored by the same code as :meth:`Extractor.evaluate` (each row with the
  normalizers and training metadata of the model that answered it) and written as one report.
"""
from __future__ import annotations

import logging
import re
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from mxt_sdk.config import MXTConfig
from mxt_sdk.data.readers import REJECTED_FILE, load_products
from mxt_sdk.errors import DataFileError, MXTError
from mxt_sdk.evaluation.report import build_report, score, write_report
from mxt_sdk.evaluation.thresholds import Thresholds
from mxt_sdk.experiments.runs import AblationData, VariantRun, fit_budgeted, stop_note
from mxt_sdk.types import Prediction, Product

__all__ = ["split_budget", "split_steps", "train_and_evaluate_per_type"]

log = logging.getLogger("mxt_sdk.per_type")


def _by_type(products: list[Product]) -> dict[str, list[Product]]:
    groups: dict[str, list[Product]] = defaultdict(list)
    for product in products:
        groups[product.product_type].append(product)
    return dict(groups)


def split_budget(seconds: float | None, examples: dict[str, int]) -> dict[str, float | None]:
    """Each type's share of ``seconds``, in proportion to its example count (``None``: no budget)."""
    total = sum(examples.values())
    return {kind: None if seconds is None else seconds * count / total for kind, count in examples.items()}


def split_steps(steps: int | None, examples: dict[str, int]) -> dict[str, int | None]:
    """Each type's whole share of ``steps`` in proportion to its example count, the remainders going to
    the largest fractions (ties by name), at least 1 each; ``None``: the config's training length."""
    if steps is None:
        return {kind: None for kind in examples}
    total = sum(examples.values())
    exact = {kind: steps * count / total for kind, count in examples.items()}
    shares = {kind: int(value) for kind, value in exact.items()}
    for kind in sorted(exact, key=lambda k: (shares[k] - exact[k], k))[:steps - sum(shares.values())]:
        shares[kind] += 1
    return {kind: max(1, share) for kind, share in shares.items()}


def _folder_name(product_type: str, taken: set[str]) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", product_type).strip("._") or "type"
    while name in taken:
        name += "_"
    taken.add(name)
    return name


def _missing_model(products: list[Product], reason: str) -> list[dict[str, Any]]:
    predictions = [Prediction(product_id=p.id, product_type=p.product_type, attribute=attribute, error=reason)
                   for p in products for attribute in p.attributes]
    return score(products, predictions, None, [])


def _train_all(config: MXTConfig, train: list[Product], val: list[Product] | None, folder: Path,
               image_root: Path, steps: int | None, max_seconds: float | None, seed: int):
    """``(models by type, parts summary, notes)`` for every type with labelled training products."""
    groups = {kind: [p for p in products if p.attributes] for kind, products in _by_type(train).items()}
    examples = {kind: sum(len(p.attributes) for p in products) for kind, products in groups.items() if products}
    if not examples:
        raise DataFileError("per-type: no training product has attribute values.")
    val_groups = _by_type(val) if val else {}
    budgets, caps = split_steps(steps, examples), split_budget(max_seconds, examples)
    models, parts, notes, taken = {}, {}, [], set()
    for kind in sorted(examples, key=lambda k: (-examples[k], k)):
        part = parts[kind] = {"examples": examples[kind], "budget_steps": budgets[kind],
                              "max_seconds": caps[kind], "folder": _folder_name(kind, taken)}
        try:
            extractor, result, spent = fit_budgeted(config, groups[kind], folder / part["folder"],
                                                    val=val_groups.get(kind), image_root=image_root,
                                                    steps=budgets[kind], max_seconds=caps[kind], seed=seed)
        except Exception as exc:  # noqa: BLE001 -- one type's failure costs that type's rows only
            part["error"] = f"{type(exc).__name__}: {exc}"
            notes.append(f"product type {kind!r}: training failed ({part['error']}); its test rows are errors")
            log.warning("per-type: training for %r failed: %s", kind, part["error"])
            continue
        models[kind] = extractor
        part.update(steps=result.steps, train_seconds=round(spent, 2))
        notes += [f"product type {kind!r}: {note}" for note in stop_note(result)]
    if not models:
        raise MXTError("per-type: no product type could be trained: " + "; ".join(notes))
    return models, parts, notes


def _merged_rows(models: dict[str, Any], test: list[Product], image_root: Path,
                 notes: list[str]) -> list[dict[str, Any]]:
    """Scored rows of every labelled test product, in test-file order."""
    rows_of: dict[int, list[dict[str, Any]]] = {}
    indexed: dict[str, list[tuple[int, Product]]] = defaultdict(list)
    for index, product in enumerate(test):
        indexed[product.product_type].append((index, product))
    for kind, members in indexed.items():
        products = [p for _, p in members]
        extractor = models.get(kind)
        if extractor is None:
            reason = f"per-type: no model for product type {kind!r}"
            notes.append(f"product type {kind!r}: no model, {len(products)} test products answered with errors")
            rows = _missing_model(products, reason)
        else:
            predictions = extractor.extract(products, lambda p: list(p.attributes), image_root=image_root)
            rows = score(products, predictions, extractor.metadata, extractor.normalizers)
        position = 0
        for index, product in members:
            rows_of[index] = rows[position:position + len(product.attributes)]
            position += len(product.attributes)
    return [row for index in sorted(rows_of) for row in rows_of[index]]


def _image_root(config: MXTConfig, images: Path | None, data_file: Path) -> Path:
    """Where relative image paths resolve, as :meth:`Extractor.fit` / ``evaluate`` choose it."""
    if images is not None:
        return Path(images)
    if config.extraction.image_root is not None:
        return Path(config.extraction.image_root)
    return Path(data_file).parent


def train_and_evaluate_per_type(config: MXTConfig, data: AblationData, folder: Path, report_path: Path, *,
                                steps: int | None, max_seconds: float | None = None, seed: int,
                                precision: float = 0.9) -> VariantRun:
    """Train one model per product type under ``folder/<type>/`` and write the merged evaluation to
    ``report_path``; returns an :class:`mxt_sdk.experiments.runs.VariantRun` (steps summed over the types)."""
    folder.mkdir(parents=True, exist_ok=True)
    rejected = folder / REJECTED_FILE
    rejected.unlink(missing_ok=True)
    train = load_products(data.train, "train", None, rejected)
    val = load_products(data.val, "val", None, rejected) if data.val is not None else None
    test = [p for p in load_products(data.test, "evaluation") if p.attributes]
    if not test:
        raise DataFileError("No product in the evaluation data has attribute values to compare with.")
    started = time.perf_counter()
    models, parts, notes = _train_all(config, train, val, folder, _image_root(config, data.images, data.train),
                                      steps, max_seconds, seed)
    train_seconds = time.perf_counter() - started
    started = time.perf_counter()
    test_root = _image_root(config, data.images, data.test)
    rows = _merged_rows(models, test, test_root, notes)
    thresholds = Thresholds(pairs={k: v for model in models.values() for k, v in model.thresholds.pairs.items()})
    report = build_report(rows, thresholds, precision)
    write_report(report, rows, report_path, image_root=Path(test_root) if test_root is not None else None)
    return VariantRun(report, report_path, sum(p.get("steps", 0) for p in parts.values()), train_seconds,
                      time.perf_counter() - started, notes, parts)
