"""MXT alone on the demo's synthetic catalog: how many never-seen brands it generates exactly.

Trains the demo's MXT configuration (``mxt_sdk.experiments.demo``: ``mxt-cpu`` at 128 px with the
copy options) for a fixed number of steps on the demo's catalog (2,000 / 400 products, seed 0),
evaluates it and prints one JSON line: accuracy over every stated value, unseen brands generated exactly,
accuracy on the image-only attributes, zero-shot values recovered, new colours only the photo shows
(the report's ``unseen_absent`` slice), and a few of the brands it got wrong. The text-only model of
``mxt demo`` is not trained, so one variant costs about half a demo.

    python benchmarks/unseen_brands.py --output /tmp/brands --steps 600
    python benchmarks/unseen_brands.py --output /tmp/brands-plain --steps 600 \\
        --set model.generator.options.copy_continuation=false --set model.generator.options.copy_switch_loss=0
    python benchmarks/unseen_brands.py --output /tmp/brands --reuse --decode whole_words=false
    python benchmarks/unseen_brands.py --output /tmp/brands-cpu --steps 600 --config mxt-cpu
    python benchmarks/unseen_brands.py --output /tmp/anywhere --steps 800 --config mxt-cpu --layout brands_anywhere

``--evaluate-on val`` scores a validation catalog instead of the test split: 400 products drawn like the
test split from another seed (the one ``write_catalog(DIR, 1, 400, 1)`` writes as its ``test.jsonl``), for
choosing constants without looking at the test split.

``--layout brands_anywhere`` trains and tests on the harder catalog of
:mod:`mxt_sdk.experiments.synthetic` (a dozen word-like training brands, placed anywhere in the title).

``--decode OPTION=VALUE`` (repeatable) evaluates the same trained model a second time with these
generator options or extraction settings changed (``whole_words``, ``choose_among_known``), and prints both results
side by side; ``--reuse`` evaluates the model already in ``OUTPUT/mxt`` instead of training one.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from mxt_sdk import Extractor
from mxt_sdk.config import load_config
from mxt_sdk.config_overrides import apply_overrides
from mxt_sdk.experiments import demo
from mxt_sdk.experiments.runs import fit_budgeted
from mxt_sdk.experiments.synthetic import HELD_OUT_BRANDS, HELD_OUT_WORD_BRANDS, LAYOUTS, write_catalog

sys.path.insert(0, str(Path(__file__).parent))
from measure import add_refit_span_prior_argument, apply_decode_options, refit_span_prior  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=demo.DemoSettings().steps)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=demo.DemoSettings().seed,
                        help="training seed (initial weights, data order); the catalog stays the demo's")
    parser.add_argument("--config", default=None, help="a shipped config name or YAML file to train instead of "
                        "the demo's MXT configuration (e.g. mxt-cpu: the shipped defaults)")
    parser.add_argument("--layout", choices=LAYOUTS, default="demo", help="the synthetic catalog's layout")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    parser.add_argument("--decode", action="append", default=[], metavar="OPTION=VALUE",
                        help="evaluate the trained model again with this generator option changed")
    parser.add_argument("--reuse", action="store_true", help="evaluate the model in OUTPUT/mxt, do not train")
    add_refit_span_prior_argument(parser)
    parser.add_argument("--evaluate-on", choices=("test", "val"), default="test",
                        help="score the test split or a validation catalog drawn like it from another seed")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = demo.DemoSettings()
    paths = write_catalog(args.output / "data", settings.train_products, settings.test_products, settings.seed,
                          layout=args.layout)
    config = apply_overrides(demo._demo_config("mxt") if args.config is None else load_config(args.config),
                             args.overrides)
    started = time.perf_counter()
    model_dir, test = args.output / "mxt", paths["test"]
    if args.evaluate_on == "val":  # held-out products like the test split's, from the seed after it
        test = write_catalog(args.output / "val-data", 1, settings.test_products, settings.seed + 1,
                             layout=args.layout)["test"]
    if args.reuse:
        extractor, steps = Extractor.from_pretrained(model_dir), None
        if args.refit_span_prior is not None:
            refit_span_prior(extractor, Path(f"{model_dir}.run"), args.refit_span_prior)
    else:
        _, result, _ = fit_budgeted(config, paths["train"], model_dir, steps=args.steps, max_seconds=None,
                                    seed=args.seed)
        extractor, steps = Extractor.from_pretrained(model_dir), result.steps
    results = {"steps": steps, "seconds": round(time.perf_counter() - started), "overrides": args.overrides,
               "config": args.config or "mxt-demo", "layout": args.layout, "evaluated_on": args.evaluate_on}
    options = extractor.model.generator.options
    brands = HELD_OUT_BRANDS if args.layout == "demo" else HELD_OUT_WORD_BRANDS
    results["as_trained"] = _evaluate(extractor, test, args.output / "eval-as-trained" / "report.json",
                                      dict(options), brands)
    if args.decode:
        apply_decode_options(extractor, args.decode)
        results["decoded"] = _evaluate(extractor, test, args.output / "eval-decoded" / "report.json", dict(options),
                                       brands)
    print(json.dumps(results), flush=True)
    return 0


def _evaluate(extractor: Extractor, test: Path, report_path: Path, options: dict, brands: list[str]) -> dict:
    """Evaluate on ``test`` (the catalog's test split or validation catalog); the figures of the unseen
    ``brands``, image-only, zero-shot and photo-only new values."""
    report = extractor.evaluate(test, output=report_path)
    rows = [json.loads(line) for line in report_path.with_suffix(".predictions.jsonl").read_text().splitlines()]
    right, asked = demo._unseen_brands(rows, brands)
    image_only = [r for r in rows if r["attribute"] in demo.IMAGE_ONLY]
    zero_shot = [r for r in rows if r["zero_shot"]]
    stated = [r for r in rows if r["gold"] is not None]
    photo_only_new = report["seen_and_written"]["overall"]["unseen_absent"]
    wrong = [(r["gold"], r["value"]) for r in rows if r["attribute"] == "brand" and not r["correct"]][:10]
    return {"generator_options": {k: options[k] for k in ("copy_continuation", "copy_switch_loss", "whole_words")
                                  if k in options},
            "choose_among_known": extractor.config.extraction.choose_among_known,
            "accuracy": [sum(bool(r["correct"]) for r in stated), len(stated)],
            "micro_f1": round(report["micro"]["f1"], 4),
            "unseen_brands": [right, asked],
            "photo_only_new_values": [photo_only_new["correct"], photo_only_new["support"]],
            "image_only_accuracy": round(sum(bool(r["correct"]) for r in image_only) / len(image_only), 3),
            "zero_shot": [sum(bool(r["correct"]) for r in zero_shot), len(zero_shot)],
            "wrong_brands": wrong}


if __name__ == "__main__":
    raise SystemExit(main())
