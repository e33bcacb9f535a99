"""One variant, one public data set, a fixed number of steps: train, evaluate, print one JSON line.

The figures of this round's closing notes come from this script; ``quality.py`` runs whole ablation
tables. Data sets (from ``--data``, default ``../shared/data``; never copied into the repository):

* ``implicitave``: ImplicitAVE's ``eval_dev.tsv`` with its product photos, split 75/25 by
  ``sha1("<seed>:<id>")`` as ``quality.py`` does; reports accuracy (one attribute per product, values
  compared by the evaluation's matching rule) and the per-(product type, attribute) majority value
  of the training split as the baseline. Its labels were written by people, not taken from a catalog,
  so the configs' long-tail drop (``min_count``: values seen once in their pair) is off here unless
  ``--set training.normalizers=...`` says otherwise: on 757 products over about 120 pairs it would drop
  13% of the training labels (and 13% of the test values are such singletons);
* ``oa-mine`` / ``ae-110k``: ExtractGPT's train / test files; reports the SDK's evaluation report
  (micro / macro P/R/F1, recall@90P, zero-shot and new-value slices). ``--evaluate-on val`` trains on
  80% of the training file and scores the other 20% (line ``i`` held out where ``sha1("val:<i>")`` falls
  below 0.2), for choosing settings without the test file.

    python benchmarks/real_data.py implicitave --config mxt-cpu --variant mxt --steps 600 --output /tmp/r/i-mxt
    python benchmarks/real_data.py oa-mine --config mxt-cpu --variant text-only --steps 600 --output /tmp/r/o
    python benchmarks/real_data.py oa-mine --reuse --decode whole_words=true --output /tmp/r/o

``--reuse`` evaluates the model already saved in ``--output`` instead of training one; ``--decode
OPTION=VALUE`` (repeatable) changes a generator option (``whole_words``) or an extraction setting
(``choose_among_known``) before evaluation, so decoding rules are compared on one trained model;
``--refit-text-prior L2`` first fits a text prior at that L2 on the training examples cached in
``<output>.run`` (what a run with ``training.text_prior`` would have fitted after the same steps).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import torch

from mxt_sdk import Extractor, Product
from mxt_sdk.config_overrides import apply_overrides
from mxt_sdk.data.readers import read_products
from mxt_sdk.evaluation.metrics import values_match
from mxt_sdk.experiments.ablation import variant_config

sys.path.insert(0, str(Path(__file__).parent))
from measure import (add_refit_span_prior_argument, apply_decode_options, refit_span_prior,  # noqa: E402
                     refit_text_prior)


#: ImplicitAVE's labels are annotated: no long-tail drop (see the module docstring)
IMPLICITAVE_NORMALIZERS = "training.normalizers=[text, units, merge]"
VAL_SHARE = 0.2  #: oa-mine / ae-110k with --evaluate-on val: the share of the training file held out


def _implicitave_split(root: Path, seed: int, test_share: float) -> tuple[list[Product], list[Product]]:
    products = [p for p in read_products(root / "eval_dev.tsv", "implicitave", images="always")
                if isinstance(p, Product)]

    def in_test(product: Product) -> bool:
        return _share_hash(f"{seed}:{product.id}") < test_share

    return [p for p in products if not in_test(p)], [p for p in products if in_test(p)]


def _share_hash(key: str) -> float:
    """``key``'s place in [0, 1): the first 4 bytes of its SHA-1 (a split that does not depend on order)."""
    return int.from_bytes(hashlib.sha1(key.encode()).digest()[:4], "big") / 2**32


def _train_text_products(root: Path, pairs: set[tuple[str, str]]) -> list[Product]:
    """ImplicitAVE's text-only training rows (no photos) of the (product type, attribute) pairs in ``pairs``."""
    rows = [p for path in sorted((root / "train_text").glob("*/train.tsv"))
            for p in read_products(path, "implicitave") if isinstance(p, Product)]
    return [p for p in rows if any((p.product_type, a) in pairs for a in p.attributes)]


def _blank_title(product: Product) -> Product:
    return product.model_copy(update={"title": "-", "description": None})


