"""What a model answered where the gold value is new to training but written in the text (issue: copying).

Reads an evaluation's ``report.predictions.jsonl`` (``mxt evaluate --output DIR/report.json`` writes it
beside the report) and the model folder the evaluation used, and prints one JSON object: the
seen / unseen x written / absent counts (correct / support) overall and per (product type, attribute),
and, for the wrong answers of the unseen-and-written values, what came out instead:

* ``training_value``: a value training saw for the pair (recalled instead of copied);
* ``other_span``: another run of words of the product's text (copied from the wrong place);
* ``other``: neither (a fragment, a value of another pair, the none answer).

    python benchmarks/copy_diagnostic.py --model DIR --predictions DIR/eval/report.predictions.jsonl
"""
from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

from mxt_sdk.data.metadata import CatalogMetadata
from mxt_sdk.evaluation.metrics import written_in
from mxt_sdk.evaluation.report import novelty_slice


def miss_kind(row: dict, metadata: CatalogMetadata) -> str:
    """How a wrong answer to an unseen-and-written gold value went wrong (see the module docstring)."""
    answer = row.get("raw_value") or ""
    if answer and metadata.knows_value(row["product_type"], row["attribute"], answer):
        return "training_value"
    if answer and written_in(answer, row.get("title") or ""):
        return "other_span"
    return "other"


def diagnose(rows: list[dict], metadata: CatalogMetadata, examples: int = 20) -> dict:
    """Slices overall and per pair, the kinds of misses on unseen-and-written values, and a few of them."""
    overall, by_pair, misses, shown = Counter(), defaultdict(Counter), Counter(), []
    for row in rows:
        name = novelty_slice(row)
        if name is None or row.get("error"):
            continue
        pair = f"{row['product_type']} / {row['attribute']}"
        for counter in (overall, by_pair[pair]):
            counter[f"{name}.support"] += 1
            counter[f"{name}.correct"] += bool(row["correct"])
        if name == "unseen_written" and not row["correct"]:
            kind = miss_kind(row, metadata)
            misses[kind] += 1
            if len(shown) < examples:
                shown.append({k: row.get(k) for k in ("product_type", "attribute", "title", "raw_gold", "raw_value",
                                                      "confidence", "decided_by")} | {"kind": kind})
    return {"overall": dict(overall), "unseen_written_misses": dict(misses), "examples": shown,
            "by_pair": {pair: dict(counts) for pair, counts in sorted(by_pair.items())}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="the model folder (its metadata.json)")
    parser.add_argument("--predictions", type=Path, required=True, help="report.predictions.jsonl of an evaluation")
    parser.add_argument("--examples", type=int, default=20)
    args = parser.parse_args(argv)
    metadata = CatalogMetadata.model_validate_json((args.model / "metadata.json").read_text(encoding="utf-8"))
    with args.predictions.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    print(json.dumps(diagnose(rows, metadata, args.examples), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
