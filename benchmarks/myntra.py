"""Myntra fashion catalog: MXT variants and a linear probe baseline at equal data, steps and seed.

Data (``--data``, default ``../shared/data/myntra``; read at run time, never copied into the repository,
nor anything derived from it): SDK product JSONL ``train.jsonl`` / ``val.jsonl`` / ``test.jsonl``
with a photo per product under ``images/``.

* **Training subset**: the ``--products`` (default 12,000) products of ``train.jsonl`` with the smallest
  ``sha1("myntra:<id>")`` (independent of file order); ``--steps`` (default 1,200) steps at the
  config's training seed (``mxt-cpu``: 42; ``--set training.seed=N`` to change it).
* **Validation** = ``val.jsonl``: the only split any constant is chosen on (the linear probe's L2; with
  ``--reuse --evaluate-on val``, a choice between trained models or settings).
  **Test** = ``test.jsonl`` (``--test-products N`` keeps the N with the smallest hash, for smoke runs).
* **Stated** gold value: written as whole words in the product's title or description
  (:func:`mxt_sdk.evaluation.metrics.written_in` on ``Product.text``); otherwise **value-absent**.
  **Visual value-absent**: Colour, Pattern, Sleeve Length and Neck values that are value-absent.

Two kinds of run, one per invocation, each printing one JSON line and writing ``<output>/result.json``:

``--variant NAME`` trains ``mxt_sdk.experiments.ablation.variant_config(NAME, --config)`` on the subset
through ``Extractor.fit`` into ``--output`` (the run folder is ``<output>.run``), then evaluates it on the
test split with ``Extractor.evaluate`` (report in ``<output>/eval/report.json``). Accuracy is read from
the report's ``report.predictions.jsonl``: the answer's value matches the gold value by
:func:`~mxt_sdk.evaluation.metrics.values_match` (no answer counts as wrong; ``accepted_accuracy`` also
asks the answer to pass its threshold). The result adds micro F1, macro recall@90P and the answers per
``decided_by`` path from the report. ``--reuse`` evaluates the model saved in ``--output`` instead of
training; ``--decode OPTION=VALUE`` changes an extraction setting or generator option first (so
``--reuse --decode image_prior_weight=0`` reads a trained MXT model without its image prior).
``--reuse --refit-text-prior L2`` first fits a text prior (``training.text_prior``) on the training examples
cached in ``<output>.run`` (what a run trained with it would have fitted after the same steps), so its
weight (``--decode text_prior_weight=W``) and L2 can be chosen on one trained model.
``--cache-from RUN`` copies (hard links) ``RUN/cache/image-features`` into this run's folder before
training, so a second image variant on the same subset does not encode the photos again (the cache
is keyed by the encoders' weights and the image files; a key that does not match is rebuilt).

``--linear`` is the baseline: per attribute, a softmax regression (torch, L-BFGS, L2 penalty) over
the attribute's training values (casefolded) on (a) ``text``: TF-IDF of the product type token + title +
description (unigrams seen in at least 2 training products, sublinear tf, rows L2-normalised), (b)
``image``: ``mxt-cpu``'s frozen pooled EfficientNet-Lite0 vector (standardised on the subset, scaled to
unit mean norm), (c) ``text+image``: both side by side. One L2 per feature set, chosen on val from
``--l2``; the test figures are reported at that L2. The pooled vectors are saved in
``<output>/pooled.pt`` and read back by a later run with the same images. Also reported: the majority
value of the (product type, attribute) pair in the subset.

    python benchmarks/myntra.py --linear --products 1000 --output /tmp/myntra/smoke-linear
    python benchmarks/myntra.py --variant mxt --products 1000 --steps 100 --test-products 200 --output /tmp/myntra/smoke-mxt
    python benchmarks/myntra.py --linear --output /tmp/myntra/linear
    python benchmarks/myntra.py --variant mxt --output /tmp/myntra/mxt
    python benchmarks/myntra.py --variant mxt --reuse --decode image_prior_weight=0 --output /tmp/myntra/mxt \\
        --result /tmp/myntra/mxt-prior0.json
    python benchmarks/myntra.py --variant mxt --reuse --evaluate-on val --refit-text-prior 1e-4 \
        --decode text_prior_weight=1 --output /tmp/myntra/mxt --result /tmp/myntra/mxt-text-prior-val.json
    python benchmarks/myntra.py --variant text-only --output /tmp/myntra/text-only
    python benchmarks/myntra.py --variant mxt-no-prior --cache-from /tmp/myntra/mxt.run --output /tmp/myntra/mxt-no-prior
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import torch

from mxt_sdk import Extractor, Product
from mxt_sdk.config_overrides import apply_overrides
from mxt_sdk.data.readers import read_products
from mxt_sdk.evaluation.metrics import values_match, written_in
from mxt_sdk.experiments.ablation import variant_config

sys.path.insert(0, str(Path(__file__).parent))
from measure import (add_refit_span_prior_argument, apply_decode_options, refit_span_prior,  # noqa: E402
                     refit_text_prior)

VISUAL = ("Colour", "Pattern", "Sleeve Length", "Neck")
L2_GRID = (1e-6, 1e-5, 1e-4)


# ----------------------------------------------------------------------------------------------- data
def _hash(key: str) -> int:
    return int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big")


def _read(path: Path) -> list[Product]:
    return [p for p in read_products(path) if isinstance(p, Product)]


def _first_by_hash(products: list[Product], n: int | None) -> list[Product]:
    """The ``n`` products with the smallest ``sha1("myntra:<id>")``, in that order (all when ``n`` is None)."""
    ordered = sorted(products, key=lambda p: _hash(f"myntra:{p.id}"))
    return ordered if n is None else ordered[:n]


def load_splits(root: Path, products: int, test_products: int | None = None,
                val_products: int | None = None) -> dict[str, list[Product]]:
    return {"train": _first_by_hash(_read(root / "train.jsonl"), products),
            "val": _first_by_hash(_read(root / "val.jsonl"), val_products),
            "test": _first_by_hash(_read(root / "test.jsonl"), test_products)}


def stated(product: Product, gold: str) -> bool:
    return written_in(gold, product.text)


# -------------------------------------------------------------------------------------------- figures
def accuracy_figures(rows: list[tuple[Product, str, str, bool]]) -> dict:
    """Accuracy overall, stated / value-absent, per attribute and on the visual value-absent slice;
    ``rows``: (product, attribute, gold, correct)."""
    def acc(selected):
        return {"n": len(selected), "accuracy": round(sum(c for *_, c in selected) / len(selected), 4)
                if selected else None}

    said = [r for r in rows if stated(r[0], r[2])]
    absent = [r for r in rows if not stated(r[0], r[2])]
    by_attribute = defaultdict(list)
    for row in rows:
        by_attribute[row[1]].append(row)
    return {"overall": acc(rows), "stated": acc(said), "value_absent": acc(absent),
            "visual_value_absent": acc([r for r in absent if r[1] in VISUAL]),
            "visual_stated": acc([r for r in said if r[1] in VISUAL]),
            "by_attribute": {a: {"all": acc(r), "value_absent": acc([x for x in r if not stated(x[0], x[2])])}
                             for a, r in sorted(by_attribute.items())}}


# ---------------------------------------------------------------------------------------- SDK variants
def _link_cache(source_run: Path, run: Path) -> None:
    source = source_run / "cache" / "image-features"
    target = run / "cache" / "image-features"
    if not source.is_dir() or target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target, copy_function=os.link)


def run_variant(args, splits) -> dict:
    root = args.data
    timings = {}
    if args.reuse:
        extractor = Extractor.from_pretrained(args.output)
        if args.refit_text_prior is not None:
            refit_text_prior(extractor, Path(f"{args.output}.run"), args.refit_text_prior)
        if args.refit_span_prior is not None:
            refit_span_prior(extractor, Path(f"{args.output}.run"), args.refit_span_prior)
    else:
        extractor = Extractor.from_config(apply_overrides(variant_config(args.variant, args.config), args.overrides))
    apply_decode_options(extractor, args.decode)
    steps = None
    if not args.reuse:
        run = Path(f"{args.output}.run")
        if args.cache_from:
            _link_cache(args.cache_from, run)
        started = time.perf_counter()
        result = extractor.fit(splits["train"], output_dir=args.output, run_dir=run, image_root=root,
                               max_steps=args.steps, eval_every=10**9, log_every=50)
        steps = result.steps
        timings["fit_s"] = round(time.perf_counter() - started, 1)
        timings["train_log"] = _train_log_summary(run)
    started = time.perf_counter()
    folder = "eval" if args.evaluate_on == "test" else f"eval-{args.evaluate_on}"
    report_path = args.output / (folder if not args.decode else f"{folder}-" + _slug(args.decode)) / "report.json"
    report = extractor.evaluate(splits["test"], output=report_path, image_root=root)
    timings["evaluate_s"] = round(time.perf_counter() - started, 1)
    products = {p.id: p for p in splits["test"]}
    rows, accepted_rows, disagreements = [], [], 0
    with open(report_path.with_name("report.predictions.jsonl"), encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            product = products[row["product_id"]]
            gold = product.attributes[row["attribute"]]
            correct = bool(row["value"]) and values_match(row["value"], gold)
            disagreements += correct != bool(row["correct"])
            rows.append((product, row["attribute"], gold, correct))
            accepted_rows.append((product, row["attribute"], gold, correct and bool(row["accepted"])))
    accepted = accuracy_figures(accepted_rows)
    return {"steps": steps, "timings": timings, **accuracy_figures(rows),
            "accepted_accuracy": {k: accepted[k] for k in ("overall", "stated", "value_absent", "visual_value_absent")},
            "micro_f1": round(report["micro"]["f1"], 4), "macro_recall_at_90p": round(report["macro"]["recall_at_p"], 4),
            "report_slices": {k: {"support": v["support"], "accuracy": round(v["accuracy"], 4)}
                              for k, v in report["slices"].items()},
            "decided_by": report["decided_by"]["overall"], "errors": report["errors"],
            "report_correct_disagreements": disagreements,
            "truncated": report["truncated"], "report": str(report_path)}


def _slug(items: list[str]) -> str:
    return re.sub(r"[^A-Za-z0-9=._-]+", "_", "+".join(items))


def _train_log_summary(run: Path) -> dict:
    """The run folder's ``summary.json``: seconds by part of training, examples/s, truncated examples."""
    path = run / "summary.json"
    if not path.exists():
        return {}
    summary = json.loads(path.read_text())
    return {k: summary.get(k) for k in ("steps", "examples_per_second", "seconds", "truncated_examples",
                                        "input_padding")}