def _majority_accuracy(train: list[Product], test: list[Product]) -> float:
    """Accuracy of answering each test pair with its training majority value (attribute-wide when the
    pair is unseen)."""
    by_pair, by_attribute = defaultdict(Counter), defaultdict(Counter)
    for product in train:
        for attribute, value in product.attributes.items():
            by_pair[(product.product_type, attribute)][value.casefold()] += 1
            by_attribute[attribute][value.casefold()] += 1
    right = total = 0
    for product in test:
        for attribute, value in product.attributes.items():
            counts = by_pair.get((product.product_type, attribute)) or by_attribute.get(attribute)
            right += bool(counts) and values_match(counts.most_common(1)[0][0], value)
            total += 1
    return right / max(total, 1)


def _fit(extractor: Extractor, train, args, **options) -> tuple[int | None, float | None]:
    """Train for ``args.steps`` into ``args.output`` (steps, seconds); with ``--reuse`` nothing (None, None)."""
    if args.reuse:
        return None, None
    started = time.perf_counter()
    result = extractor.fit(train, output_dir=args.output, max_steps=args.steps, eval_every=10**9, log_every=50,
                           **options)
    return result.steps, round(time.perf_counter() - started, 1)


def _extractor(args) -> Extractor:
    """The model to evaluate: a fresh one from the config and ``--set``, or the saved one (``--reuse``), with
    the ``--decode`` generator options applied."""
    if args.reuse:
        extractor = Extractor.from_pretrained(args.output)
        if args.refit_text_prior is not None:
            refit_text_prior(extractor, Path(f"{args.output}.run"), args.refit_text_prior)
        if args.refit_span_prior is not None:
            refit_span_prior(extractor, Path(f"{args.output}.run"), args.refit_span_prior)
    else:
        extractor = Extractor.from_config(apply_overrides(variant_config(args.variant, args.config), args.overrides))
    apply_decode_options(extractor, args.decode)
    return extractor


def run_implicitave(extractor: Extractor, args) -> dict:
    root = args.data / "implicitave"
    train, test = _implicitave_split(root, args.seed, args.test_share)
    majority = _majority_accuracy(train, test)
    held_out = []
    if args.calibrate_share > 0:  # photo products kept out of training to choose the image prior's weight on
        kept_out = [_share_hash(f"calibrate:{args.seed}:{p.id}") < args.calibrate_share for p in train]
        held_out = [p for p, out in zip(train, kept_out) if out]
        train = [p for p, out in zip(train, kept_out) if not out]
    if args.blank_titles:  # diagnostic: what the image (and product type) alone can give
        train, test = [_blank_title(p) for p in train], [_blank_title(p) for p in test]
    if args.blank_title_copies:  # modality dropout as data: each photo once with, once without its text
        train = train + [_blank_title(p).model_copy(update={"id": f"{p.id}#blank"}) for p in train]
    photo_products = len(train)
    if args.train_text:
        pairs = {(p.product_type, a) for p in train + test for a in p.attributes}
        train = train * args.photo_repeat + _train_text_products(root, pairs)
    steps, seconds = _fit(extractor, train, args, image_root=root)
    weights = {}
    if held_out and extractor.image_prior_in_use:
        weights = {"calibration_products": len(held_out), "prior_weight_accuracy":
                   extractor.choose_image_prior_weight(held_out, image_root=root),
                   "image_prior_weight": extractor.config.extraction.image_prior_weight}
    right = absent_right = absent = 0
    for product in test:
        for prediction in extractor.extract([product], list(product.attributes), image_root=root):
            gold = product.attributes[prediction.attribute]
            correct = bool(prediction.value) and values_match(prediction.value, gold)
            right += correct
            if gold.casefold() not in product.title.casefold():
                absent += 1
                absent_right += correct
    total = sum(len(p.attributes) for p in test)
    return {"train_products": len(train), "photo_products": photo_products, "test_pairs": total, "steps": steps, "train_seconds": seconds,
            "accuracy": round(right / total, 4), "value_absent_accuracy": round(absent_right / max(absent, 1), 4),
            "value_absent_pairs": absent, "majority_accuracy": round(majority, 4), **weights}


