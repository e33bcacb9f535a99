"""Cost of one training step: MXT with frozen encoders and cached features vs text-only vs pixels.

One process, one batch of real (product, attribute) examples from the synthetic catalog, the same
generator weights for every variant. The variants take turns: each round times one optimizer step
(forward, backward, AdamW) of every variant on the same batch, so a change in the machine's load falls
on all of them alike; after ``--warmup`` rounds, ``--steps`` rounds are timed and the table gives each
variant's median seconds per step and the median over rounds of its ratio to text-only:

* ``text-only``: the config's generator alone (no image encoders, no fusions);
* ``mxt, cached features``: MAG + cross-attention fed from the feature cache (what ``fit`` does with
  frozen encoders): the encoders do not run;
* ``mxt, pixels every step``: the same model encoding the batch's images at every step (what ``fit``
  did before the cache, and still does for trainable encoders).

    python benchmarks/train_step.py --config mxt-cpu --steps 20
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from mxt_sdk import Extractor
from mxt_sdk.data.readers import read_products
from mxt_sdk.data.examples import example_rows
from mxt_sdk.experiments.ablation import variant_config
from mxt_sdk.experiments.synthetic import write_catalog
from mxt_sdk.images.batching import ImageLoader, TrainingCollator
from mxt_sdk.training.feature_cache import build_feature_cache, encoders_frozen

sys.path.insert(0, str(Path(__file__).parent))
from measure import machine  # noqa: E402


def _batch_rows(extractor: Extractor, folder: Path, size: int) -> list[dict]:
    paths = write_catalog(folder, train_size=max(size, 16), test_size=4, seed=0)
    products = [p for p in read_products(paths["train"]) if not isinstance(p, Exception)]
    texts = (row[key] for row in example_rows(products, extractor.config.model.none_answer) for key in ("prompt", "answer"))
    extractor.model.generator.train_tokenizer(texts)
    tokenizer = extractor.model.generator.tokenizer
    rows = []
    for row in list(example_rows(products, extractor.config.model.none_answer))[:size]:
        rows.append({"input_ids": tokenizer(row["prompt"])["input_ids"], "labels": tokenizer(row["answer"])["input_ids"],
                     "image": row["image"]})
    return rows


class _Stepper:
    """One variant: a model, its batch and its own AdamW."""

    def __init__(self, model: torch.nn.Module, batch: dict):
        self.model, self.batch = model.train(), batch
        self.optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step(self) -> float:
        started = time.perf_counter()
        batch = self.batch
        loss = self.model(batch["input_ids"], batch["attention_mask"], batch["labels"], batch["images"],
                          batch["image_index"])
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        return time.perf_counter() - started


def _interleaved(steppers: dict[str, _Stepper], warmup: int, steps: int) -> dict[str, list[float]]:
    """Seconds of each timed round's step, per variant (variants take turns within a round)."""
    times: dict[str, list[float]] = {name: [] for name in steppers}
    for index in range(warmup + steps):
        for name, stepper in steppers.items():
            seconds = stepper.step()
            if index >= warmup:
                times[name].append(seconds)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="mxt-cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    mxt = Extractor.from_config(variant_config("mxt", args.config))
    if not encoders_frozen(mxt.model):
        raise SystemExit(f"config {args.config!r} trains its image encoders: there is no cache to measure")
    with tempfile.TemporaryDirectory() as tmp:
        rows = _batch_rows(mxt, Path(tmp) / "catalog", args.batch_size)
        image_root = Path(tmp) / "catalog"
        pad = mxt.model.generator.tokenizer.pad_token_id
        pixels = ImageLoader(mxt.model.preprocessing(), image_root, 50_000_000)
        cache = build_feature_cache(mxt.model, [r["image"] for r in rows], pixels, Path(tmp) / "cache")
        text = Extractor.from_config(variant_config("text-only", args.config)).model
        text.generator = copy.deepcopy(mxt.model.generator)  # the same generator weights and tokenizer
        runs = {
            "text-only": (text, TrainingCollator(pad, None)(rows)),
            "mxt, cached features": (copy.deepcopy(mxt.model), TrainingCollator(pad, cache)(rows)),
            "mxt, pixels every step": (copy.deepcopy(mxt.model), TrainingCollator(pad, pixels)(rows)),
        }
        times = _interleaved({name: _Stepper(model, batch) for name, (model, batch) in runs.items()},
                             args.warmup, args.steps)
    results = {name: statistics.median(values) for name, values in times.items()}
    ratios = {name: statistics.median(t / b for t, b in zip(values, times["text-only"]))
              for name, values in times.items()}
    lines = [f"# Training step cost ({args.config}, batch {args.batch_size}, {args.steps} interleaved rounds, "
             f"{args.threads} threads)", "", "| variant | median s/step | median ratio to text-only |",
             "| --- | ---: | ---: |"]
    lines += [f"| {name} | {results[name]:.3f} | {ratios[name]:.2f}x |" for name in results]
    print("\n".join(lines))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()},
                                           "seconds_per_step": results, "ratio_to_text_only": ratios}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
