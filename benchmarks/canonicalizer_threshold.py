"""The experiment behind the ``faiss`` canonicalizer's defaults (``similarity_threshold``, ``dim``).

    python benchmarks/canonicalizer_threshold.py      # ~15 s on one CPU core

A small hand-made catalog vocabulary (8 pairs, 75 values: colours, necklines, materials, closures,
sleeve types, capacities, storage sizes) is probed with two kinds of generated values:

* **near misses** that should map onto a known value: hand-written misspellings seen in generated
  output (``"navy blu"``, ``"polyster"``, ``"crewneck"``) plus, for every known value, seeded
  synthetic typos (one deleted, substituted, transposed or inserted letter; a space dropped);
* **different values** that must stay novel: plausible zero-shot values of the same pairs, many of
  them hard (``"puff sleeve"`` beside ``"cap sleeve"``, ``"faux fur"`` beside ``"faux leather"``,
  ``"400 ml"`` beside ``"300 ml"``).

Values that the threshold-free stages already settle (same exact key or loose text) are counted
apart; the tables score only what reaches the FAISS search, so they measure the threshold itself.
Printed, per n-gram range and threshold: the share of near misses mapped to the right value (all,
hand-written, synthetic), mapped to a wrong one, the share of different values wrongly merged, and
near misses mapped to a wrong value when the different values are known too (a crowded vocabulary);
then, per embedding size, the error against the un-hashed n-gram cosine, the accuracy at the chosen
threshold, and the cost per value.
"""
from __future__ import annotations

import argparse
import math
import random
import time
from collections import Counter

import numpy as np

from mxt_faiss.embedding import CharNgramEmbedder, exact_key, loose_text

VOCABULARY: dict[tuple[str, str], list[str]] = {
    ("dress", "color"): ["navy blue", "light blue", "blue", "red", "black", "white", "dark green", "green",
                         "burgundy", "beige", "ivory", "off white", "multicolor", "pink", "hot pink", "grey",
                         "charcoal", "gold", "silver", "leopard print"],
    ("dress", "neckline"): ["v-neck", "crew neck", "scoop neck", "halter", "sweetheart", "off the shoulder",
                            "boat neck", "square neck", "high neck", "one shoulder", "cowl neck", "keyhole"],
    ("dress", "material"): ["cotton", "polyester", "silk", "linen", "rayon", "spandex", "chiffon", "lace",
                            "velvet", "denim", "satin", "wool blend"],
    ("shoe", "closure"): ["lace-up", "slip-on", "zipper", "buckle", "hook and loop", "pull-on", "elastic"],
    ("shirt", "sleeve"): ["long sleeve", "short sleeve", "sleeveless", "3/4 sleeve", "cap sleeve"],
    ("chair", "material"): ["leather", "faux leather", "mesh", "fabric", "wood", "metal", "plastic", "velvet"],
    ("mug", "capacity"): ["300 ml", "350 ml", "12 oz", "16 oz", "11 oz", "500 ml", "1 l"],
    ("laptop", "storage"): ["128 GB", "256 GB", "512 GB", "1 TB"],
}

