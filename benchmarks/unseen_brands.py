"""MXT alone on the demo's synthetic catalog: how many never-seen brands it generates exactly.

Trains the demo's MXT configuration (``mxt_sdk.experiments.demo``: ``mxt-cpu`` at 128 px with the
copy options) for a fixed number of steps on the demo's catalog (2,000 / 400 products, seed 0),
evaluates it and prints one JSON line: unseen brands generated exactly, accuracy on the image-only
attributes, zero-shot values recovered, and a few of the brands it got wrong. The text-only model of
``mxt demo`` is not trained, so one variant costs about half a demo.

    python benchmarks/unseen_brands.py --output /tmp/brands --steps 600
    python benchmarks/unseen_brands.py --output /tmp/brands-plain --steps 600 \\
        --set model.generator.options.copy_continuation=false --set model.generator.options.copy_switch_loss=0
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from mxt_sdk.config_overrides import apply_overrides
from mxt_sdk.experiments import demo
from mxt_sdk.experiments.ablation import AblationData, train_and_evaluate
from mxt_sdk.experiments.synthetic import write_catalog


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=demo.DemoSettings().steps)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = demo.DemoSettings()
    paths = write_catalog(args.output / "data", settings.train_products, settings.test_products, settings.seed)
    config = apply_overrides(demo._demo_config("mxt"), args.overrides)
    started = time.perf_counter()
    run = train_and_evaluate(config, AblationData(train=paths["train"], test=paths["test"]),
                             args.output / "mxt", args.output / "eval" / "report.json", steps=args.steps,
                             max_seconds=None, seed=settings.seed)
    rows = [json.loads(line) for line in (args.output / "eval" / "report.predictions.jsonl").read_text().splitlines()]
    right, asked = demo._unseen_brands(rows)
    image_only = [r for r in rows if r["attribute"] in demo.IMAGE_ONLY]
    zero_shot = [r for r in rows if r["zero_shot"]]
    wrong = [(r["gold"], r["value"]) for r in rows if r["attribute"] == "brand" and not r["correct"]][:10]
    print(json.dumps({"steps": run.steps, "seconds": round(time.perf_counter() - started), "overrides": args.overrides,
                      "unseen_brands": [right, asked],
                      "image_only_accuracy": round(sum(bool(r["correct"]) for r in image_only) / len(image_only), 3),
                      "zero_shot": [sum(bool(r["correct"]) for r in zero_shot), len(zero_shot)],
                      "wrong_brands": wrong}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
