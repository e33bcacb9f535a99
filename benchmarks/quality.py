"""Quality benchmark: the ablation table of ``mxt ablate`` with the tiny CPU config on four data sets.

Run from the repository root (not a test)::

    python benchmarks/quality.py --output quality-results                 # --steps N per variant
    python benchmarks/quality.py --output /tmp/quality-smoke --smoke      # a minute-sized check

Data sets, prepared under ``<output>/data/`` (nothing is copied into the repository):

* ``synthetic``: :func:`mxt_sdk.experiments.synthetic.write_catalog`; ``pattern``, ``sleeve_length`` and
  ``heel_height`` are drawn in the picture only, and the test split holds zero-shot values;
* ``implicitave``: the ImplicitAVE evaluation set that ships with product photos (``eval_dev.tsv`` +
  ``images/``), split into train and test by a seeded hash of the product id (the released training
  files have no images); its values are almost never written in the title;
* ``oa-mine`` and ``ae-110k``: the ExtractGPT releases (titles only), the full training file and a
  seeded sample of the test file.

Each data set is one ``python -m mxt_sdk.cli ablate ...`` run (the exact commands are written to the
results). **Every variant of every data set trains for the same ``--steps`` optimizer steps with the
same seed and batch size**, so they see the same number of examples, in the same order where the
training data is the same; the learning-rate schedule follows the steps, so the same seed, steps and
thread count give the same numbers on any run (wall-clock time is reported beside them, never used to
plan them). ``--max-seconds-per-variant`` is a safety stop only; a variant it stops is flagged. Runs go
one at a time with all the machine's cores (``--lanes 1``, the default), or in ``--lanes N`` parallel
lanes with the cores split evenly (``--threads`` = cores / lanes each); the results say which.
Results: ``<output>/results.md`` and ``results.json`` (commands, machine, steps, seeds, tables, checks,
times), every variant's model and report under ``<output>/<data set>/``, and one log per data set.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from measure import machine  # noqa: E402  (benchmarks/measure.py, beside this file)

from mxt_sdk.experiments.ablation_table import TIME_HEADING as TABLE_TIME_HEADING  # noqa: E402

REPOSITORY = Path(__file__).resolve().parent.parent
IMAGE_VARIANTS = ["mxt", "no-mag", "no-xattn", "text-only", "per-type", "span", "classify"]
REFERENCE = "text-only"
IMAGE_ONLY = ("pattern", "sleeve_length", "heel_height")
TIME_HEADING = "## Time"  # everything that varies from run to run is below it
NO_IMAGES = ("no images in this data: its image layers would receive none (MAG shifts nothing, cross-attention "
             "adds nothing), so it is the text model with idle layers; `text-only` stands for MXT here")


@dataclass
class Prepared:
    """One data set ready for ``mxt ablate``."""

    name: str
    train: Path
    test: Path
    images: Path | None
    variants: list[str]
    source: str
    omitted: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


def _count(path: Path) -> dict[str, int]:
    from mxt_sdk.data.readers import load_products

    products = load_products(path, "count")
    return {"products": len(products), "rows": sum(len(p.attributes) for p in products),
            "product_types": len({p.product_type for p in products}),
            "with_image": sum(p.image is not None for p in products)}


def _write_products(path: Path, products) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for product in products:
            handle.write(json.dumps(product.model_dump(mode="json", exclude_none=True), ensure_ascii=False) + "\n")


def prepare_synthetic(folder: Path, args) -> Prepared:
    from mxt_sdk.experiments.synthetic import write_catalog

    paths = write_catalog(folder, args.synthetic_train, args.synthetic_test, args.seed)
    return Prepared("synthetic", paths["train"], paths["test"], None, IMAGE_VARIANTS,
                    f"mxt_sdk.experiments.synthetic.write_catalog(train_size={args.synthetic_train}, "
                    f"test_size={args.synthetic_test}, seed={args.seed})")


def prepare_implicitave(folder: Path, args) -> Prepared:
    from mxt_sdk import Product
    from mxt_sdk.data.readers import read_products

    root = args.data / "implicitave"
    items = list(read_products(root / "eval_dev.tsv", "implicitave", images="always"))
    products = [item for item in items if isinstance(item, Product)]

    def in_test(product) -> bool:
        digest = hashlib.sha1(f"{args.seed}:{product.id}".encode()).digest()
        return int.from_bytes(digest[:4], "big") / 2**32 < args.implicitave_test_share

    folder.mkdir(parents=True, exist_ok=True)
    _write_products(folder / "train.jsonl", [p for p in products if not in_test(p)])
    _write_products(folder / "test.jsonl", [p for p in products if in_test(p)])
    prepared = Prepared("implicitave", folder / "train.jsonl", folder / "test.jsonl", root,
                        [v for v in IMAGE_VARIANTS if v != "per-type"],
                        f"{root / 'eval_dev.tsv'} (reader implicitave, {len(items) - len(products)} bad records "
                        f"skipped) split by sha1('{args.seed}:<id>') into "
                        f"{1 - args.implicitave_test_share:.0%} train / {args.implicitave_test_share:.0%} test")
    train = _count(prepared.train)
    prepared.omitted["per-type"] = (
        f"{train['product_types']} product types with {train['products'] / train['product_types']:.0f} training "
        "products each on average: one model per type would be dozens of models trained for a second each")
    return prepared


def prepare_extractgpt(name: str, folder: Path, args) -> Prepared:
    source = args.data / "extractgpt" / name
    lines = (source / "test.jsonl").read_text(encoding="utf-8").splitlines()
    keep = sorted(random.Random(args.seed).sample(range(len(lines)), min(args.extractgpt_test, len(lines))))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "test.jsonl").write_text("".join(lines[i] + "\n" for i in keep), encoding="utf-8")
    return Prepared(name, source / "train.jsonl", folder / "test.jsonl", None,
                    ["text-only", "per-type", "span", "classify"],
                    f"{source / 'train.jsonl'} (all) and {len(keep)} of the {len(lines)} products of "
                    f"{source / 'test.jsonl'}, sampled with random.Random({args.seed})",
                    omitted={v: NO_IMAGES for v in ("mxt", "no-mag", "no-xattn")})


PREPARE = {"synthetic": prepare_synthetic, "implicitave": prepare_implicitave,
           "oa-mine": lambda folder, args: prepare_extractgpt("oa-mine", folder, args),
           "ae-110k": lambda folder, args: prepare_extractgpt("ae-110k", folder, args)}


# --------------------------------------------------------------------------- running
def deal_lanes(datasets: list[Prepared], lanes: int) -> list[list[Prepared]]:
    """Most variants first, each data set to the lane with the fewest so far; order kept within a lane."""
    loads, dealt = [0] * lanes, {}
    for data in sorted(datasets, key=lambda d: -len(d.variants)):
        lane = loads.index(min(loads))
        loads[lane] += len(data.variants)
        dealt[data.name] = lane
    return [[d for d in datasets if dealt[d.name] == lane] for lane in range(lanes) if lane in dealt.values()]


def ablate_command(data: Prepared, args) -> list[str]:
    command = [sys.executable, "-m", "mxt_sdk.cli", "ablate", "--config", str(args.config),
               "--train", str(data.train), "--test", str(data.test), "--variants", ",".join(data.variants),
               "--reference", REFERENCE, "--steps-per-variant", str(args.steps),
               "--output", str(args.output / data.name), "--seed", str(args.seed)]
    if args.max_seconds_per_variant:
        command += ["--max-seconds-per-variant", f"{args.max_seconds_per_variant:g}"]
    return command + (["--images", str(data.images)] if data.images else [])


def run_dataset(data: Prepared, args) -> dict[str, Any]:
    command = ablate_command(data, args)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    print(f"[{data.name}] {len(data.variants)} variants x {args.steps} steps: OMP_NUM_THREADS={args.threads} "
          f"{shlex.join(command)}", flush=True)
    started = time.perf_counter()
    with open(args.output / f"{data.name}.log", "w", encoding="utf-8") as log:
        completed = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPOSITORY, env=env)
    wall = time.perf_counter() - started
    output = args.output / data.name
    result: dict[str, Any] = {"command": f"OMP_NUM_THREADS={args.threads} {shlex.join(command)}",
                              "steps_per_variant": args.steps, "wall_seconds": round(wall, 1),
                              "exit_status": completed.returncode, "variants": data.variants,
                              "omitted": data.omitted, "source": data.source, "counts": data.counts,
                              "log": f"{data.name}.log"}
    if (output / "ablation.json").is_file():
        result["ablation"] = json.loads((output / "ablation.json").read_text(encoding="utf-8"))
    if (output / "ablation.md").is_file():
        result["table_markdown"] = (output / "ablation.md").read_text(encoding="utf-8")
    print(f"[{data.name}] done in {wall:.0f} s, exit status {completed.returncode}", flush=True)
    return result


def run_lane(lane: list[Prepared], args, results: dict[str, dict[str, Any]]) -> None:
    for data in lane:
        results[data.name] = run_dataset(data, args)


# --------------------------------------------------------------------------- checks and report
def _table_values(result: dict[str, Any], variant: str) -> dict[str, Any] | None:
    return (result.get("ablation") or {}).get("table", {}).get("variants", {}).get(variant)


def checks(results: dict[str, dict[str, Any]], args) -> list[str]:
    """What the benchmark is meant to show, each line as measured (no verdict is hidden)."""
    lines = []
    for name in ("synthetic", "implicitave"):
        mxt, text = _table_values(results.get(name, {}), "mxt"), _table_values(results.get(name, {}), "text-only")
        if mxt and text:
            m, t = mxt["value_absent"], text["value_absent"]
            lines.append(f"- {name}, value-absent accuracy (gold value not written in the text, n={m['support']}): "
                         f"mxt {m['accuracy']:.3f} vs text-only {t['accuracy']:.3f} "
                         f"({100 * (m['accuracy'] - t['accuracy']):+.1f} pp)")
    ablation = results.get("synthetic", {}).get("ablation")
    for variant in ("mxt", "text-only"):
        entry = (ablation or {}).get("variants", {}).get(variant, {})
        if entry.get("report"):
            lines.append(f"- synthetic, value-absent accuracy of the image-only attributes, {variant}: " + ", ".join(
                _image_only_accuracy(args.output / "synthetic" / entry["report"])))
    for name, result in results.items():
        cells, new_cells, examples = [], [], []
        for variant in result["variants"]:
            values = _table_values(result, variant)
            if values:
                cells.append(f"{variant} {values['zero_shot']['correct']}/{values['zero_shot']['support']}")
                new = values.get("new_value", {"correct": 0, "support": 0})
                new_cells.append(f"{variant} {new['correct']}/{new['support']}")
                examples += [f"{variant}: {e['value']}" for e in values["zero_shot"]["examples"][:2]]
        if cells:
            lines.append(f"- {name}, zero-shot gold values (never seen for their pair) generated correctly: "
                         f"{', '.join(cells)}" + (f" (e.g. {'; '.join(examples[:6])})" if examples else ""))
            lines.append(f"- {name}, of which new values (never seen for any pair): {', '.join(new_cells)}")
    lines.append("- By construction `classify` answers only with values seen as training labels (it cannot get a "
                 "new value right; a zero-shot one only when another pair had it) and `span` only with words of "
                 "the text (it cannot get a value-absent one right).")
    return lines


def _image_only_accuracy(report_path: Path) -> list[str]:
    """``attribute accuracy (n)`` of each image-only attribute, from the report's scored rows."""
    rows = [json.loads(line) for line in report_path.with_suffix(".predictions.jsonl").read_text().splitlines()]
    cells = []
    for attribute in IMAGE_ONLY:
        absent = [r for r in rows if r["attribute"] == attribute and r["value_absent"]]
        accuracy = sum(r["correct"] for r in absent) / len(absent) if absent else 0.0
        cells.append(f"{attribute} {accuracy:.2f} (n={len(absent)})")
    return cells


