"""Evaluation runs: score predictions against labelled products, build the report, write its files.

Files written next to ``report.json``: ``<stem>.predictions.jsonl`` (one row per labelled pair with
everything the numbers are computed from), ``<stem>.md`` (a summary), precision-recall curve
PNGs for the largest pairs, and ``<stem>.html`` (everything above plus a gallery of the test products). Every number of the report can be recomputed from the predictions file.
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mxt_sdk.data.metadata import CatalogMetadata
from mxt_sdk.evaluation.metrics import (Scored, group_by_pair, micro_macro, pair_metrics, threshold_sweep,
                                        unstated_pairs, values_match, written_in)
from mxt_sdk.evaluation.html_report import write_html
from mxt_sdk.evaluation.plots import precision_recall_curve
from mxt_sdk.evaluation.thresholds import Thresholds
from mxt_sdk.plugins.components import Normalizer
from mxt_sdk.storage import write_json
from mxt_sdk.types import Prediction, Product

MATCHING_RULE = ("normalized exact match: gold and predicted values pass through the model's fitted "
                 "normalizers (a normalizer that would drop a value leaves it unchanged), then NFKC, "
                 "case folding, whitespace collapsing and stripping of wrapping punctuation (quotes, "
                 "brackets, , ; : ! ? and a . that does not start a number); signs and symbols are kept, and "
                 "the numbers with their signs, leading dots and % (and + / # after a word) must be the "
                 "same before the normalizers too, so -20 != 20, 10% != 10, .5 != 5, C++ != C")
SLICES = ("zero_shot", "new_value", "value_absent", "with_image", "without_image")
#: gold values by whether training saw them for their pair (``seen`` / ``unseen``, the zero-shot rows)
#: and whether the product's text states them (``written`` / ``absent``): copying shows in
#: ``unseen_written``, reading the photo in ``*_absent``
NOVELTY_SLICES = ("seen_written", "seen_absent", "unseen_written", "unseen_absent")


def _normalize(value: str | None, product_type: str, attribute: str,
               normalizers: Sequence[Normalizer]) -> str | None:
    for normalizer in normalizers:
        if value is None:
            return None
        value = normalizer(value, product_type=product_type, attribute=attribute) or value
    return value


def score(products: Sequence[Product], predictions: Sequence[Prediction], metadata: CatalogMetadata | None,
          normalizers: Sequence[Normalizer]) -> list[dict[str, Any]]:
    """One row per labelled (product, attribute), in order; ``predictions`` must follow the products'
    ``attributes`` order (as :meth:`Extractor.evaluate` asks them)."""
    rows, position = [], 0
    for product in products:
        for attribute, raw_gold in product.attributes.items():
            prediction = predictions[position]
            position += 1
            if (prediction.product_id, prediction.attribute) != (product.id, attribute):
                raise ValueError(f"predictions are out of step with the labelled products at {product.id!r} "
                                 f"/ {attribute!r}; ask them in the products' attribute order")
            gold = _normalize(raw_gold, product.product_type, attribute, normalizers)
            value = _normalize(prediction.value, product.product_type, attribute, normalizers)
            known = metadata.knows_value(product.product_type, attribute, gold) if metadata and gold else None
            rows.append({
                "product_id": product.id, "product_type": product.product_type, "attribute": attribute,
                "title": product.title, "value": value, "raw_value": prediction.raw_value, "confidence": prediction.confidence,
                "accepted": prediction.accepted, "gold": gold, "raw_gold": raw_gold,
                "truncated": prediction.truncated, "threshold_source": prediction.threshold_source,
                "decided_by": prediction.decided_by,
                "correct": values_match(value, gold, raw_predicted=prediction.value, raw_gold=raw_gold),
                "zero_shot": gold is not None and known is not True,
                "new_value": gold is not None and not (metadata and metadata.knows_value_anywhere(gold)),
                "value_absent": gold is not None and not (written_in(gold, product.text)
                                                          or written_in(raw_gold, product.text)),
                "has_image": product.image is not None, "image_used": prediction.image_used,
                "image": product.image, "error": prediction.error,
            })
    return rows


def scored(row: dict[str, Any], thresholds: Thresholds | None = None) -> Scored:
    """A :func:`score` row as a :class:`Scored` carrying its ``correct`` decision and, given
    ``thresholds``, the threshold of its decision path where that differs from its pair's."""
    own = None
    if thresholds is not None and row.get("decided_by") is not None:
        path = thresholds.threshold_for(row["product_type"], row["attribute"], row["decided_by"])
        own = path if path != thresholds.threshold_for(row["product_type"], row["attribute"]) else None
    return Scored(row["value"], row["gold"], row["confidence"], row["correct"], threshold=own)


def group_by_path(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[Scored]]:
    """:func:`score` rows with a decision path as :class:`Scored`, grouped by (product type, attribute, path)."""
    grouped: dict[tuple[str, str, str], list[Scored]] = {}
    for row in rows:
        if row.get("decided_by") is not None:
            grouped.setdefault((row["product_type"], row["attribute"], row["decided_by"]), []).append(scored(row))
    return grouped