#: (pair, generated, expected known value): misspellings of the kind generation produces.
HAND_NEAR_MISSES: list[tuple[tuple[str, str], str, str]] = [
    (("dress", "color"), "navy blu", "navy blue"), (("dress", "color"), "navyblue", "navy blue"),
    (("dress", "color"), "nvy blue", "navy blue"), (("dress", "color"), "burgandy", "burgundy"),
    (("dress", "color"), "burgundi", "burgundy"), (("dress", "color"), "offwhite", "off white"),
    (("dress", "color"), "multi color", "multicolor"), (("dress", "color"), "multicolour", "multicolor"),
    (("dress", "color"), "charcol", "charcoal"), (("dress", "color"), "leopard prints", "leopard print"),
    (("dress", "color"), "leopard-print", "leopard print"), (("dress", "color"), "hotpink", "hot pink"),
    (("dress", "color"), "light-blue", "light blue"), (("dress", "color"), "lightblue", "light blue"),
    (("dress", "color"), "dark grean", "dark green"), (("dress", "color"), "ivroy", "ivory"),
    (("dress", "neckline"), "v neck", "v-neck"), (("dress", "neckline"), "vneck", "v-neck"),
    (("dress", "neckline"), "crewneck", "crew neck"), (("dress", "neckline"), "scoopneck", "scoop neck"),
    (("dress", "neckline"), "sweatheart", "sweetheart"),
    (("dress", "neckline"), "off-the-shoulder", "off the shoulder"),
    (("dress", "neckline"), "off shoulder", "off the shoulder"), (("dress", "neckline"), "boatneck", "boat neck"),
    (("dress", "neckline"), "halter neck", "halter"), (("dress", "neckline"), "one-shoulder", "one shoulder"),
    (("dress", "neckline"), "cowlneck", "cowl neck"), (("dress", "neckline"), "key hole", "keyhole"),
    (("dress", "material"), "polyster", "polyester"), (("dress", "material"), "poliester", "polyester"),
    (("dress", "material"), "chifon", "chiffon"), (("dress", "material"), "cottton", "cotton"),
    (("dress", "material"), "spandx", "spandex"), (("dress", "material"), "velvett", "velvet"),
    (("dress", "material"), "wool-blend", "wool blend"), (("dress", "material"), "wool blends", "wool blend"),
    (("shoe", "closure"), "lace up", "lace-up"), (("shoe", "closure"), "laceup", "lace-up"),
    (("shoe", "closure"), "slip on", "slip-on"), (("shoe", "closure"), "slipon", "slip-on"),
    (("shoe", "closure"), "zip per", "zipper"), (("shoe", "closure"), "hook & loop", "hook and loop"),
    (("shoe", "closure"), "hook-and-loop", "hook and loop"), (("shoe", "closure"), "pullon", "pull-on"),
    (("shirt", "sleeve"), "long sleeves", "long sleeve"), (("shirt", "sleeve"), "longsleeve", "long sleeve"),
    (("shirt", "sleeve"), "short-sleeve", "short sleeve"), (("shirt", "sleeve"), "sleeveles", "sleeveless"),
    (("shirt", "sleeve"), "3/4 sleeves", "3/4 sleeve"), (("shirt", "sleeve"), "cap-sleeve", "cap sleeve"),
    (("chair", "material"), "faux-leather", "faux leather"), (("chair", "material"), "fauxleather", "faux leather"),
    (("chair", "material"), "leathr", "leather"), (("chair", "material"), "platic", "plastic"),
    (("mug", "capacity"), "300ml", "300 ml"), (("mug", "capacity"), "12oz", "12 oz"),
    (("mug", "capacity"), "16 0z", "16 oz"), (("mug", "capacity"), "500 mL", "500 ml"),
    (("laptop", "storage"), "128GB", "128 GB"), (("laptop", "storage"), "256 gb", "256 GB"),
    (("laptop", "storage"), "1TB", "1 TB"), (("laptop", "storage"), "512 G B", "512 GB"),
]