# ---------------------------------------------------------------------------------------- linear probe
TOKEN = re.compile(r"\w+")


def _tokens(product: Product) -> list[str]:
    return [f"__type_{product.product_type.casefold()}"] + TOKEN.findall(product.text.casefold())


class Tfidf:
    def __init__(self, products: list[Product], min_df: int = 2):
        df = Counter(t for p in products for t in set(_tokens(p)))
        self.vocab = {t: i for i, t in enumerate(sorted(t for t, n in df.items() if n >= min_df))}
        n = len(products)
        self.idf = torch.tensor([math.log((1 + n) / (1 + df[t])) + 1 for t in sorted(self.vocab, key=self.vocab.get)])

    def __call__(self, products: list[Product]) -> torch.Tensor:
        rows, cols, vals = [], [], []
        for r, product in enumerate(products):
            counts = Counter(self.vocab[t] for t in _tokens(product) if t in self.vocab)
            weights = {c: (1 + math.log(k)) * float(self.idf[c]) for c, k in counts.items()}
            norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
            for c, w in weights.items():
                rows.append(r)
                cols.append(c)
                vals.append(w / norm)
        return torch.sparse_coo_tensor([rows, cols], vals, (len(products), len(self.vocab))).coalesce()


def _sdk_cache_vectors(run: Path) -> dict[str, torch.Tensor]:
    """The pooled ("global") vectors of a training run's image-feature cache (``<run>/cache/image-features``)."""
    from mxt_sdk.training.feature_cache import INDEX_FILE, FeatureCache

    folders = [f for f in (run / "cache" / "image-features").glob("*") if (f / INDEX_FILE).exists()]
    if len(folders) != 1:
        raise SystemExit(f"--image-cache {run}: expected one built feature cache, found {len(folders)}")
    cache = FeatureCache(folders[0])
    references = sorted(r for r in cache.rows if r not in cache.errors)
    features, _ = cache.load(references)
    return dict(zip(references, features.features["global"]))


