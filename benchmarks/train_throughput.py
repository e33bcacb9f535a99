"""Training throughput on long product texts: prompt lengths, and padding and seconds per step with
batches straight from the shuffle vs batches grouped by length (``training.length_pool_batches``).

Reads the first ``--products`` products of a product file, stages them and builds the training
examples and tokenizer exactly as ``mxt train`` does (``Trainer.stage`` and ``prepare_data``), then:

1. **prompt lengths**: the token counts of the uncut prompts of every training example (percentiles),
   and for each ``--budgets`` value, on an even sample of ``--sample`` examples, the share cut by the
   prompt rule (:func:`mxt_sdk.data.prompt.fit_prompts`), the mean tokens left, the share of stated
   values (the answer written in the product's texts) still written in the cut prompt, and the
   rule's cost;
2. **padding**: the share of input positions that are padding over one epoch of each way of batching
   (the config's ``length_pool_batches`` for the pooled way, 0 for the other), from the examples'
   token counts;
3. **seconds per step**: the first ``--warmup`` + ``--steps`` batches of each way's real data loader,
   stepped (forward, backward, AdamW) on two copies of the same initial weights, the two taking
   turns so that the machine's load falls on both alike; wall and CPU seconds per step (median over
   the timed steps), the loader's mean seconds per batch (prompts built, cut and tokenized), and
   the cost of counting a pool's tokens, per batch of the pool;
4. the same for a third way, **per product**: ``model.context_encoding: per_product`` on a copy of the same
   weights, its examples prepared alike, batches of whole products (``ProductBatches``, length-pooled), so
   each batch encodes each product's context once (docs/architecture.md#context-encoded-once-per-product).

    python benchmarks/train_throughput.py ../shared/data/myntra/train.jsonl --products 2000 --steps 20 --threads 1
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from mxt_sdk import Extractor
from mxt_sdk.data.prompt import fit_prompts, head_end
from mxt_sdk.data.readers import read_products
from mxt_sdk.evaluation.metrics import written_in
from mxt_sdk.experiments.ablation import variant_config
from mxt_sdk.training.length_pools import LengthPooledBatches, product_groups
from mxt_sdk.training.loaders import example_loader, token_lengths
from mxt_sdk.training.prepare import tokenizer_corpus
from mxt_sdk.training.trainer import Trainer
from mxt_sdk.types import Product

sys.path.insert(0, str(Path(__file__).parent))
from measure import machine  # noqa: E402

PERCENTILES = (50, 75, 90, 95, 99, 100)


def prompt_lengths(tokenizer, prompts: list[str]) -> dict[str, float]:
    """Percentiles and mean of the uncut prompts' token counts."""
    counts = np.array([len(ids) for start in range(0, len(prompts), 1000)
                       for ids in tokenizer(prompts[start:start + 1000])["input_ids"]])
    return {**{f"p{q}": int(np.percentile(counts, q)) for q in PERCENTILES}, "mean": round(float(counts.mean()), 1)}


def budget_row(tokenizer, budget: int, prompts: list[str], answers: list[str], none_answer: str) -> dict[str, float]:
    """What cutting ``prompts`` to ``budget`` tokens by the prompt rule keeps (see the module's docstring)."""
    started = time.perf_counter()
    fitted, ids = fit_prompts(tokenizer, budget, prompts)
    seconds = time.perf_counter() - started
    stated = [i for i, answer in enumerate(answers)
              if answer != none_answer and written_in(answer, prompts[i][head_end(prompts[i]):])]
    kept = sum(written_in(answers[i], fitted[i][head_end(fitted[i]):]) for i in stated)
    return {"budget": budget, "cut": round(sum(a != b for a, b in zip(fitted, prompts)) / len(prompts), 3),
            "mean_tokens": round(statistics.fmean(map(len, ids)), 1),
            "stated_kept": round(kept / max(len(stated), 1), 4), "stated": len(stated),
            "ms_per_1000_prompts": round(1000 * seconds / len(prompts) * 1000, 1)}


def padding(lengths: np.ndarray, batches) -> float:
    """Share of the padded input positions of ``batches`` (lists of example indices) that are padding."""
    tokens = positions = 0
    for batch in batches:
        tokens += int(lengths[batch].sum())
        positions += int(lengths[batch].max()) * len(batch)
    return 1.0 - tokens / positions