#: (pair, generated): values that are not spellings of any known value and must stay novel.
DIFFERENT: list[tuple[tuple[str, str], str]] = [
    *((("dress", "color"), v) for v in [
        "teal", "maroon", "olive", "coral", "mustard", "lavender", "turquoise", "dark blue", "sky blue",
        "light green", "blue green", "navy", "royal blue", "rose gold", "light pink", "dark grey",
        "off black", "cream", "khaki", "floral print", "animal print", "red and black", "wine red", "mint"]),
    *((("dress", "neckline"), v) for v in [
        "mock neck", "turtleneck", "asymmetric", "collared", "plunge", "henley", "split neck", "v-back",
        "square", "high-low", "round neck", "cold shoulder", "sweetheart halter"]),
    *((("dress", "material"), v) for v in [
        "nylon", "acrylic", "cashmere", "viscose", "jersey", "tulle", "organza", "modal", "cotton blend",
        "silk blend", "polyamide", "faux suede", "lace trim"]),
    *((("shoe", "closure"), v) for v in ["toggle", "snap", "drawstring", "velcro", "ankle strap",
                                         "zip-up", "lace", "pull tab"]),
    *((("shirt", "sleeve"), v) for v in ["puff sleeve", "bell sleeve", "flutter sleeve", "long",
                                          "roll-up sleeve", "short", "raglan sleeve", "sleeve"]),
    *((("chair", "material"), v) for v in ["rattan", "bamboo", "foam", "faux fur", "steel", "glass",
                                            "teak wood", "metal frame", "leatherette", "vinyl"]),
    *((("mug", "capacity"), v) for v in ["400 ml", "20 oz", "13 oz", "350 oz", "1.5 l", "30 ml", "11 ml", "2 l"]),
    *((("laptop", "storage"), v) for v in ["64 GB", "2 TB", "1.5 TB", "128 TB", "256 MB", "32 GB"]),
]

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def synthetic_typos(value: str, rng: random.Random) -> list[str]:
    """One deleted, substituted, transposed and inserted letter (never the first), one space dropped."""
    positions = [i for i, c in enumerate(value) if c.isalpha() and i > 0]
    out = []
    if len(positions) >= 3:
        i = rng.choice(positions)
        out.append(value[:i] + value[i + 1:])
        i = rng.choice(positions)
        out.append(value[:i] + rng.choice(_LETTERS.replace(value[i].lower(), "")) + value[i + 1:])
        pairs = [i for i in positions if i + 1 < len(value) and value[i + 1].isalpha() and value[i] != value[i + 1]]
        if pairs:
            i = rng.choice(pairs)
            out.append(value[:i] + value[i + 1] + value[i] + value[i + 2:])
        i = rng.choice(positions)
        out.append(value[:i] + rng.choice(_LETTERS) + value[i:])
    if " " in value and not any(c.isdigit() for c in value):
        out.append(value.replace(" ", "", 1))
    return out


def near_misses(seed: int = 0) -> list[tuple[tuple[str, str], str, str]]:
    rng = random.Random(seed)
    found = list(HAND_NEAR_MISSES)
    for pair, values in VOCABULARY.items():
        for value in values:
            found.extend((pair, typo, value) for typo in synthetic_typos(value, rng))
    return list(dict.fromkeys(found))  # a synthetic typo may repeat a hand-written one


def _unhashed(text: str, nmin: int, nmax: int) -> Counter:
    padded = f" {loose_text(text)} "
    return Counter(padded[i:i + n] for n in range(nmin, nmax + 1) for i in range(len(padded) - n + 1))


def unhashed_cosine(a: str, b: str, nmin: int = 2, nmax: int = 4) -> float:
    ca, cb = _unhashed(a, nmin, nmax), _unhashed(b, nmin, nmax)
    dot = sum(ca[g] * cb[g] for g in ca)
    norm = math.sqrt(sum(v * v for v in ca.values()) * sum(v * v for v in cb.values()))
    return dot / norm if norm else 0.0


def _settled(pair, value) -> str | None:
    """The known value the threshold-free stages (exact key, loose text) give, if any."""
    for known in VOCABULARY[pair]:
        if exact_key(known) == exact_key(value) or loose_text(known) == loose_text(value):
            return known
    return None


def _score(canon, positives, negatives) -> dict:
    got_pos = canon.canonicalize_many([(g, *p) for p, g, _ in positives])
    got_neg = canon.canonicalize_many([(g, *p) for p, g in negatives])
    right = [not novel and value == e for (value, novel), (_, _, e) in zip(got_pos, positives)]
    wrong = [not novel and value != e for (value, novel), (_, _, e) in zip(got_pos, positives)]
    return {"right": right, "wrong": sum(wrong) / len(positives),
            "merged": sum(not novel for _, novel in got_neg) / max(len(negatives), 1)}


