"""``mxt demo``: the whole job on a synthetic multimodal catalog, in minutes, offline.

Builds the catalog (:mod:`mxt_sdk.experiments.synthetic`), trains MXT with the shipped ``mxt-demo``
config (``mxt-cpu`` at the catalog's image size, answers generated rather than chosen among the training
values: packaged EfficientNet-Lite0 features into MAG + cross-attention, a T5 with a copy head) and, for
comparison, the text-only variant, for the same number of steps and seed (the same examples in the same
order), evaluates both on the test split (which holds zero-shot values), and writes a report. A seconds
cap per model is only a safety stop. Everything goes under one output folder.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mxt_sdk import progress
from mxt_sdk.config import MXTConfig, load_config
from mxt_sdk.experiments.ablation import AblationData, train_and_evaluate, variant_config
from mxt_sdk.experiments.synthetic import HELD_OUT_BRANDS, IMAGE_ONLY, write_catalog

log = logging.getLogger("mxt_sdk.demo")

#: a shipped config (mxt_sdk/configs/mxt-demo.yaml: every difference from mxt-cpu and its reason)
DEMO_CONFIG = "mxt-demo"


MIN_PAIR_SUPPORT = 20  # pairs with fewer stated test values get no row of their own in the report


@dataclass
class DemoSettings:
    """Size and step budget of a demo run (each model trains ``steps`` steps; ``max_seconds`` per model
    is only a safety stop); ``quick()`` is the CI-sized one."""

    train_products: int = 2000
    test_products: int = 400
    steps: int = 600  # MXT reads the image-only attributes by 300; copying new brands needs more
    max_seconds: float | None = 600.0
    seed: int = 0
    device: str = "auto"  # training and evaluation of both models (mxt_sdk.devices)

    @classmethod
    def quick(cls) -> "DemoSettings":
        return cls(train_products=300, test_products=60, steps=60, max_seconds=90.0)  # a CI-sized cap on a busy machine


def _summary(settings: DemoSettings, output: Path, runs: dict[str, dict[str, Any]]) -> str:
    mxt, text = runs["mxt"]["report"], runs["text-only"]["report"]
    lines = ["# mxt demo", "",
             f"Synthetic catalog: {settings.train_products} training / {settings.test_products} test products "
             f"(data in `{output / 'data'}`).", ""]
    for name, run in runs.items():
        lines.append(f"- **{name}**: {run['steps']} training steps (seed {settings.seed}) in {run['seconds']:.0f} s")
        lines += [f"  - {note}" for note in run["notes"]]
    shown = [p for p in mxt["pairs"] if p["stated"] >= MIN_PAIR_SUPPORT]
    lines += ["", "## MXT: recall at 90% precision and F1 per (product type, attribute)", "",
              f"Pairs with at least {MIN_PAIR_SUPPORT} stated test values; n: stated values, the support of "
              "recall@90P.", "", "| product type | attribute | n | recall@90P | F1 |", "|---|---|---|---|---|"]
    for pair in sorted(shown, key=lambda p: (p["product_type"], p["attribute"])):
        lines.append(f"| {pair['product_type']} | {pair['attribute']} | {pair['stated']} | "
                     f"{pair['recall_at_p']:.2f} | {pair['f1']:.2f} |")
    if len(shown) < len(mxt["pairs"]):
        lines.append(f"\n{len(mxt['pairs']) - len(shown)} pairs with fewer stated values are not listed.")
    lines += ["", "## Values only visible in the image (value-absent): accuracy", "",
              "| attribute | MXT | text-only |", "|---|---|---|"]
    for attribute in sorted(IMAGE_ONLY):
        lines.append(f"| {attribute} | {mxt['value_absent_accuracy_by_attribute'].get(attribute, 0):.2f} | "
                     f"{text['value_absent_accuracy_by_attribute'].get(attribute, 0):.2f} |")
    absent_m, absent_t = mxt["slices"]["value_absent"], text["slices"]["value_absent"]
    lines += [f"| all value-absent | {absent_m['accuracy']:.2f} | {absent_t['accuracy']:.2f} |", "",
              "## Zero-shot values (never seen in training) generated correctly by MXT", ""]
    for name, run in runs.items():
        copied, unseen = run["unseen_brands"]
        lines.append(f"- {name}: {copied} of {unseen} brands never seen in training (only written in the title) "
                     "generated exactly")
    for name, run in runs.items():
        photo_only = run["report"]["seen_and_written"]["overall"]["unseen_absent"]
        lines.append(f"- {name}: {photo_only['correct']} of {photo_only['support']} colours new to training that "
                     "only the photo shows (the text does not name them) generated exactly")
    lines.append("")
    zero = mxt["slices"]["zero_shot"]
    lines.append(f"{zero['correct']} of {zero['support']} zero-shot gold values recovered.")
    lines += [f"- {e['product_type']} / {e['attribute']}: **{e['value']}** ({e['product_id']})"
              for e in zero["correct_examples"][:8]]
    lines += ["", "## Sample predictions (MXT)", "", "| product | image | attribute | predicted | gold |",
              "|---|---|---|---|---|"]
    for row in runs["mxt"]["sample"]:
        lines.append(f"| {row['product_id']} | {output / 'data' / row['image']} | {row['attribute']} | "
                     f"{row['value']} | {row['gold']} |")
    lines += ["", "## Files", "", f"- model: `{output / 'mxt'}` (load with `Extractor.from_pretrained`); its "
              f"checkpoints, caches and logs: `{output / 'mxt.run'}`",
              f"- evaluation: `{output / 'evaluation'}` (report.json, predictions, plots, and report.html: "
              "open it in a browser to see each test product's photo, predicted and gold values)",
              f"- text-only comparison: `{output / 'text-only'}`, `{output / 'evaluation-text-only'}`"]
    return "\n".join(lines) + "\n"


def _demo_config(variant: str, device: str = "auto") -> MXTConfig:
    """The ablation variant ``variant`` of the shipped ``mxt-demo`` config, on ``device``."""
    config = variant_config(variant, DEMO_CONFIG).model_dump()
    config["training"]["device"] = config["extraction"]["device"] = device
    return load_config(config)


def _unseen_brands(rows: list[dict[str, Any]], brands: Sequence[str] = HELD_OUT_BRANDS) -> tuple[int, int]:
    """(generated exactly, asked) over the test products whose brand training never saw (one of ``brands``)."""
    held_out = {brand.casefold() for brand in brands}
    asked = [r for r in rows if r["attribute"] == "brand" and (r["gold"] or "").casefold() in held_out]
    return sum(bool(r["correct"]) for r in asked), len(asked)


def run_demo(output: str | Path, settings: DemoSettings | None = None) -> dict[str, Any]:
    """Run the demo into ``output``; return ``{"summary": markdown, "reports": {...}}``."""
    settings = settings or DemoSettings()
    output = Path(output)
    paths = write_catalog(output / "data", settings.train_products, settings.test_products, settings.seed)
    data = AblationData(train=paths["train"], test=paths["test"])
    runs: dict[str, dict[str, Any]] = {}
    models = ("mxt", "text-only")
    for number, name in enumerate(models, 1):
        folder = output / ("evaluation" if name == "mxt" else f"evaluation-{name}")
        log.info("Demo model %d of %d: %s (%d steps; at most %s s)", number, len(models), name, settings.steps,
                 "-" if settings.max_seconds is None else f"{settings.max_seconds:.0f}")
        with progress.stage(f"demo model {number}/{len(models)}: {name}"):
            run = train_and_evaluate(_demo_config(name, settings.device), data, output / name, folder / "report.json",
                                     steps=settings.steps, max_seconds=settings.max_seconds, seed=settings.seed)
        rows = [json.loads(line) for line in (folder / "report.predictions.jsonl").read_text().splitlines()]
        sample = [r for r in rows if r["attribute"] in IMAGE_ONLY][:4] + [r for r in rows if r["zero_shot"]][:4]
        runs[name] = {"report": run.report, "steps": run.steps, "seconds": run.train_seconds, "sample": sample,
                      "notes": run.notes, "unseen_brands": _unseen_brands(rows)}
    summary = _summary(settings, output, runs)
    (output / "report.md").write_text(summary, encoding="utf-8")
    return {"summary": summary, "reports": {name: run["report"] for name, run in runs.items()}}