class Stepper:
    """One way of batching: its data loader's batches and a model copy with its own AdamW."""

    def __init__(self, model: torch.nn.Module, loader: torch.utils.data.DataLoader):
        self.model, self.batches = model.train(), iter(loader)
        self.optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        self.wall, self.cpu, self.data, self.positions = [], [], [], []

    def step(self, timed: bool) -> None:
        started = time.perf_counter()
        batch = next(self.batches)
        drawn, cpu = time.perf_counter(), time.process_time()
        loss = self.model(batch["input_ids"], batch["attention_mask"], batch["labels"], batch["images"],
                          batch["image_index"])
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        if timed:
            self.data.append(drawn - started)
            self.wall.append(time.perf_counter() - drawn)
            self.cpu.append(time.process_time() - cpu)
            self.positions.append(batch["input_ids"].numel())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path, help="a product file in any reader format")
    parser.add_argument("--config", default="mxt-cpu")
    parser.add_argument("--variant", default="text-only", help="an `mxt ablate` variant of the config")
    parser.add_argument("--products", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--budgets", default="128,192,256,384")
    parser.add_argument("--sample", type=int, default=3000, help="examples the budget table is measured on")
    parser.add_argument("--output", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    extractor = Extractor.from_config(variant_config(args.variant, args.config))
    config = extractor.config.training
    products = [p for p in islice(read_products(args.data), args.products) if isinstance(p, Product)]
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(extractor, config, Path(tmp) / "model", run_dir=Path(tmp) / "run")
        staged = trainer.stage(products, None)
        data = trainer._prepare(staged.train, None)
        tokenizer, limit = extractor.model.generator.tokenizer, extractor.config.model.max_input_tokens
        corpus = list(tokenizer_corpus(data["images"]["train"], limit=len(data["train"])))
        prompts, answers = corpus[0::2], corpus[1::2]
        sample = slice(None, None, max(1, len(prompts) // args.sample))
        budgets = [budget_row(tokenizer, int(b), prompts[sample], answers[sample], extractor.config.model.none_answer)
                   for b in args.budgets.split(",")]

        lengths = np.array(token_lengths(data["train"], list(range(len(data["train"])))))
        ways = {"shuffle": config.model_copy(update={"length_pool_batches": 0}), "length pools": config}
        pad_id, cpu = tokenizer.pad_token_id, torch.device("cpu")
        loaders = {name: example_loader(data["train"], way, pad_id, None, cpu, shuffle=True)
                   for name, way in ways.items()}
        fill = {"shuffle": padding(lengths, loaders["shuffle"].batch_sampler),
                "length pools": padding(lengths, LengthPooledBatches(
                    loaders["length pools"].batch_sampler.sampler, config.batch_size, config.length_pool_batches,
                    config.seed, lambda indices: lengths[indices]))}
        pool = list(loaders["length pools"].batch_sampler.sampler)[:config.length_pool_batches * config.batch_size]
        started = time.perf_counter()
        token_lengths(data["train"], pool)  # what the pooled loader does as it reaches each pool
        pool_count = (time.perf_counter() - started) / config.length_pool_batches
        per_product = copy.deepcopy(extractor)
        per_product.config.model.context_encoding = "per_product"
        product_data = Trainer(per_product, config, Path(tmp) / "model", run_dir=Path(tmp) / "run")._prepare(
            staged.train, None)
        loaders["per product"] = example_loader(
            product_data["train"], config, pad_id, None, cpu, shuffle=True,
            product_bounds=product_groups(product_data["images"]["train"].column("product_row")))
        product_lengths = np.array(token_lengths(product_data["train"], list(range(len(product_data["train"])))))
        fill["per product"] = padding(product_lengths, loaders["per product"].batch_sampler)
        models = {"shuffle": extractor.model, "length pools": extractor.model, "per product": per_product.model}
        steppers = {name: Stepper(copy.deepcopy(models[name]), loader) for name, loader in loaders.items()}
        for index in range(args.warmup + args.steps):
            for stepper in steppers.values():
                stepper.step(index >= args.warmup)

    results = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()},
               "products": len(products), "examples": len(prompts), "batch_size": config.batch_size,
               "max_input_tokens": limit,
               "uncut_prompt_tokens": prompt_lengths(tokenizer, prompts), "budgets": budgets,
               "pool_count_s_per_batch": round(pool_count, 4),
               "ways": {name: {"padding": round(fill[name], 3),
                               "median_positions_per_batch": int(statistics.median(s.positions)),
                               "median_s_per_step": round(statistics.median(s.wall), 3),
                               "median_cpu_s_per_step": round(statistics.median(s.cpu), 3),
                               "mean_s_per_batch_drawn": round(statistics.fmean(s.data), 4)}
                        for name, s in steppers.items()}}
    print(report(results, args))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2))
    return 0


def report(results: dict, args) -> str:
    """The figures as Markdown tables."""
    lengths = results["uncut_prompt_tokens"]
    lines = [f"# Training throughput ({args.config} {args.variant}, {results['products']} products, "
             f"{results['examples']} examples, batch {results['batch_size']}, {args.steps} timed steps, "
             f"{args.threads} threads)", "",
             "Uncut prompt tokens: " + ", ".join(f"{k} {v}" for k, v in lengths.items()), "",
             "| budget | prompts cut | mean tokens | stated values kept | rule ms / 1000 prompts |",
             "| ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {b['budget']} | {b['cut']:.1%} | {b['mean_tokens']} | {b['stated_kept']:.2%} of {b['stated']} | "
              f"{b['ms_per_1000_prompts']} |" for b in results["budgets"]]
    lines += ["", f"Batches at max_input_tokens {results['max_input_tokens']}:", "",
              "| batching | padding | median positions / batch | median s / step | median CPU s / step | "
              "mean s / batch drawn |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {name} | {w['padding']:.1%} | {w['median_positions_per_batch']} | {w['median_s_per_step']} | "
              f"{w['median_cpu_s_per_step']} | {w['mean_s_per_batch_drawn']} |"
              for name, w in results["ways"].items()]
    lines += ["", f"Counting a pool's tokens: {results['pool_count_s_per_batch']} s per batch of the pool "
              "(in the first batch drawn of each pool, not in the column above)."]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