def _accepts(thresholds: Thresholds, row: dict[str, Any]) -> bool:
    return thresholds.accepts(row["product_type"], row["attribute"], row["confidence"], row.get("decided_by"))


def _slice(rows: list[dict[str, Any]], thresholds: Thresholds) -> dict[str, Any]:
    stated = [r for r in rows if r["gold"] is not None]
    correct = [r for r in stated if r["correct"]]
    accepted = [r for r in correct if _accepts(thresholds, r)]
    n = len(stated)
    return {"support": n, "correct": len(correct), "accuracy": len(correct) / n if n else 0.0,
            "accepted_correct": len(accepted), "recall_at_thresholds": len(accepted) / n if n else 0.0}


def novelty_slice(row: dict[str, Any]) -> str | None:
    """The :data:`NOVELTY_SLICES` name of a :func:`score` row; None without a gold value."""
    if row["gold"] is None:
        return None
    return f"{'unseen' if row['zero_shot'] else 'seen'}_{'absent' if row['value_absent'] else 'written'}"


def novelty_slices(rows: list[dict[str, Any]], thresholds: Thresholds) -> dict[str, Any]:
    """:data:`NOVELTY_SLICES` over all rows and per (product type, attribute) (support and correct only)."""
    def split(selected: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        parts: dict[str, list[dict[str, Any]]] = {name: [] for name in NOVELTY_SLICES}
        for row in selected:
            if (name := novelty_slice(row)) is not None:
                parts[name].append(row)
        return parts

    by_pair: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_pair.setdefault(f"{row['product_type']} / {row['attribute']}", []).append(row)
    return {
        "overall": {name: _slice(part, thresholds) for name, part in split(rows).items()},
        "by_pair": {pair: {name: {"support": len(part), "correct": sum(r["correct"] for r in part)}
                           for name, part in split(pair_rows).items() if part}
                    for pair, pair_rows in sorted(by_pair.items())},
    }


def decision_paths(rows: list[dict[str, Any]], thresholds: Thresholds) -> dict[str, Any]:
    """Answers per path that decided them (``Prediction.decided_by``; error rows left out), with how many
    were correct where a gold value is stated, and the precision of the values each path gave that pass
    their pair's threshold (a value where no gold is stated counts as wrong, as in micro precision): over
    all rows and per (product type, attribute)."""
    def count(selected: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        paths: dict[str, dict[str, Any]] = {}
        for row in selected:
            if row.get("decided_by") is None:
                continue
            entry = paths.setdefault(row["decided_by"], {"answers": 0, "stated": 0, "correct": 0,
                                                         "accepted": 0, "accepted_correct": 0})
            entry["answers"] += 1
            entry["stated"] += row["gold"] is not None
            entry["correct"] += bool(row["gold"] is not None and row["correct"])
            if row["value"] is not None and _accepts(thresholds, row):
                entry["accepted"] += 1
                entry["accepted_correct"] += bool(row["correct"])
        for entry in paths.values():
            entry["precision"] = entry["accepted_correct"] / entry["accepted"] if entry["accepted"] else None
        return dict(sorted(paths.items()))

    by_pair: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_pair.setdefault(f"{row['product_type']} / {row['attribute']}", []).append(row)
    return {"overall": count(rows), "by_pair": {pair: count(pair_rows) for pair, pair_rows in sorted(by_pair.items())}}


def build_report(rows: list[dict[str, Any]], thresholds: Thresholds, precision: float) -> dict[str, Any]:
    """Per-pair metrics, micro/macro averages and the slices (see :mod:`mxt_sdk.evaluation.metrics`)."""
    by_pair = group_by_pair((r["product_type"], r["attribute"], scored(r, thresholds)) for r in rows)
    pairs = sorted((pair_metrics(pt, attr, pair_rows, thresholds.threshold_for(pt, attr), precision)
                    for (pt, attr), pair_rows in by_pair.items()), key=lambda m: (-m.support, m.product_type, m.attribute))
    slices = {
        "zero_shot": _slice([r for r in rows if r["zero_shot"]], thresholds),
        "new_value": _slice([r for r in rows if r["new_value"]], thresholds),
        "value_absent": _slice([r for r in rows if r["value_absent"]], thresholds),
        "with_image": _slice([r for r in rows if r["has_image"]], thresholds),
        "without_image": _slice([r for r in rows if not r["has_image"]], thresholds),
    }
    slices["zero_shot"]["correct_examples"] = [
        {k: r[k] for k in ("product_id", "product_type", "attribute", "value")}
        for r in rows if r["zero_shot"] and r["correct"]][:25]
    by_attribute: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_attribute.setdefault(row["attribute"], []).append(row)
    return {
        "matching_rule": MATCHING_RULE, "target_precision": precision,
        "thresholds": {"calibrated_for": thresholds.target_precision, "default": thresholds.default,
                       "min_support": thresholds.min_support},
        "rows": len(rows), "errors": sum(r["error"] is not None for r in rows),
        "truncated": sum(bool(r.get("truncated")) for r in rows),
        "pairs": [{**p.as_dict(), "threshold_source": thresholds.lookup(p.product_type, p.attribute)[1]}
                  for p in pairs],
        **micro_macro(pairs, by_pair),
        "unstated_pairs": unstated_pairs(pairs, by_pair),
        "decided_by": decision_paths(rows, thresholds),
        "slices": slices,
        "seen_and_written": novelty_slices(rows, thresholds),
        "value_absent_accuracy_by_attribute": {
            attribute: _slice([r for r in attr_rows if r["value_absent"]], thresholds)["accuracy"]
            for attribute, attr_rows in sorted(by_attribute.items())},
    }


def markdown(report: dict[str, Any], top: int = 20) -> str:
    """A short human summary of :func:`build_report`'s output."""
    p, unstated = report["target_precision"], report["unstated_pairs"]
    lines = [f"# Evaluation report", "", f"Rows: {report['rows']} (errors: {report['errors']}, answers cut at "
             f"the token limit: {report['truncated']}). Matching rule: {report['matching_rule']}.", "",
             f"Macro averages over the {report['macro']['pairs']} pairs with a stated gold value; "
             f"{unstated['count']} pairs with none got {unstated['predictions']} predictions with a value "
             f"({unstated['accepted']} accepted), all false positives.", "",
             f"| averages | precision | recall | F1 | recall@{p:.0%}P |", "|---|---|---|---|---|",
             f"| micro | {report['micro']['precision']:.3f} | {report['micro']['recall']:.3f} | "
             f"{report['micro']['f1']:.3f} | |",
             f"| macro | {report['macro']['precision']:.3f} | {report['macro']['recall']:.3f} | "
             f"{report['macro']['f1']:.3f} | {report['macro']['recall_at_p']:.3f} |", "",
             "| slice | support | correct | accuracy |", "|---|---|---|---|"]
    for name in SLICES:
        s = report["slices"][name]
        lines.append(f"| {name} | {s['support']} | {s['correct']} | {s['accuracy']:.3f} |")
    lines += ["", "| gold value (training saw it for the pair / the text states it) | support | correct | accuracy |",
              "|---|---|---|---|"]
    for name, s in report["seen_and_written"]["overall"].items():
        lines.append(f"| {name.replace('_', ' and ')} | {s['support']} | {s['correct']} | {s['accuracy']:.3f} |")
    lines += ["", "| decided by | answers | with a stated gold | correct | accepted values | precision of those |",
              "|---|---|---|---|---|---|"]
    for path, n in report["decided_by"]["overall"].items():
        precision = "-" if n.get("precision") is None else f"{n['precision']:.3f}"
        lines.append(f"| {path} | {n['answers']} | {n['stated']} | {n['correct']} | {n.get('accepted', '-')} | "
                     f"{precision} |")
    lines += ["", f"| product type | attribute | support | P | R | F1 | recall@{p:.0%}P | threshold@P |",
              "|---|---|---|---|---|---|---|---|"]
    for m in report["pairs"][:top]:
        threshold = "-" if m["threshold_at_p"] is None else f"{m['threshold_at_p']:.3f}"
        lines.append(f"| {m['product_type']} | {m['attribute']} | {m['support']} | {m['precision']:.3f} | "
                     f"{m['recall']:.3f} | {m['f1']:.3f} | {m['recall_at_p']:.3f} | {threshold} |")
    examples = report["slices"]["zero_shot"]["correct_examples"]
    if examples:
        lines += ["", "Zero-shot values generated correctly (never seen in training for their pair):", ""]
        lines += [f"- {e['product_type']} / {e['attribute']}: **{e['value']}** ({e['product_id']})"
                  for e in examples[:10]]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], rows: list[dict[str, Any]], path: Path, plots: int = 6,
                 image_root: Path | None = None) -> dict[str, Path]:
    """Write report JSON, predictions JSONL, Markdown summary, PR-curve PNGs and the self-contained
    HTML page (:mod:`mxt_sdk.evaluation.html_report`, photos read under ``image_root``); return their paths."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stem = path.with_suffix("")
    written = {"report": path, "predictions": Path(f"{stem}.predictions.jsonl"), "markdown": Path(f"{stem}.md")}
    with open(written["predictions"], "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    written["markdown"].write_text(markdown(report), encoding="utf-8")
    by_pair = group_by_pair((r["product_type"], r["attribute"], scored(r)) for r in rows)
    for index, pair in enumerate(report["pairs"][:plots]):
        key = (pair["product_type"], pair["attribute"])
        points = [(r, p) for _, p, r in threshold_sweep(by_pair[key])]
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{key[0]}__{key[1]}")
        plot = Path(f"{stem}.pr-{index:02d}-{name}.png")
        precision_recall_curve(points, f"{key[0]} / {key[1]} (n={pair['support']})", plot,
                               report["target_precision"])
        written[f"plot:{key[0]}/{key[1]}"] = plot
    curves = {name[len("plot:"):]: file for name, file in written.items() if name.startswith("plot:")}
    written["html"] = write_html(Path(f"{stem}.html"), report, rows, curves, image_root)
    write_json(path, report)
    return written