def evaluate(thresholds, dim: int, nmin: int, nmax: int, seed: int = 0) -> dict:
    """Score the FAISS stage of a ``faiss`` canonicalizer over the probe set, per threshold.

    ``crowded_wrong``: near misses mapped to a wrong value when the different values are known too
    (a denser vocabulary, where a near miss has confusable neighbours)."""
    from mxt_faiss.canonicalizer import FaissCanonicalizer

    vocabulary = {pair: {v: 1 for v in values} for pair, values in VOCABULARY.items()}
    crowded = {pair: {**values, **{g: 1 for p, g in DIFFERENT if p == pair}} for pair, values in vocabulary.items()}
    everything = near_misses(seed)
    positives = [(p, g, e) for p, g, e in everything if _settled(p, g) is None]
    hand = [(p, g, e) in HAND_NEAR_MISSES for p, g, e in positives]
    negatives = [(p, g) for p, g in DIFFERENT if _settled(p, g) is None]
    rows = []
    for threshold in thresholds:
        options = {"similarity_threshold": threshold, "dim": dim, "ngram_min": nmin, "ngram_max": nmax}
        canon = FaissCanonicalizer(FaissCanonicalizer.parse_options(options))
        canon.fit(vocabulary)
        score = _score(canon, positives, negatives)
        canon.fit(crowded)
        crowded_score = _score(canon, positives, [])
        right = score["right"]
        rows.append({
            "threshold": threshold,
            "right": sum(right) / len(right),
            "hand": sum(r for r, h in zip(right, hand) if h) / sum(hand),
            "synthetic": sum(r for r, h in zip(right, hand) if not h) / (len(hand) - sum(hand)),
            "wrong": score["wrong"], "merged": score["merged"], "crowded_wrong": crowded_score["wrong"],
            "balanced": (sum(right) / len(right) + 1 - score["merged"]) / 2,
        })
    return {"positives": len(positives), "hand": sum(hand), "negatives": len(negatives),
            "settled": (len(everything) - len(positives), len(DIFFERENT) - len(negatives)), "rows": rows}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranges", nargs="+", default=["2-4", "2-3", "1-3", "1-2"],
                        help="character n-gram ranges to compare, as MIN-MAX")
    parser.add_argument("--threshold", type=float, default=0.85, help="threshold of the per-dim table")
    parser.add_argument("--ngrams", default="1-2", help="n-gram range of the per-dim table")
    parser.add_argument("--dims", type=int, nargs="+", default=[128, 256, 512, 1024, 2048, 4096])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    thresholds = [round(0.6 + 0.05 * i, 2) for i in range(8)]

    for spec in args.ranges:
        nmin, nmax = map(int, spec.split("-"))
        result = evaluate(thresholds, dim=1024, nmin=nmin, nmax=nmax, seed=args.seed)
        if spec == args.ranges[0]:
            print(f"Probe set: {result['positives']} near misses ({result['hand']} hand-written) and "
                  f"{result['negatives']} different values reach FAISS; {result['settled'][0]} near misses and "
                  f"{result['settled'][1]} different values were settled by the exact / loose keys first.")
        print(f"\nn-grams {nmin}..{nmax}, dim 1024\n")
        print("threshold | near miss -> right (all / hand / synthetic) | -> wrong | different merged | "
              "crowded: near miss -> wrong | balanced acc.")
        print("--- | --- | --- | --- | --- | ---")
        for row in result["rows"]:
            print(f"{row['threshold']:.2f} | {row['right']:.1%} / {row['hand']:.1%} / {row['synthetic']:.1%} | "
                  f"{row['wrong']:.1%} | {row['merged']:.1%} | {row['crowded_wrong']:.1%} | {row['balanced']:.1%}")

    nmin, nmax = map(int, args.ngrams.split("-"))
    pairs = [(g, e) for _, g, e in near_misses(args.seed)] + \
            [(g, known) for (pair, g) in DIFFERENT for known in VOCABULARY[pair]]
    reference = np.array([unhashed_cosine(a, b, nmin, nmax) for a, b in pairs])
    words = [g for g, _ in pairs]
    print(f"\nEmbedding size, n-grams {nmin}..{nmax}, threshold {args.threshold} (cosine error against the "
          f"un-hashed n-gram cosine over {len(pairs)} value pairs):\n")
    print("dim | max abs. cosine error | mean abs. error | balanced acc. | embed 1 value | embed 1000 | "
          "FAISS search, 1 query in 1000 values")
    print("--- | --- | --- | --- | --- | --- | ---")
    for dim in args.dims:
        embedder = CharNgramEmbedder(nmin, nmax, dim)
        hashed = np.array([float(embedder.embed(a) @ embedder.embed(b)) for a, b in pairs])
        error = np.abs(hashed - reference)
        accuracy = evaluate([args.threshold], dim=dim, nmin=nmin, nmax=nmax, seed=args.seed)["rows"][0]["balanced"]
        start = time.perf_counter()
        for word in words[:500]:
            embedder.embed(word)
        one = (time.perf_counter() - start) / 500
        start = time.perf_counter()
        embedder.embed_many((words * 3)[:1000])
        many = time.perf_counter() - start
        search = _search_time(dim)
        print(f"{dim} | {error.max():.3f} | {error.mean():.4f} | {accuracy:.1%} | {one * 1e6:.0f} µs | "
              f"{many * 1e3:.1f} ms | {search * 1e6:.1f} µs")
    _print_call_costs()


