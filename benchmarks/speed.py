"""Extraction speed: the SDK engine against two ways of running the same model with plain Hugging Face.

Run from the repository root (not a test; about 10 minutes on 2 CPU cores)::

    python benchmarks/speed.py --output benchmarks/results/speed.json

Side by side in one process, on P products x K attributes (images of varied sizes, texts of varied
lengths) and one random-init model of the t5-small shape (d_model 512, 6+6 layers, 8 heads) with
resnet152@224 (MAG) and xception@299 (cross-attention):

- **B0** naive loop: per (product, attribute) decode and encode the image, then HF ``generate`` at
  batch size 1, fp32;
- **B1** batching HF user: batches of 32 pairs in input order, dynamic padding, images decoded and
  encoded per pair in the batch, batched HF ``generate``, fp32;
- **B2** careful HF user: 32 products at a time, each product's image decoded and encoded once, that
  chunk's prompts sorted by length into batches of 32 with dynamic padding, HF ``generate`` on the
  fused encoder states (each example picks its product's image features), fp32: the engine's own
  plan written with plain Hugging Face, so S/B2 is what the engine adds beyond the plan;
- **S** ``Extractor.extract`` in fp32, bf16 and int8;
- **P** ``Extractor.extract`` with ``model.context_encoding: per_product`` (each product's context encoded
  once for all its attributes, docs/architecture.md#context-encoded-once-per-product), same weights, in fp32,
  bf16 and int8. Its answers are those of another model (the question is read apart), so they are compared
  with its own fp32, not with B2.

- **shipped**: ``mxt-cpu``, the configuration users get, trained ``--shipped-steps`` steps on the synthetic
  catalog, timed in fp32 with its decoding as shipped (known-value chooser, span binding, image prior)
  against free generation on the same model, so the chooser's cost is in the figures.

``--attributes`` asks K of the 30 attribute names of every product (10 and 30 in issue 30's targets).

All runs use the same weights, prompts, truncation and ``max_new_tokens``, so answers can be compared
token for token. Then the fast modes' agreement with fp32 is measured on a *trained* model (tiny-cpu
trained inside the benchmark on the synthetic catalog), where answers are not argmax ties of noise.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402
from transformers.modeling_outputs import BaseModelOutput  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import SHIPPED_CONFIG, PeakMemory, machine, matmul_gflops, train_on_synthetic  # noqa: E402

from mxt_sdk import Extractor, Product  # noqa: E402
from mxt_sdk.images.batching import ImageLoader, pad_batch, truncate  # noqa: E402
from mxt_sdk.data.prompt import build_prompt  # noqa: E402
from mxt_sdk.model.numerics import autocast, channels_last_pixels  # noqa: E402

ATTRIBUTES = ["color", "material", "pattern", "sleeve length", "neckline", "fit", "closure", "style",
              "heel height", "care instructions", "brand", "size", "occasion", "season", "length", "waist rise",
              "toe shape", "heel type", "sole material", "collar", "cuff", "lining", "pockets", "wash", "stretch",
              "gender", "age group", "number of items", "transparency", "surface styling"]
PRODUCT_WORDS = ("soft cotton blend shirt with a relaxed fit, ribbed crew neckline and short sleeves; machine wash "
                 "cold, tumble dry low. made of organic jersey knit fabric in navy blue, striped pattern, button "
                 "closure, classic casual style for everyday wear, lightweight and breathable").split()
SYLLABLES = "ka lo mi ne ru sa to ve bi da fe go hu ji ko lu ma no pe qu ri se ti um va we xo ya zu".split()
MODEL = {
    "generator": {"name": "t5", "options": {
        "tokenizer": "unigram", "tokenizer_vocab_size": 32128, "d_model": 512, "d_ff": 2048,
        "num_layers": 6, "num_heads": 8, "dropout_rate": 0.0}},
    # frozen like the paper's pretrained encoders (random weights stand in): batch norms folded, no gradients
    "global_encoder": {"name": "resnet152", "options": {"image_size": 224, "freeze": True}},
    "regional_encoder": {"name": "xception", "options": {"image_size": 299, "freeze": True}},
    "fusions": [{"name": "mag", "options": {"dropout": 0.0}}, {"name": "xattn", "options": {"dropout": 0.0}}],
    "max_input_tokens": 512,
}


# ----------------------------------------------------------------------------- data
def vocabulary(rng: random.Random, size: int = 600) -> tuple[list[str], list[float]]:
    """Made-up words, then product words, with Zipf weights: text that the trained tokenizer cuts into
    about 1.8 pieces per word, close to T5's rate on real catalog text. (With a handful of English
    words as the most frequent ones, the Unigram trainer of ``tokenizers`` falls back to single
    characters on a corpus this small, which would make every prompt three times too long.)"""
    made_up = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3))) for _ in range(size)]
    words = made_up + PRODUCT_WORDS
    return words, [1.0 / rank for rank in range(1, len(words) + 1)]


def text_length(rng: random.Random, shortest: int = 5, longest: int = 300) -> int:
    """A word count, log-uniform between ``shortest`` and ``longest``."""
    return round(math.exp(rng.uniform(math.log(shortest), math.log(longest))))


def tokenizer_corpus(products: list[Product], extra: int = 3000, seed: int = 1) -> list[str]:
    """The prompts plus more text of the same kind: a tokenizer is trained on a whole catalog."""
    rng = random.Random(seed)
    words, weights = vocabulary(random.Random(0))
    more = [" ".join(rng.choices(words, weights, k=text_length(rng, longest=120))) for _ in range(extra)]
    return [build_prompt(a, p) for p in products for a in ATTRIBUTES] + more


def real_texts(path: Path, count: int) -> list[tuple[str, str | None]]:
    """The (title, description) of the first ``count`` products of a product file (``--texts``)."""
    from mxt_sdk.data.readers import read_products

    texts = []
    for product in read_products(path):
        if isinstance(product, Product):
            texts.append((product.title, product.description))
        if len(texts) == count:
            return texts
    raise SystemExit(f"{path} has fewer than {count} readable products")


def write_products(folder: Path, count: int, seed: int, longest_words: int,
                   texts: list[tuple[str, str | None]] | None = None) -> list[Product]:
    """``count`` products with a JPEG or PNG of a random size (150-1600 px a side) and 5 to
    ``longest_words`` words of text, log-uniformly distributed (most texts short, a long tail), or the
    given real ``texts`` (title, description)."""
    rng = random.Random(seed)
    words_of, weights = vocabulary(random.Random(0))  # the same words whatever the seed
    (folder / "images").mkdir(parents=True, exist_ok=True)
    products = []
    for index in range(count):
        size = (rng.randint(150, 1600), rng.randint(150, 1600))
        image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
        draw = ImageDraw.Draw(image)
        for _ in range(6):
            x, y = rng.randrange(size[0]), rng.randrange(size[1])
            draw.rectangle((x, y, x + rng.randrange(20, 400), y + rng.randrange(20, 400)),
                           fill=tuple(rng.randrange(256) for _ in range(3)))
        name = f"images/p{index}.{'jpg' if index % 2 else 'png'}"
        image.save(folder / name)
        words = rng.choices(words_of, weights, k=text_length(rng, longest=longest_words))
        title, description = texts[index] if texts else (" ".join(words[:8]), " ".join(words[8:]) or None)
        products.append(Product(id=f"p{index}", product_type=rng.choice(["shirt", "dress", "shoe"]),
                                title=title, description=description, image=name))
    return products


# ----------------------------------------------------------------------------- baselines
class HFBaseline:
    """The same model driven the way a Hugging Face user would: ``T5ForConditionalGeneration.generate``
    on the fused encoder states, images decoded and encoded for every (product, attribute) pair."""

    def __init__(self, extractor: Extractor, image_root: Path, max_new_tokens: int):
        self.model = copy.deepcopy(extractor.model).eval()  # plain NCHW fp32, untouched by the engine
        self.tokenizer = extractor.model.generator.tokenizer
        self.loader = ImageLoader(self.model.preprocessing(), image_root, extractor.config.extraction.max_image_pixels)
        self.limit = extractor.config.model.max_input_tokens
        self.max_new_tokens = max_new_tokens
        vocab = self.model.generator.model.config.vocab_size
        # the SDK never emits ids its tokenizer cannot decode; an HF user suppresses them likewise
        self.suppress = list(range(len(self.tokenizer), vocab))

    @torch.inference_mode()
    def answer(self, pairs: list[tuple[Product, str]]) -> list[str]:
        """Answers for ``pairs`` processed together as one batch."""
        pixels, _ = self.loader.load([product.image for product, _ in pairs])
        features = self.model.encode_images(pixels)
        encoded = [truncate(ids, self.limit) for ids in
                   self.tokenizer([build_prompt(a, p) for p, a in pairs])["input_ids"]]
        input_ids, mask = pad_batch(encoded, self.tokenizer.pad_token_id)
        return self.generate(input_ids, mask, features)

    def generate(self, input_ids: torch.Tensor, mask: torch.Tensor, features) -> list[str]:
        hidden, mask = self.model.encode_text(input_ids, mask, features)
        output = self.model.generator.model.generate(
            encoder_outputs=BaseModelOutput(last_hidden_state=hidden), attention_mask=mask,
            max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1, suppress_tokens=self.suppress)
        return [" ".join(t.split()) for t in self.tokenizer.batch_decode(output, skip_special_tokens=True)]

    def run(self, pairs: list[tuple[Product, str]], batch_size: int) -> list[str]:
        answers = []
        for start in range(0, len(pairs), batch_size):
            answers += self.answer(pairs[start:start + batch_size])
        return answers

    @torch.inference_mode()
    def run_careful(self, products: list[Product], attributes: list[str], batch_size: int) -> list[str]:
        """B2: per chunk of ``batch_size`` products, images decoded and encoded once, prompts sorted by
        length, batches padded to their longest prompt; answers in (product, attribute) order."""
        answers = []
        for start in range(0, len(products), batch_size):
            chunk = products[start:start + batch_size]
            pixels, _ = self.loader.load([product.image for product in chunk])
            features = self.model.encode_images(pixels)
            examples = [(row, attribute) for row in range(len(chunk)) for attribute in attributes]
            encoded = [truncate(ids, self.limit) for ids in self.tokenizer(
                [build_prompt(attribute, chunk[row]) for row, attribute in examples])["input_ids"]]
            order = sorted(range(len(examples)), key=lambda i: len(encoded[i]))
            found = [""] * len(examples)
            for first in range(0, len(order), batch_size):
                batch = order[first:first + batch_size]
                input_ids, mask = pad_batch([encoded[i] for i in batch], self.tokenizer.pad_token_id)
                rows = torch.tensor([examples[i][0] for i in batch])
                for i, text in zip(batch, self.generate(input_ids, mask, features.select(rows))):
                    found[i] = text
            answers += found
        return answers


def run_sdk(extractor: Extractor, products: list[Product], attributes: list[str], dtype: str, image_root: Path,
            batch_size: int) -> list[str]:
    predictions = extractor.extract(products, attributes, dtype=dtype, image_root=image_root, batch_size=batch_size)
    errors = [p.error for p in predictions if p.error]
    if errors:
        raise RuntimeError(f"extraction failed: {errors[:3]}")
    return [p.raw_value or "" for p in predictions]


def timed(label: str, function, samples: int) -> tuple[Any, dict[str, float]]:
    with PeakMemory() as memory:
        started = time.perf_counter()
        result = function()
        seconds = time.perf_counter() - started
    print(f"  {label:<12} {samples / seconds:8.2f} samples/s  ({seconds:.1f} s, peak RSS {memory.gib:.2f} GiB)",
          flush=True)
    return result, {"seconds": seconds, "samples_per_second": samples / seconds, "peak_rss_gib": memory.gib}


def image_seconds(extractor: Extractor, products: list[Product], root: Path, batch_size: int,
                  dtype: str) -> float:
    """Seconds the two image encoders alone take over ``products`` (decoded beforehand, untimed), in chunks of
    ``batch_size`` as the engine runs them, in the engine's layout for ``dtype``: the part of every run's time
    that no text layout can remove, so ``B2 seconds / these`` bounds any layout's ratio to B2."""
    model = extractor._inference_model(dtype)  # the module the engine runs in this mode, made by its runs
    loader = ImageLoader(model.preprocessing(), root, extractor.config.extraction.max_image_pixels)
    chunks = [channels_last_pixels(loader.load([p.image for p in products[start:start + batch_size]])[0])
              for start in range(0, len(products), batch_size)]
    with torch.inference_mode(), autocast(dtype, "cpu"):
        model.encode_images(chunks[0])  # one-off kernel choices stay out
        started = time.perf_counter()
        for pixels in chunks:
            model.encode_images(pixels)
        return time.perf_counter() - started


