"""Calibrated precision per decision path: thresholds per pair against thresholds per (pair, path).

Calibrates a saved model on a validation file (``Extractor.calibrate``: the image prior's weight where the
model has one, then the thresholds), evaluates it once on a test file, and scores the same test rows under
two threshold sets chosen on the same validation rows: the pair's threshold for every answer (the rule
before paths were calibrated) and the rule of :mod:`mxt_sdk.evaluation.thresholds` (each (pair, path) with
enough rows its own, a pooled floor per path elsewhere). Prints one JSON object: per set, the micro
precision / recall / F1 on test and, per path, answers, accepted values and their precision.

    python benchmarks/path_thresholds.py --model DIR --val VAL.jsonl --test TEST.jsonl --output OUT
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from mxt_sdk import Extractor
from mxt_sdk.evaluation.report import build_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--val", type=Path, required=True, help="labelled products the thresholds are chosen on")
    parser.add_argument("--test", type=Path, required=True, help="labelled products the precision is measured on")
    parser.add_argument("--precision", type=float, default=0.9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, required=True, help="where the test evaluation is written")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    extractor = Extractor.from_pretrained(args.model)
    extractor.calibrate(args.val, precision=args.precision)
    summary = extractor.calibration_summary()
    report_path = args.output / "report.json"
    extractor.evaluate(args.test, precision=args.precision, output=report_path)
    rows = [json.loads(line) for line in report_path.with_suffix(".predictions.jsonl").read_text().splitlines()]
    with_paths = extractor.thresholds
    pair_only = with_paths.model_copy(update={"pair_paths": {}, "paths": {}})
    result = {"model": str(args.model), "val": str(args.val), "test": str(args.test), "target": args.precision,
              "image_prior_weight": summary.get("image_prior_weight"),
              "path_thresholds": {"own": summary["pair_paths_own_threshold"], "pooled": summary["paths"]}}
    for name, thresholds in (("per_pair", pair_only), ("per_pair_and_path", with_paths)):
        report = build_report(rows, thresholds, args.precision)
        result[name] = {"micro": {k: round(v, 4) for k, v in report["micro"].items()},
                        "paths": {path: {"answers": entry["answers"], "accepted": entry["accepted"],
                                         "precision": None if entry["precision"] is None else round(entry["precision"], 4)}
                                  for path, entry in report["decided_by"]["overall"].items()}}
    print(json.dumps(result, indent=1), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