def _print_call_costs(repeats: int = 2000) -> None:
    """Cost per value with the default options: the threshold-free paths, the FAISS path on first
    sight and repeated (remembered), and batches."""
    from mxt_faiss.canonicalizer import FaissCanonicalizer

    vocabulary = {pair: {v: 1 for v in values} for pair, values in VOCABULARY.items()}
    probes = list(dict.fromkeys([(g, *p) for p, g, _ in near_misses()] + [(g, *p) for p, g in DIFFERENT]))
    searched = [q for q in probes if _settled((q[1], q[2]), q[0]) is None]

    def fresh(**options):
        canon = FaissCanonicalizer(FaissCanonicalizer.parse_options(options))
        canon.fit(vocabulary)
        canon.canonicalize_many([("zzzz", *pair) for pair in VOCABULARY])  # builds every pair's index
        return canon

    def per_value(function, items, rounds=1):
        start = time.perf_counter()
        for _ in range(rounds):
            function(items)
        return (time.perf_counter() - start) / rounds / len(items) * 1e6

    print("\nDefault options, cost per value:\n")
    canon = fresh()
    for label, value in [("exact hit", "Navy Blue"), ("loose hit", "navy-blue")]:
        cost = per_value(lambda items: [canon.canonicalize(v, product_type="dress", attribute="color")
                                        for v in items], [value] * repeats)
        print(f"* {label} ({value!r}), canonicalize: {cost:.1f} µs")
    one_by_one = lambda items: [canon.canonicalize(v, product_type=pt, attribute=a) for v, pt, a in items]
    print(f"* FAISS path, first sight, canonicalize one by one ({len(searched)} distinct values): "
          f"{per_value(one_by_one, searched):.1f} µs")
    print(f"* FAISS path, the same values again (decision remembered): {per_value(one_by_one, searched, 5):.1f} µs")
    for threads in (1, 0):
        canon = fresh(search_threads=threads)
        print(f"* FAISS path, first sight, canonicalize_many over the same values, search_threads={threads}: "
              f"{per_value(canon.canonicalize_many, searched):.1f} µs")


def _search_time(dim: int, size: int = 1000, repeats: int = 300) -> float:
    """Seconds per single-vector FAISS search in an ``IndexFlatIP`` of ``size`` random unit vectors."""
    import faiss

    rng = np.random.default_rng(0)
    data = rng.standard_normal((size, dim)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(dim)
    index.add(data)
    query = data[:1]
    start = time.perf_counter()
    for _ in range(repeats):
        index.search(query, 8)
    return (time.perf_counter() - start) / repeats


if __name__ == "__main__":
    main()
