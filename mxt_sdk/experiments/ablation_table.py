"""The ablation table, computed from each variant's ``report.json`` alone.

Definitions (repeated in ``ablation.json`` under ``table.definitions``):

* **attribute support**: the stated gold values of an attribute in the test data, summed over its
  (product type, attribute) pairs. Attributes are ranked by support, largest first, ties by name
  (from the reference variant's report; every variant is asked the same rows).
* **attribute recall@P**: the support-weighted mean of its pairs' ``recall_at_p`` (weight: the pair's
  ``stated``). That is the share of its stated gold values recovered when each pair is cut at its own
  threshold reaching precision P, the paper's per-pair operating point.
* **top-k recall@P**: the plain mean of attribute recall@P over the k attributes of largest support
  (k = 5, 10, 15; all of them when the data has fewer, and ``attributes`` says how many).
* **improvement over the reference**, per k: ``points`` = 100 × (variant − reference) of top-k
  recall@P, in percentage points; ``relative`` = 100 × (variant − reference) / reference, in %, the
  measure of the MXT paper's Table 1 (relative gain averaged over the top attributes), computed on the
  top-k means; ``null`` when the reference's top-k recall@P is 0.
* **micro recall@P**: Σ over all pairs of ``recall_at_p × stated`` / Σ ``stated``; **micro F1** is the
  report's ``micro.f1`` (at the model's thresholds: 0.5 unless calibrated); **value-absent accuracy**
  and **zero-shot correct / support** are the report's ``value_absent`` and ``zero_shot`` slices
  (correct whatever the confidence).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mxt_sdk.evaluation.report import NOVELTY_SLICES

__all__ = ["TOP_K", "TIME_HEADING", "DEFINITIONS", "attribute_recall", "rank_attributes", "variant_metrics", "improvement", "build_table",
           "markdown"]

TOP_K = (5, 10, 15)
TIME_HEADING = "## Training steps and time"
DEFINITIONS = {
    "attribute_support": "stated gold values of the attribute in the test data, over all its pairs",
    "attribute_recall_at_p": "support-weighted (by stated) mean of the recall_at_p of its pairs",
    "top_k_recall_at_p": "mean attribute recall@P over the k attributes of largest test support (ties by name)",
    "improvement_points": "100 * (variant - reference) top-k recall@P, percentage points",
    "improvement_relative": "100 * (variant - reference) / reference top-k recall@P, percent (null if reference is 0)",
    "micro_recall_at_p": "sum over pairs of recall_at_p * stated / sum of stated",
    "micro_f1": "report micro.f1 at the model's thresholds (0.5 unless calibrated)",
    "value_absent_accuracy": "report slices.value_absent.accuracy (gold value not written in the text)",
    "zero_shot": "report slices.zero_shot: gold values never seen for their pair in training, correct / support",
    "new_value": "report slices.new_value: gold values never seen for any pair in training, correct / support",
    "seen_and_written": "report seen_and_written.overall: gold values by seen / unseen for their pair in training "
                        "and written / absent in the product's text, correct / support",
}


def attribute_recall(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``{attribute: {"support", "pairs", "recall_at_p"}}`` from a report's ``pairs``."""
    totals: dict[str, dict[str, float]] = {}
    for pair in report["pairs"]:
        entry = totals.setdefault(pair["attribute"], {"support": 0, "pairs": 0, "recalled": 0.0})
        entry["support"] += pair["stated"]
        entry["pairs"] += 1
        entry["recalled"] += pair["recall_at_p"] * pair["stated"]
    return {name: {"support": e["support"], "pairs": e["pairs"],
                   "recall_at_p": e["recalled"] / e["support"] if e["support"] else 0.0}
            for name, e in totals.items()}