def agreement(a: list[str], b: list[str]) -> float:
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


# ----------------------------------------------------------------------------- phases
def speed(products: list[Product], attributes: list[str], root: Path, batch_size: int,
          max_new_tokens: int, naive: bool = True) -> dict[str, Any]:
    print(f"Building the t5-small-shape model (resnet152@224 + xception@299) ...", flush=True)
    torch.manual_seed(0)
    extractor = Extractor.from_config({"model": MODEL, "extraction": {"canonicalizer": None}})
    extractor.config.model.max_answer_tokens = max_new_tokens  # no training metadata: this bounds generation
    extractor.config.model.answer_margin_tokens = 0
    extractor.model.generator.train_tokenizer(tokenizer_corpus(products))
    with torch.no_grad():  # random init favours the special ids (pad/EOS/unk): make answers non-empty
        extractor.model.generator.model.get_input_embeddings().weight[:3] *= SPECIAL_TOKEN_SCALE
    baseline = HFBaseline(extractor, root, max_new_tokens)
    pairs = [(p, a) for p in products for a in attributes]
    n = len(pairs)
    tokens = [len(ids) for ids in baseline.tokenizer([build_prompt(a, p) for p, a in pairs])["input_ids"]]
    print(f"{len(products)} products x {len(attributes)} attributes = {n} samples; max_new_tokens={max_new_tokens}, "
          f"tokenizer {len(baseline.tokenizer)} pieces, prompts {min(tokens)}-{max(tokens)} tokens "
          f"(mean {sum(tokens) / n:.0f})", flush=True)

    warm = products[:2]  # one-off costs (allocators, oneDNN kernels, int8 copy) stay out of the timings
    baseline.answer([(warm[0], ATTRIBUTES[0])])
    baseline.run([(p, a) for p in warm for a in attributes], batch_size)
    baseline.run_careful(warm, attributes, batch_size)
    per_product = copy.deepcopy(extractor)
    per_product.config.model.context_encoding = "per_product"
    assert per_product.model.per_product
    for dtype in DTYPES:
        run_sdk(extractor, warm, attributes, dtype, root, batch_size)
        run_sdk(per_product, warm, attributes, dtype, root, batch_size)

    results: dict[str, Any] = {"samples": n, "products": len(products), "attributes": len(attributes),
                               "prompt_tokens": {"min": min(tokens), "mean": sum(tokens) / n, "max": max(tokens)}}
    answers: dict[str, list[str]] = {}
    print("Timings (side by side, same process):", flush=True)
    for dtype in DTYPES:
        answers[f"S-{dtype}"], results[f"S-{dtype}"] = timed(
            f"S {dtype}", lambda dtype=dtype: run_sdk(extractor, products, attributes, dtype, root, batch_size), n)
    for dtype in DTYPES:
        answers[f"P-{dtype}"], results[f"P-{dtype}"] = timed(
            f"P {dtype}", lambda dtype=dtype: run_sdk(per_product, products, attributes, dtype, root, batch_size), n)
    answers["B2"], results["B2"] = timed("B2 careful", lambda: baseline.run_careful(products, attributes, batch_size), n)
    if naive:  # B1 and B0 take minutes on long texts; B2 is the reference of the ratios that matter
        answers["B1"], results["B1"] = timed("B1 batched", lambda: baseline.run(pairs, batch_size), n)
        answers["B0"], results["B0"] = timed("B0 naive", lambda: baseline.run(pairs, 1), n)
    reference = "B0" if naive else "B2"
    results["image_seconds"] = {dtype: image_seconds(extractor, products, root, batch_size, dtype) for dtype in DTYPES}
    print("  image encoders alone: " + ", ".join(f"{d} {t:.1f} s" for d, t in results["image_seconds"].items()),
          flush=True)

    with FlopCounterMode(display=False) as counter:
        run_sdk(extractor, products, attributes, "fp32", root, batch_size)
    flops = counter.get_total_flops()
    results["S-fp32"]["gflops_per_second"] = flops / results["S-fp32"]["seconds"] / 1e9
    results["flops_per_sample"] = flops / n
    for name in [f"S-{d}" for d in DTYPES if d != "fp32"]:
        results[name]["gflops_per_second"] = flops / results[name]["seconds"] / 1e9
    with FlopCounterMode(display=False) as counter:
        run_sdk(per_product, products, attributes, "fp32", root, batch_size)
    results["flops_per_sample_per_product"] = counter.get_total_flops() / n
    for name in [f"P-{d}" for d in DTYPES]:
        results[name]["gflops_per_second"] = counter.get_total_flops() / results[name]["seconds"] / 1e9
    results["agreement"] = {**({"S-fp32 vs B0": agreement(answers["S-fp32"], answers["B0"]),
                                "S-fp32 vs B1": agreement(answers["S-fp32"], answers["B1"]),
                                "B2 vs B0": agreement(answers["B2"], answers["B0"]),
                                "B1 vs B0": agreement(answers["B1"], answers["B0"])} if naive else {}),
                            "S-fp32 vs B2": agreement(answers["S-fp32"], answers["B2"]),
                            **{f"{m}-{d} vs {m}-fp32 (random weights)": agreement(answers[f"{m}-{d}"],
                                                                                   answers[f"{m}-fp32"])
                               for m in "SP" for d in DTYPES if d != "fp32"}}
    results["answers"] = {"of": reference, "empty": sum(not a for a in answers[reference]) / n,
                          "mean_words": sum(len(a.split()) for a in answers[reference]) / n,
                          "examples": answers[reference][:5]}
    results["differences S-fp32 vs B0"] = [
        {"pair": f"{p.id}/{a}", "S": s, "B0": b}
        for (p, a), s, b in zip(pairs, answers["S-fp32"], answers["B0"]) if s != b][:10] if naive else []
    results["differences S-fp32 vs B2"] = [
        {"pair": f"{p.id}/{a}", "S": s, "B2": b}
        for (p, a), s, b in zip(pairs, answers["S-fp32"], answers["B2"]) if s != b][:10]
    return results