def _pooled(products: list[Product], root: Path, cache: Path, sdk_run: Path | None = None) -> torch.Tensor:
    """mxt-cpu's frozen pooled EfficientNet-Lite0 vector of each product's photo (as implicitave_probe.py),
    rounded to float16 as the SDK's feature cache stores it, saved in ``cache`` by image reference;
    ``sdk_run``: take the vectors a training run of mxt-cpu already cached instead of encoding them."""
    from mxt_sdk.images.batching import ImageLoader

    stored = torch.load(cache) if cache.exists() else {}
    if sdk_run is not None:
        wanted = {p.image for p in products} - set(stored)
        stored.update((r, v) for r, v in _sdk_cache_vectors(sdk_run).items() if r in wanted)
    missing = sorted({p.image for p in products} - set(stored))
    if missing:
        model = Extractor.from_config("mxt-cpu").model.eval()
        loader = ImageLoader(model.preprocessing(), root, 50_000_000)
        started = time.perf_counter()
        for start in range(0, len(missing), 32):
            batch = missing[start:start + 32]
            pixels, errors = loader.load(batch)
            if any(errors):
                raise SystemExit(f"images that could not be read: {[e for e in errors if e][:3]}")
            with torch.no_grad():
                vectors = model.encode_images(pixels).features["global"]
            stored.update(zip(batch, vectors.half().float()))
            if (start // 32) % 50 == 0:
                print(f"encoded {start + len(batch)} / {len(missing)} images, "
                      f"{(start + len(batch)) / (time.perf_counter() - started):.1f} images/s", flush=True)
        torch.save(stored, cache)
    return torch.stack([stored[p.image] for p in products])


def _fit_softmax(features: list[torch.Tensor], targets: torch.Tensor, classes: int, l2: float):
    weights = [torch.zeros(x.size(1), classes, requires_grad=True) for x in features]
    bias = torch.zeros(classes, requires_grad=True)
    optimizer = torch.optim.LBFGS(weights + [bias], max_iter=100, history_size=10, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        logits = sum(x @ w for x, w in zip(features, weights)) + bias
        loss = torch.nn.functional.cross_entropy(logits, targets) + l2 * sum(w.pow(2).sum() for w in weights)
        loss.backward()
        return loss

    optimizer.step(closure)
    return [w.detach() for w in weights], bias.detach()


def _select(x: torch.Tensor, rows: list[int]) -> torch.Tensor:
    if x.is_sparse:
        return (x.index_select(0, torch.tensor(rows)) if len(rows) != x.size(0) else x).coalesce().to_sparse_csr()
    return x[rows]


def _probe_predictions(train, features_train, evaluated: dict, l2) -> dict[str, dict[tuple[str, str], str]]:
    """Per split of ``evaluated`` ({name: (products, features)}): {(product id, attribute): predicted value},
    from one softmax regression per attribute fitted on ``train``."""
    train_rows = defaultdict(list)
    for row, product in enumerate(train):
        for attribute, value in product.attributes.items():
            train_rows[attribute].append((row, value.casefold()))
    predictions = {name: {} for name in evaluated}
    for attribute, members in sorted(train_rows.items()):
        labels = sorted({v for _, v in members})
        wanted = {name: [r for r, p in enumerate(products) if attribute in p.attributes]
                  for name, (products, _) in evaluated.items()}
        if not any(wanted.values()):
            continue
        if len(labels) == 1:
            for name, (products, _) in evaluated.items():
                predictions[name].update({(products[r].id, attribute): labels[0] for r in wanted[name]})
            continue
        index = {v: i for i, v in enumerate(labels)}
        rows = [r for r, _ in members]
        targets = torch.tensor([index[v] for _, v in members])
        weights, bias = _fit_softmax([_select(x, rows) for x in features_train], targets, len(labels), l2)
        for name, (products, features) in evaluated.items():
            if not wanted[name]:
                continue
            logits = sum(_select(x, wanted[name]) @ w for x, w in zip(features, weights)) + bias
            for r, k in zip(wanted[name], logits.argmax(1).tolist()):
                predictions[name][(products[r].id, attribute)] = labels[k]
    return predictions


def _rows(products, predictions) -> list[tuple[Product, str, str, bool]]:
    return [(p, a, gold, (p.id, a) in predictions and values_match(predictions[(p.id, a)], gold))
            for p in products for a, gold in p.attributes.items()]


def _majority(train, test) -> list[tuple[Product, str, str, bool]]:
    by_pair, by_attribute = defaultdict(Counter), defaultdict(Counter)
    for product in train:
        for attribute, value in product.attributes.items():
            by_pair[(product.product_type, attribute)][value.casefold()] += 1
            by_attribute[attribute][value.casefold()] += 1
    predictions = {}
    for product in test:
        for attribute in product.attributes:
            counts = by_pair.get((product.product_type, attribute)) or by_attribute.get(attribute)
            if counts:
                predictions[(product.id, attribute)] = counts.most_common(1)[0][0]
    return _rows(test, predictions)


def run_linear(args, splits) -> dict:
    train, val, test = splits["train"], splits["val"], splits["test"]
    args.output.mkdir(parents=True, exist_ok=True)
    timings = {}
    started = time.perf_counter()
    tfidf = Tfidf(train)
    text = {name: tfidf(products) for name, products in splits.items()}
    timings["tfidf_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    pooled = {name: _pooled(products, args.data, args.output / "pooled.pt", args.image_cache)
              for name, products in splits.items()}
    timings["image_features_s"] = round(time.perf_counter() - started, 1)
    mean, std = pooled["train"].mean(0), pooled["train"].std(0) + 1e-6
    scale = ((pooled["train"] - mean) / std).norm(dim=1).mean()
    image = {name: (x - mean) / std / scale for name, x in pooled.items()}
    feature_sets = {"text": lambda s: [text[s]], "image": lambda s: [image[s]],
                    "text+image": lambda s: [text[s], image[s]]}
    result = {"train_products": len(train), "vocabulary": len(tfidf.vocab), "l2_grid": list(args.l2),
              "majority": accuracy_figures(_majority(train, test))}
    for name, features in feature_sets.items():
        started = time.perf_counter()
        val_accuracy, test_figures = {}, {}
        for l2 in args.l2:
            predictions = _probe_predictions(train, features("train"), {"val": (val, features("val")),
                                                                        "test": (test, features("test"))}, l2)
            val_accuracy[l2] = accuracy_figures(_rows(val, predictions["val"]))["overall"]["accuracy"]
            test_figures[l2] = accuracy_figures(_rows(test, predictions["test"]))
            print(f"{name} L2 {l2}: val accuracy {val_accuracy[l2]}", flush=True)
        best = max(args.l2, key=lambda l2: (val_accuracy[l2], -l2))  # chosen on val only
        result[name] = {"l2": best, "val_accuracy": val_accuracy, **test_figures[best]}
        timings[f"{name}_s"] = round(time.perf_counter() - started, 1)
        print(f"{name}: L2 {best} (chosen on val), test accuracy {result[name]['overall']['accuracy']}", flush=True)
    result["timings"] = timings
    return result


def table(results: list[dict]) -> str:
    """One Markdown row per model: accuracy overall / stated / value-absent / visual value-absent (the
    linear result gives its majority and three probes), micro F1 and macro recall@90P for SDK models."""
    def cell(figures: dict, key: str) -> str:
        entry = figures.get(key) or {}
        return f"{entry['accuracy']:.3f}" if entry.get("accuracy") is not None else "-"

    lines = ["| model | products / steps | overall | stated | value-absent | visual value-absent | micro F1 | "
             "macro R@90P |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for result in results:
        size = f"{result['products']:,} / {result['steps'] or '-'}"
        if result["variant"] == "linear":
            rows = [("majority value of the pair", result["majority"])] + [
                (f"linear probe, {name} (L2 {result[name]['l2']:g})", result[name])
                for name in ("text", "image", "text+image") if name in result]
            extra = ("-", "-")
        else:
            name = result["variant"] + (f" ({', '.join(result['decode'])})" if result["decode"] else "")
            rows = [(name, result)]
            extra = (f"{result['micro_f1']:.3f}", f"{result['macro_recall_at_90p']:.3f}")
        for name, figures in rows:
            lines.append(f"| {name} | {size} | " + " | ".join(cell(figures, k) for k in
                         ("overall", "stated", "value_absent", "visual_value_absent")) + f" | {extra[0]} | {extra[1]} |")
    lines += ["", "| model | " + " | ".join(f"{a} value-absent" for a in VISUAL) + " |",
              "| --- |" + " ---: |" * len(VISUAL)]
    for result in results:
        models = ([(f"linear probe, {n}", result[n]) for n in ("text", "image", "text+image") if n in result]
                  if result["variant"] == "linear" else
                  [(result["variant"] + (f" ({', '.join(result['decode'])})" if result["decode"] else ""), result)])
        for name, figures in models:
            cells = []
            for attribute in VISUAL:
                entry = figures["by_attribute"].get(attribute, {}).get("value_absent", {})
                cells.append(f"{entry['accuracy']:.3f} (n={entry['n']})" if entry.get("accuracy") is not None else "-")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _brief(result: dict) -> dict:
    """``result`` without the per-attribute tables (they are in the result file)."""
    return {k: _brief(v) if isinstance(v, dict) else v for k, v in result.items() if k != "by_attribute"}


# ----------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    kind = parser.add_mutually_exclusive_group(required=True)
    kind.add_argument("--variant", help="ablation variant (mxt, mxt-no-prior, text-only, span, classify, ...)")
    kind.add_argument("--linear", action="store_true", help="the linear probe baseline")
    kind.add_argument("--table", type=Path, nargs="+", metavar="RESULT_JSON",
                      help="print the Markdown table of these result files (no run)")
    parser.add_argument("--config", default="mxt-cpu", help="built-in name or YAML path")
    parser.add_argument("--products", type=int, default=12_000, help="training products (chosen by hash)")
    parser.add_argument("--steps", type=int, default=1_200)
    parser.add_argument("--test-products", type=int, default=None, help="test products (chosen by hash; default all)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    parser.add_argument("--decode", action="append", default=[], metavar="OPTION=VALUE",
                        help="extraction setting or generator option set before evaluating")
    parser.add_argument("--evaluate-on", choices=["test", "val"], default="test",
                        help="the split a trained variant is evaluated on (val: to choose between models or settings)")
    parser.add_argument("--reuse", action="store_true", help="evaluate the model saved in --output, do not train")
    parser.add_argument("--cache-from", type=Path, help="run folder whose image-feature cache to reuse")
    parser.add_argument("--refit-text-prior", type=float, metavar="L2",
                        help="with --reuse: fit a text prior at this L2 on <output>.run's training examples first")
    add_refit_span_prior_argument(parser)
    parser.add_argument("--image-cache", type=Path,
                        help="linear: a mxt-cpu training run folder (<output>.run) whose cached pooled vectors to use")
    parser.add_argument("--val-products", type=int, default=None, help="val products (chosen by hash; default all)")
    parser.add_argument("--l2", type=float, nargs="+", default=list(L2_GRID), help="linear probe: L2 weights tried on val")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", type=Path,
                        default=Path(__file__).resolve().parents[1].parent / "shared" / "data" / "myntra")
    parser.add_argument("--output", type=Path, help="model / run folder (required for a run)")
    parser.add_argument("--result", type=Path, help="where to write the JSON result (default <output>/result.json)")
    args = parser.parse_args(argv)
    if args.table:
        print(table([json.loads(path.read_text()) for path in args.table]))
        return 0
    if args.output is None:
        parser.error("--output is required for a run")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    splits = load_splits(args.data, args.products, args.test_products, args.val_products)
    if args.evaluate_on == "val":  # a choice between models is made here, never on the test split
        if args.linear:
            parser.error("--evaluate-on val is for trained variants; the linear probe already chooses on val")
        splits = {**splits, "test": splits["val"]}
    head = {"evaluated_on": args.evaluate_on, "benchmark": "myntra", "variant": "linear" if args.linear else args.variant, "config": args.config,
            "products": len(splits["train"]), "steps": args.steps if args.variant and not args.reuse else None,
            "test_products": len(splits["test"]), "test_values": sum(len(p.attributes) for p in splits["test"]),
            "overrides": args.overrides, "decode": args.decode, "reuse": args.reuse,
            "refit_text_prior": args.refit_text_prior, "refit_span_prior": args.refit_span_prior}
    body = run_linear(args, splits) if args.linear else run_variant(args, splits)
    result = {**head, **body, "wall_s": round(time.perf_counter() - started, 1)}
    path = args.result or args.output / "result.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(_brief(result)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