def _section(name: str, result: dict[str, Any]) -> list[str]:
    lines = ["", f"## {name}", "", f"Data: {result['source']}. Test: {result['counts']['products']} products, "
             f"{result['counts']['rows']} rows. Training: {result['counts']['train_products']} products.", "",
             f"{result['steps_per_variant']} training steps per variant (exit status {result['exit_status']}, "
             f"log `{result['log']}`)."]
    if result["omitted"]:
        lines += ["", "Variants not run:", *[f"- {v}: {why}" for v, why in result["omitted"].items()]]
    table = result.get("table_markdown") or "No table: see the log.\n"
    body = table.split("## Definitions")[0].split("\n", 1)[-1]  # drop the title and the definitions
    body = body.split(TABLE_TIME_HEADING)[0]  # times go to the end
    return lines + ["", body.replace("\n## ", "\n### ").strip()]


def _times(summary: dict[str, Any], results: dict[str, dict[str, Any]]) -> list[str]:
    info = summary["machine"]
    lanes = "; ".join(f"lane {i + 1}: {', '.join(lane)}" for i, lane in enumerate(summary["lanes"]))
    how = ("one run at a time" if len(summary["lanes"]) == 1 else
           f"{len(summary['lanes'])} runs side by side, the cores split evenly ({lanes})")
    lines = ["", TIME_HEADING, "", f"Command: `{summary['command']}`", "",
             f"Machine: {info.get('cpu')}, {info.get('cores')} cores, torch {info.get('torch')}, Python "
             f"{info.get('python')}. {how.capitalize()}, {summary['threads']} torch thread(s) per run. The "
             f"benchmark took {summary['total_seconds'] / 60:.1f} min.", ""]
    for name, result in results.items():
        lines += [f"### {name}: {result['wall_seconds']:.0f} s", "", f"```\n{result['command']}\n```", ""]
        table = result.get("table_markdown") or ""
        if TABLE_TIME_HEADING in table:
            lines += table.split(TABLE_TIME_HEADING)[1].split("\n## ")[0].strip().splitlines()[2:] + [""]
    return lines