def trained_agreement(folder: Path, steps: int, seed: int, context_encoding: str = "per_question") -> dict[str, Any]:
    """Train tiny-cpu (with ``context_encoding``) for ``steps`` on the synthetic catalog; agreement of bf16/int8
    answers with fp32."""
    from mxt_sdk.config import load_config
    from mxt_sdk.experiments.synthetic import write_catalog

    print(f"Training tiny-cpu ({context_encoding}) for {steps} steps on the synthetic catalog (for the agreement "
          "check) ...", flush=True)
    paths = write_catalog(folder / "catalog", train_size=1500, test_size=300, seed=seed)
    torch.manual_seed(seed)
    config = load_config("tiny-cpu")
    config.model.context_encoding = context_encoding
    extractor = Extractor.from_config(config)
    extractor.fit(paths["train"], output_dir=folder / f"tiny-{context_encoding}", max_steps=steps, eval_every=10**6,
                  seed=seed)
    from mxt_sdk.data.readers import load_products

    test = [p for p in load_products(paths["test"], "test") if p.attributes]
    values = {}
    for dtype in DTYPES:
        predictions = extractor.extract(test, lambda p: list(p.attributes), dtype=dtype,
                                        image_root=paths["test"].parent)
        values[dtype] = [p.value or "" for p in predictions]
    gold = [v for p in test for v in p.attributes.values()]
    accuracy = {d: sum(v.casefold() == (g or "").casefold() for v, g in zip(values[d], gold)) / len(gold)
                for d in values}
    return {"train_steps": steps, "samples": len(gold), "accuracy": accuracy,
            **{f"{d} vs fp32": agreement(values[d], values["fp32"]) for d in DTYPES if d != "fp32"}}