def _validation_split(train: Path, folder: Path) -> tuple[Path, Path]:
    """``train``'s lines written to ``folder`` as ``train.jsonl`` (80%) and ``val.jsonl`` (20%, by
    :data:`VAL_SHARE` of a hash of the line number)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [line for line in train.read_text(encoding="utf-8").splitlines() if line.strip()]
    held = [_share_hash(f"val:{i}") < VAL_SHARE for i in range(len(lines))]
    paths = folder / "train.jsonl", folder / "val.jsonl"
    for path, keep in zip(paths, (False, True)):
        path.write_text("".join(f"{line}\n" for line, h in zip(lines, held) if h == keep), encoding="utf-8")
    return paths


def run_extractgpt(extractor: Extractor, args) -> dict:
    root = args.data / "extractgpt" / args.dataset
    train, test = root / "train.jsonl", root / "test.jsonl"
    if args.evaluate_on == "val":
        train, test = _validation_split(train, args.output.parent / f"{args.output.name}.split")
    steps, seconds = _fit(extractor, train, args)
    report = extractor.evaluate(test, output=args.output / "eval" / "report.json")
    slices = {name: {k: v for k, v in values.items() if not isinstance(v, list)}
              for name, values in report["slices"].items()}
    novelty = report["seen_and_written"]["overall"]
    return {"evaluated_on": args.evaluate_on, "steps": steps, "train_seconds": seconds, "micro": report["micro"],
            "macro": report["macro"], "slices": slices,
            "seen_and_written": {name: [part["correct"], part["support"]] for name, part in novelty.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", choices=["implicitave", "oa-mine", "ae-110k"])
    parser.add_argument("--config", default="mxt-cpu", help="built-in name or YAML path")
    parser.add_argument("--variant", default="mxt", help="ablation variant (mxt, no-mag, no-xattn, text-only, span...)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0, help="seed of the ImplicitAVE split")
    parser.add_argument("--test-share", type=float, default=0.25)
    parser.add_argument("--train-text", action="store_true",
                        help="implicitave: also train on train_text/ (text-only rows of the same pairs)")
    parser.add_argument("--photo-repeat", type=int, default=1,
                        help="implicitave with --train-text: each photo product appears this many times")
    parser.add_argument("--calibrate-share", type=float, default=0.0,
                        help="implicitave: keep this share of the photo training products out of training and "
                             "choose the image prior's weight on them (Extractor.choose_image_prior_weight; "
                             "the choice replaces a --decode image_prior_weight)")
    parser.add_argument("--blank-title-copies", action="store_true",
                        help="implicitave: train on each photo product twice, with and without its title")
    parser.add_argument("--blank-titles", action="store_true",
                        help="implicitave diagnostic: titles replaced by '-' in training and test")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override one config field (YAML value), e.g. --set training.learning_rate=3e-4")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--reuse", action="store_true", help="evaluate the model saved in --output, do not train")
    parser.add_argument("--refit-text-prior", type=float, metavar="L2",
                        help="with --reuse: fit a text prior at this L2 on <output>.run's training examples first")
    add_refit_span_prior_argument(parser)
    parser.add_argument("--evaluate-on", choices=("test", "val"), default="test",
                        help="oa-mine / ae-110k: the test file, or 20%% of the training file held out from training")
    parser.add_argument("--decode", action="append", default=[], metavar="OPTION=VALUE",
                        help="set this generator option or extraction setting before evaluating "
                             "(e.g. whole_words=true, choose_among_known=50)")
    args = parser.parse_args(argv)
    if args.dataset == "implicitave" and args.evaluate_on != "test":
        parser.error("--evaluate-on val is for oa-mine and ae-110k (implicitave: --seed picks the split)")
    if args.dataset == "implicitave" and not any(o.startswith("training.normalizers=") for o in args.overrides):
        args.overrides.insert(0, IMPLICITAVE_NORMALIZERS)
    torch.set_num_threads(args.threads)
    extractor = _extractor(args)
    run = run_implicitave if args.dataset == "implicitave" else run_extractgpt
    result = {"dataset": args.dataset, "config": str(args.config), "variant": args.variant,
              "overrides": args.overrides, "reuse": args.reuse, "decode": args.decode,
              "refit_text_prior": args.refit_text_prior, "refit_span_prior": args.refit_span_prior,
 **({"train_text": True, "photo_repeat": args.photo_repeat}
                                              if args.train_text else {}),
              **({"blank_titles": True} if args.blank_titles else {}),
              **({"calibrate_share": args.calibrate_share} if args.calibrate_share else {}),
              **({"blank_title_copies": True} if args.blank_title_copies else {}), **run(extractor, args)}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