def markdown(summary: dict[str, Any], results: dict[str, dict[str, Any]], check_lines: list[str]) -> str:
    lines = ["# Quality benchmark: the ablation table", "",
             f"Config `{summary['config']}`, seed {summary['seed']}, {summary['steps']} training steps per variant "
             "(the same examples seen by every variant of a data set). Same seed, steps and threads: same "
             "numbers; wall-clock times are under Time. Every recall@P comes with its support n; figures are per "
             "attribute or over all pairs, none per pair.", "", "## Checks", "", *check_lines]
    for name, result in results.items():
        lines += _section(name, result)
    lines += ["", "## Definitions", "", "See docs/evaluation.md, section Ablations, and `table.definitions` in each "
              "ablation.json."]
    return "\n".join(lines + _times(summary, results)) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, required=True, help="folder for data, runs and results")
    parser.add_argument("--steps", type=int, default=300, help="training steps of every variant (default 300)")
    parser.add_argument("--max-seconds-per-variant", type=float,
                        help="safety stop per variant (a variant it stops is flagged; default none)")
    parser.add_argument("--smoke", action="store_true",
                        help="a minute-sized check: synthetic only, 60/15 products, 30 steps (other options still apply)")
    parser.add_argument("--variants", help="comma-separated subset of the variants to run (default: all that apply)")
    parser.add_argument("--plan-only", action="store_true", help="prepare the data, print the plan and stop")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default="tiny-cpu", help="base config of every run (default tiny-cpu)")
    parser.add_argument("--data", type=Path, default=REPOSITORY.parent / "shared" / "data",
                        help="the public data folder (default ../shared/data)")
    parser.add_argument("--datasets", default=",".join(PREPARE), help=f"comma-separated subset of {', '.join(PREPARE)}")
    parser.add_argument("--lanes", type=int, default=1, help="runs side by side, cores split evenly (default 1)")
    parser.add_argument("--threads", type=int, help="torch threads per run (default: cores / lanes, at least 1)")
    parser.add_argument("--synthetic-train", type=int, default=1000)
    parser.add_argument("--synthetic-test", type=int, default=150)
    parser.add_argument("--implicitave-test-share", type=float, default=0.25)
    parser.add_argument("--extractgpt-test", type=int, default=120, help="test products sampled per ExtractGPT set")
    args = parser.parse_args(argv)
    if args.smoke:
        smoke = {"datasets": "synthetic", "synthetic_train": 60, "synthetic_test": 15, "steps": 30}
        for key, value in smoke.items():
            if getattr(args, key) == parser.get_default(key):
                setattr(args, key, value)
    args.names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = sorted(set(args.names) - set(PREPARE))
    if unknown:
        parser.error(f"unknown data set(s) {', '.join(unknown)}; choose from {', '.join(PREPARE)}")
    if (args.output / "results.json").exists():
        parser.error(f"{args.output} already holds results; choose a new --output")
    args.output, args.data = args.output.resolve(), args.data.resolve()
    args.lanes = max(1, args.lanes)
    args.threads = args.threads or max(1, (os.cpu_count() or 1) // args.lanes)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    prepared = []
    for name in args.names:
        data = PREPARE[name](args.output / "data" / name, args)
        train = _count(data.train)
        data.counts = {**_count(data.test), "train_products": train["products"], "train_types": train["product_types"]}
        prepared.append(data)
        if args.variants:
            chosen = {v.strip() for v in args.variants.split(",")}
            data.variants = [v for v in data.variants if v in chosen or v == REFERENCE]
    lanes = deal_lanes(prepared, args.lanes)
    print(f"Plan: {len(lanes)} lane(s), {args.threads} torch thread(s) per run, {args.steps} training steps per "
          f"variant, seed {args.seed}:")
    for number, lane in enumerate(lanes, 1):
        for data in lane:
            print(f"  lane {number}: {data.name:<12} {', '.join(data.variants)} ({data.counts['train_products']} "
                  f"training products, {data.counts['rows']} test rows)")
    if args.plan_only:
        return 0

    results: dict[str, dict[str, Any]] = {}
    workers = [threading.Thread(target=run_lane, args=(lane, args, results)) for lane in lanes]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    results = {name: results[name] for name in args.names if name in results}

    summary = {"command": shlex.join(["python", *sys.argv]) if argv is None else shlex.join(argv),
               "machine": machine(), "seed": args.seed, "steps": args.steps, "config": str(args.config),
               "lanes": [[d.name for d in lane] for lane in lanes], "threads": args.threads,
               "total_seconds": round(time.perf_counter() - started, 1), "reference": REFERENCE}
    check_lines = checks(results, args)
    datasets = {name: {k: v for k, v in r.items() if k != "table_markdown"} for name, r in results.items()}
    (args.output / "results.json").write_text(json.dumps({**summary, "checks": check_lines, "datasets": datasets},
                                                         indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (args.output / "results.md").write_text(markdown(summary, results, check_lines), encoding="utf-8")
    print("\n".join(["", "Checks:", *check_lines, "", f"Results: {args.output / 'results.md'} and "
                     f"results.json ({summary['total_seconds'] / 60:.1f} min)"]))
    return 0 if results and all(r["exit_status"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