def shipped_cost(folder: Path, steps: int, seed: int, rounds: int = 2) -> dict[str, Any]:
    """The configuration users get (``mxt-cpu``), trained ``steps`` steps on the synthetic catalog: extraction
    samples/s (fp32) with its decoding as shipped (known-value chooser, span binding, image prior) against
    free generation on the same model (chooser and binding off, so no prior), the two taking turns ``rounds``
    times; answers per path and accuracy of each."""
    from collections import Counter

    from mxt_sdk.data.readers import load_products

    print(f"Training {SHIPPED_CONFIG} for {steps} steps on the synthetic catalog (the shipped decoding's cost) ...",
          flush=True)
    model, catalog = train_on_synthetic(folder / "shipped", SHIPPED_CONFIG, steps=steps, train_size=1500,
                                        test_size=200, seed=seed)
    extractor = Extractor.from_pretrained(model)
    shipped = extractor.config.extraction.model_copy()
    test = [p for p in load_products(catalog["test"], "test") if p.attributes]
    gold = [v for p in test for v in p.attributes.values()]
    ways = {"as shipped": shipped, "free generation": shipped.model_copy(update={"choose_among_known": 0,
                                                                                 "choose_text_span": None})}
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    answers: dict[str, list] = {}
    for turn in range(rounds):
        for name in (ways if turn % 2 == 0 else reversed(list(ways))):
            extractor.config.extraction = ways[name].model_copy()
            started = time.perf_counter()
            answers[name] = extractor.extract(test, lambda p: list(p.attributes), dtype="fp32",
                                              image_root=catalog["test"].parent)
            seconds[name].append(time.perf_counter() - started)
    result: dict[str, Any] = {"config": SHIPPED_CONFIG, "train_steps": steps, "samples": len(gold), "ways": {}}
    for name, predictions in answers.items():
        best = min(seconds[name])
        result["ways"][name] = {
            "samples_per_second": len(gold) / best, "seconds": seconds[name],
            "accuracy": sum((p.value or "").casefold() == (g or "").casefold() for p, g in zip(predictions, gold)) / len(gold),
            "decided_by": dict(Counter(p.decided_by for p in predictions))}
    ways_result = result["ways"]
    result["shipped_over_free_seconds"] = (ways_result["free generation"]["samples_per_second"]
                                           / ways_result["as shipped"]["samples_per_second"])
    return result