def rank_attributes(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Attributes with stated test values, largest support first (ties by name)."""
    recall = attribute_recall(report)
    ranked = sorted((name for name, e in recall.items() if e["support"] > 0),
                    key=lambda name: (-recall[name]["support"], name))
    return [{"attribute": name, "support": recall[name]["support"], "pairs": recall[name]["pairs"]}
            for name in ranked]


def variant_metrics(report: dict[str, Any], ranking: Sequence[str], top_k: Sequence[int] = TOP_K) -> dict[str, Any]:
    """The absolute numbers of one variant (see the module docstring)."""
    recall = attribute_recall(report)
    tops = {}
    for k in top_k:
        chosen = ranking[:k]
        tops[str(k)] = {"attributes": len(chosen), "recall_at_p":
                        sum(recall.get(name, {"recall_at_p": 0.0})["recall_at_p"] for name in chosen) / len(chosen)
                        if chosen else 0.0}
    stated = sum(p["stated"] for p in report["pairs"])
    zero, absent = report["slices"]["zero_shot"], report["slices"]["value_absent"]
    new = report["slices"].get("new_value", {"correct": 0, "support": 0})  # reports written before the slice
    return {
        "top_k": tops,
        "micro_recall_at_p": sum(p["recall_at_p"] * p["stated"] for p in report["pairs"]) / stated if stated else 0.0,
        "micro_f1": report["micro"]["f1"],
        "value_absent": {k: absent[k] for k in ("accuracy", "correct", "support")},
        "zero_shot": {"correct": zero["correct"], "support": zero["support"],
                      "examples": zero["correct_examples"][:5]},
        "new_value": {"correct": new["correct"], "support": new["support"]},
        "errors": report["errors"], "rows": report["rows"],
        "decided_by": report.get("decided_by", {}).get("overall", {}),  # absent in reports written before paths
        "seen_and_written": {name: {"correct": part["correct"], "support": part["support"]}  # absent: older reports
                             for name, part in report.get("seen_and_written", {}).get("overall", {}).items()},
    }


def improvement(value: float, reference: float) -> dict[str, float | None]:
    """Percentage points and relative percent of ``value`` over ``reference``."""
    return {"points": 100 * (value - reference),
            "relative": 100 * (value - reference) / reference if reference else None}


def build_table(variants: dict[str, dict[str, Any]], reference: str, precision: float,
                top_k: Sequence[int] = TOP_K) -> dict[str, Any]:
    """The comparison of the variants whose entry holds their report under ``"_report"``."""
    reports = {name: entry["_report"] for name, entry in variants.items() if entry.get("_report") is not None}
    table: dict[str, Any] = {"reference": reference, "precision": precision, "top_k": list(top_k),
                             "definitions": DEFINITIONS, "attributes": [], "variants": {}}
    if not reports:
        return table
    ranked_from = reference if reference in reports else next(iter(reports))
    table["attributes"] = rank_attributes(reports[ranked_from])
    ranking = [a["attribute"] for a in table["attributes"]]
    metrics = {name: variant_metrics(report, ranking, top_k) for name, report in reports.items()}
    for name, values in metrics.items():
        if reference in metrics:
            values["improvement"] = {
                k: improvement(values["top_k"][k]["recall_at_p"], metrics[reference]["top_k"][k]["recall_at_p"])
                for k in values["top_k"]}
        table["variants"][name] = values
    return table


# --------------------------------------------------------------------------- Markdown
def _signed(value: float | None, unit: str) -> str:
    return "n/a" if value is None else f"{value:+.1f}{unit}"


def _top(k: int, attributes: int) -> str:
    return f"top-{k}" if attributes >= k else f"top-{k} (all {attributes})"


def _gain(gain: dict[str, float | None]) -> str:
    return f"{_signed(gain['points'], ' pp')} ({_signed(gain['relative'], '%')})"


def _data_line(split: str, summary: dict[str, Any] | None) -> str:
    if not summary:
        return ""
    return (f"- {split}: {summary['products']} products ({summary['with_image']} with an image), "
            f"{summary['product_types']} product types, {summary['stated_values']} stated values\n")


def markdown(result: dict[str, Any]) -> str:
    """``ablation.md``: the improvement table, the absolute numbers, the top attributes, notes."""
    settings, table = result["settings"], result["table"]
    names, reference, ks = settings["variants"], settings["reference"], table["top_k"]
    p = f"{settings['precision']:.0%}".replace("%", "")
    steps = settings.get("steps_per_variant")
    budget = "the config's training length" if steps is None else f"{steps} training steps"
    lines = [f"# Ablation: {len(names)} variants, {budget} each, seed {settings['seed']}", "",
             "".join(_data_line(split, result["data"].get(split)) for split in ("train", "val", "test")).rstrip(),
             "", f"## Improvement in recall@{p}P over `{reference}` (top attributes by test support)", "",
             "| variant | " + " | ".join(_top(k, len(table["attributes"])) for k in ks) + " |",
             "|---" * (len(ks) + 1) + "|"]
    for name in names:
        values = table["variants"].get(name)
        if values is None:
            cells = ["failed"] * len(ks)
        elif name == reference:
            cells = ["reference"] * len(ks)
        elif "improvement" not in values:
            cells = ["n/a (reference failed)"] * len(ks)
        else:
            cells = [_gain(values["improvement"][str(k)]) for k in ks]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    support = {str(k): sum(a["support"] for a in table["attributes"][:k]) for k in ks}
    stated = sum(a["support"] for a in table["attributes"])
    lines += ["", "## Absolute numbers", "", "(n): the stated gold values each figure is computed over.", "",
              "| variant | " + " | ".join(f"recall@{p}P top-{k} (n)" for k in ks) +
              f" | micro recall@{p}P (n) | micro F1 | value-absent accuracy (n) | zero-shot correct / support "
              "| new-value correct / support | steps | status |", "|---" * (len(ks) + 8) + "|"]
    for name in names:
        entry, values = result["variants"][name], table["variants"].get(name)
        if values is None:
            lines.append(f"| {name} | " + " | ".join(["-"] * (len(ks) + 6)) + f" | failed: {entry.get('error', '?')} |")
            continue
        absent, zero, new = values["value_absent"], values["zero_shot"], values["new_value"]
        lines.append(f"| {name} | " + " | ".join(f"{values['top_k'][str(k)]['recall_at_p']:.3f} ({support[str(k)]})"
                                                 for k in ks) +
                     f" | {values['micro_recall_at_p']:.3f} ({stated}) | {values['micro_f1']:.3f} | "
                     f"{absent['accuracy']:.3f} ({absent['support']}) | {zero['correct']} / {zero['support']} | "
                     f"{new['correct']} / {new['support']} | {entry['steps']} | ok |")
    paths = sorted({path for values in table["variants"].values() if values for path in values.get("decided_by", {})})
    if paths:
        lines += ["", "## How answers were decided", "", "Answers per path (`Prediction.decided_by`), correct / with a "
                  "stated gold value in brackets.", "", "| variant | " + " | ".join(paths) + " |", "|---" * (len(paths) + 1) + "|"]
        for name in names:
            counts = (table["variants"].get(name) or {}).get("decided_by", {})
            lines.append(f"| {name} | " + " | ".join(
                f"{counts[p]['answers']} ({counts[p]['correct']} / {counts[p]['stated']})" if p in counts else "0"
                for p in paths) + " |")
    slices = [name for name in NOVELTY_SLICES
              if any(values and name in values.get("seen_and_written", {}) for values in table["variants"].values())]
    if slices:
        lines += ["", "## Seen and unseen values, written and absent", "", "Gold values by whether training saw "
                  "them for their pair and whether the product's text states them: correct / support.", "",
                  "| variant | " + " | ".join(name.replace("_", " and ") for name in slices) + " |",
                  "|---" * (len(slices) + 1) + "|"]
        for name in names:
            parts = (table["variants"].get(name) or {}).get("seen_and_written", {})
            lines.append(f"| {name} | " + " | ".join(
                f"{parts[s]['correct']} / {parts[s]['support']}" if s in parts else "-" for s in slices) + " |")
    descriptions = result["settings"].get("descriptions", {})
    parts = {name: result["variants"][name].get("components") for name in names}
    columns = list(next((p for p in parts.values() if p), {}))
    if descriptions or columns:
        lines += ["", "## What each variant has", "", "| variant | " + " | ".join(columns + ["description"]) + " |",
                  "|---" * (len(columns) + 2) + "|"]
        for name in names:
            have = parts[name] or {}
            lines.append(f"| {name} | " + " | ".join([have.get(c, "-") for c in columns] +
                                                     [descriptions.get(name, "")]) + " |")
    lines += ["", "## Attributes by test support", ""]
    lines += [f"{i}. {a['attribute']} (support {a['support']}, {a['pairs']} pairs)"
              for i, a in enumerate(table["attributes"][:max(ks, default=0)], 1)]
    examples = [(name, e) for name in names for e in table["variants"].get(name, {}).get("zero_shot", {}).get("examples", [])]
    if examples:
        lines += ["", "## Zero-shot values generated correctly (never seen for their pair in training)", ""]
        lines += [f"- {name}: {e['product_type']} / {e['attribute']} = **{e['value']}** ({e['product_id']})"
                  for name, e in examples]
    notes = [f"- {name}: {note}" for name in names for note in result["variants"][name].get("notes", [])]
    if notes:
        lines += ["", "## Notes", "", *notes]
    lines += ["", TIME_HEADING, "", "Wall-clock seconds on this machine; they vary from run to run, the numbers "
              "above do not (same seed and steps).", "", "| variant | steps | train s | evaluation s |",
              "|---|---|---|---|"]
    lines += [f"| {name} | {entry['steps']} | {entry['train_seconds']:.0f} | {entry['eval_seconds']:.0f} |"
              for name in names if (entry := result["variants"][name]).get("status") == "ok"]
    lines += ["", "## Definitions", "", *[f"- {key}: {text}" for key, text in table["definitions"].items()]]
    return "\n".join(lines) + "\n"