def report(results: dict[str, Any]) -> str:
    if "speed" not in results:  # --shipped-only
        return _shipped_lines(results["shipped"])
    s = results["speed"]
    baselines = [name for name in ("B0", "B1", "B2") if name in s]

    def ratio(row: dict[str, Any], name: str) -> str:
        return f"{row['samples_per_second'] / s[name]['samples_per_second']:6.1f}x" if name in s else f"{'-':>7}"

    fastest = max([f"S-{d}" for d in DTYPES], key=lambda m: s[m]["samples_per_second"])
    fastest_per_product = max([f"P-{d}" for d in DTYPES], key=lambda m: s[m]["samples_per_second"])
    lines = [f"machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, torch "
             f"{results['machine']['torch']}",
             f"matmul 2048^3: fp32 {results['matmul_gflops']['fp32']:.0f} GFLOP/s, "
             f"bf16 {results['matmul_gflops']['bf16']:.0f} GFLOP/s", "",
             f"{'run':<8} {'samples/s':>10} {'vs B0':>7} {'vs B1':>7} {'vs B2':>7} {'GFLOP/s':>8} {'peak GiB':>9}"]
    for name in [*baselines, *[f"{m}-{d}" for m in "SP" for d in DTYPES]]:
        row = s[name]
        gflops = f"{row['gflops_per_second']:8.1f}" if "gflops_per_second" in row else f"{'':>8}"
        lines.append(f"{name:<8} {row['samples_per_second']:10.2f} "
                     f"{ratio(row, 'B0')} {ratio(row, 'B1')} {ratio(row, 'B2')} {gflops} {row['peak_rss_gib']:9.2f}")
    lines += ["", f"fastest CPU mode: {fastest}; per_product: {fastest_per_product}",
              f"answers ({s['answers'].get('of', 'B0')}): {s['answers']['empty']:.0%} empty, {s['answers']['mean_words']:.1f} words on average, "
              f"e.g. {s['answers']['examples'][:3]}", "agreement:"]
    lines += [f"  {k}: {v:.1%}" for k, v in s["agreement"].items()]
    if "image_seconds" in s:  # where the time goes: the encoders are the same work in every layout
        b2 = s["B2"]["seconds"]
        lines += ["image encoders alone (the part no text layout removes):"]
        lines += [f"  {d}: {t:.1f} s, {t / s[f'P-{d}']['seconds']:.0%} of P-{d}'s time; at most {b2 / t:.1f}x B2 for "
                  f"any layout with these encoders in {d}" for d, t in s["image_seconds"].items() if f"P-{d}" in s]
    lines += [f"  S-fp32 != B2: {d['pair']}: S {d['S']!r}, B2 {d['B2']!r}" for d in s["differences S-fp32 vs B2"]]
    for key, label in (("trained", "tiny-cpu"), ("trained_per_product", "tiny-cpu per_product")):
        if key not in results:
            continue
        t = results[key]
        lines += [f"  trained {label} ({t['train_steps']} steps, {t['samples']} answers): "
                  + ", ".join(f"{d} vs fp32 {t[f'{d} vs fp32']:.1%}" for d in DTYPES if d != "fp32") + "; accuracy "
                  + ", ".join(f"{k} {v:.1%}" for k, v in t["accuracy"].items())]
    if "shipped" in results:
        lines += ["", _shipped_lines(results["shipped"])]
    return "\n".join(lines)


def _shipped_lines(t: dict[str, Any]) -> str:
    lines = [f"{t['config']} (the shipped configuration) trained {t['train_steps']} steps, {t['samples']} answers on "
             "the synthetic test split, fp32 (best of the turns):"]
    lines += [f"  {name:<16} {w['samples_per_second']:8.2f} samples/s, accuracy {w['accuracy']:.1%}, by path "
              f"{w['decided_by']}" for name, w in t["ways"].items()]
    lines.append(f"  the shipped decoding takes {t['shipped_over_free_seconds']:.2f}x the time of free generation")
    return "\n".join(lines)


SPECIAL_TOKEN_SCALE = 0.2
DTYPES = ("fp32", "bf16", "int8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=24)
    parser.add_argument("--attributes", type=int, default=10, choices=range(1, len(ATTRIBUTES) + 1))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--longest-words", type=int, default=120,
                        help="product texts have 5 to this many words, log-uniform (public sets: median "
                             "15-23 words, at most 43)")
    parser.add_argument("--b2-only", action="store_true", help="skip the naive baselines B0 and B1 (minutes on "
                        "long texts); ratios against B2 only")
    parser.add_argument("--dtypes", default="fp32,bf16,int8", help="the engine's modes to time (fp32 always)")
    parser.add_argument("--texts", type=Path, help="take the products' titles and descriptions from this product "
                        "file (e.g. ../shared/data/myntra/test.jsonl: catalog texts of real length)")
    parser.add_argument("--train-steps", type=int, default=300, help="0 skips the trained-model agreement")
    parser.add_argument("--shipped-steps", type=int, default=100,
                        help=f"train {SHIPPED_CONFIG} this many steps and time its shipped decoding (0 skips)")
    parser.add_argument("--shipped-only", action="store_true", help="only the shipped configuration's decoding cost")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    global DTYPES
    DTYPES = ("fp32", *[d for d in args.dtypes.split(",") if d and d != "fp32"])
    results: dict[str, Any] = {"command": " ".join(sys.argv), "machine": machine(),
                               "matmul_gflops": {"fp32": matmul_gflops(torch.float32),
                                                 "bf16": matmul_gflops(torch.bfloat16)}}
    with tempfile.TemporaryDirectory(prefix="mxt-speed-") as tmp:
        folder = Path(tmp)
        if args.shipped_only:
            results["shipped"] = shipped_cost(folder, args.shipped_steps or 150, args.seed)
            _write(results, args.output)
            return
        texts = real_texts(args.texts, args.products) if args.texts else None
        products = write_products(folder / "data", args.products, args.seed, args.longest_words, texts)
        results["speed"] = speed(products, ATTRIBUTES[:args.attributes], folder / "data", args.batch_size,
                                 args.max_new_tokens, naive=not args.b2_only)
        if args.train_steps:
            results["trained"] = trained_agreement(folder, args.train_steps, args.seed)
            results["trained_per_product"] = trained_agreement(folder, args.train_steps, args.seed, "per_product")
        if args.shipped_steps:
            results["shipped"] = shipped_cost(folder, args.shipped_steps, args.seed)
    _write(results, args.output)


def _write(results: dict[str, Any], output: Path | None) -> None:
    text = report(results)
    print("\n" + text)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=2), encoding="utf-8")
        output.with_suffix(".txt").write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
