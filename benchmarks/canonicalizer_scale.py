"""Canonicalization at catalog scale: the ``faiss`` canonicalizer against exact numpy search.

Run from the repository root (about 15 minutes at full size on a shared 2-core machine)::

    nice -n 10 python benchmarks/canonicalizer_scale.py --output /tmp/bench/canon.json
    python benchmarks/canonicalizer_scale.py --values 100000 --pairs 1000 --big-pair 50000 \\
        --queries 10000 --exact-sample 1000      # a few minutes

Generates ``--values`` known values over ``--pairs`` (product type, attribute) pairs, one of which
(brand-like) holds ``--big-pair`` of them, and ``--queries`` generated values that need a
nearest-neighbour search (slips of known values, and new values; ``catalog_values.py``). Then:

1. **faiss**: fit, build every index (exact up to ``exact_max_values`` values, HNSW above), canonicalize all
   queries in one ``canonicalize_many`` call; build and query time, peak RSS of the process up to
   then (data included), and the index bytes.
2. **exact**: the same canonicalizer pipeline (exact and loose keys, the same decision rule) with
   each pair's search replaced by a float32 numpy product over all its values, on a random sample
   of ``--exact-sample`` queries (the whole set takes hours on 2 cores). faiss is timed on the same
   sample, with fresh decision memories, so the speed ratio compares like with like; the agreement
   is the share of sampled queries where both give the same (value, novel) answer.
"""
from __future__ import annotations

import argparse
import gc
import random
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins"), str(Path(__file__).resolve().parent)]
from catalog_values import queries as make_queries, vocabulary  # noqa: E402
from measure import machine, report  # noqa: E402
from mxt_faiss.canonicalizer import CANDIDATES, FaissCanonicalizer  # noqa: E402

QUERY_SLICE = 64  # queries per numpy product (bounds the score matrix of a large pair)


class NumpyIndex:
    """Exact search: every value of the pair scored with one float32 matrix product."""

    kind = "numpy"

    def __init__(self, vectors: np.ndarray):
        self.vectors = vectors

    @property
    def ntotal(self) -> int:
        return len(self.vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores_out, ids_out = [], []
        for start in range(0, len(queries), QUERY_SLICE):
            scores = queries[start:start + QUERY_SLICE] @ self.vectors.T
            ids = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else \
                np.tile(np.arange(scores.shape[1]), (len(scores), 1))
            scores_out.append(np.take_along_axis(scores, ids, axis=1))
            ids_out.append(ids)
        return np.concatenate(scores_out), np.concatenate(ids_out).astype(np.int64)


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def forget_decisions(canon: FaissCanonicalizer) -> None:
    for pair in canon._pairs.values():
        pair.decisions.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--values", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--big-pair", type=int, default=500_000)
    parser.add_argument("--queries", type=int, default=100_000)
    parser.add_argument("--exact-sample", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    started = time.perf_counter()
    vocab = vocabulary(args.values, args.pairs, args.big_pair, args.seed)
    asked = make_queries(vocab, args.queries, seed=args.seed + 1)
    generated = time.perf_counter() - started
    print(f"generated {sum(map(len, vocab.values()))} values over {len(vocab)} pairs and {len(asked)} queries "
          f"in {generated:.0f} s; RSS peak {peak_rss_gib():.2f} GiB", flush=True)

    canon = FaissCanonicalizer(FaissCanonicalizer.Options())
    started = time.perf_counter()
    canon.fit(vocab)
    canon.build_indexes()
    build = time.perf_counter() - started
    stats = canon.index_stats()
    print(f"faiss build {build:.0f} s: {stats}", flush=True)
    started = time.perf_counter()
    faiss_answers = canon.canonicalize_many(asked)
    faiss_seconds = time.perf_counter() - started
    faiss_peak = peak_rss_gib()
    print(f"faiss: {len(asked)} queries in {faiss_seconds:.1f} s ({len(asked) / faiss_seconds:.0f}/s); "
          f"process peak RSS {faiss_peak:.2f} GiB", flush=True)

    sample = sorted(random.Random(args.seed + 2).sample(range(len(asked)), min(args.exact_sample, len(asked))))
    sampled = [asked[i] for i in sample]
    forget_decisions(canon)
    started = time.perf_counter()
    faiss_sample = canon.canonicalize_many(sampled)
    faiss_sample_seconds = time.perf_counter() - started
    assert faiss_sample == [faiss_answers[i] for i in sample], "faiss answers depend on the batch"

    # Exact: the same pipeline, each asked pair's index replaced by a numpy matrix of all its values.
    started = time.perf_counter()
    for key in {(pt, attr) for _, pt, attr in sampled}:
        pair = canon._pairs[key]
        pair.index = NumpyIndex(np.concatenate([canon._embedder.embed_many(pair.canonical[s:s + 16384])
                                                for s in range(0, len(pair.canonical), 16384)]))
    gc.collect()
    exact_build = time.perf_counter() - started
    forget_decisions(canon)
    started = time.perf_counter()
    exact_sample = canon.canonicalize_many(sampled)
    exact_seconds = time.perf_counter() - started
    agree = sum(a == b for a, b in zip(faiss_sample, exact_sample))
    big = [i for i, (_, pt, attr) in enumerate(sampled) if (pt, attr) == ("any", "brand")]
    agree_big = sum(faiss_sample[i] == exact_sample[i] for i in big)
    result = {
        "machine": machine(), "shared_machine": True, "args": {k: str(v) for k, v in vars(args).items()},
        "candidates": CANDIDATES, "options": canon.options.model_dump(),
        "values": sum(map(len, vocab.values())), "pairs": len(vocab), "queries": len(asked),
        "faiss": {"build_seconds": round(build, 1), "query_seconds": round(faiss_seconds, 2),
                  "queries_per_second": round(len(asked) / faiss_seconds, 1), "peak_rss_gib": round(faiss_peak, 2),
                  "index_gib": round(stats["index_bytes"] / 2**30, 3), **stats,
                  "mapped_to_known": sum(not novel for _, novel in faiss_answers)},
        "sample": {"queries": len(sampled), "brand_queries": len(big),
                   "faiss_seconds": round(faiss_sample_seconds, 3), "exact_seconds": round(exact_seconds, 2),
                   "exact_build_seconds": round(exact_build, 1),
                   "speedup": round(exact_seconds / faiss_sample_seconds, 1),
                   "agreement": round(agree / len(sampled), 4),
                   "agreement_brand": round(agree_big / max(len(big), 1), 4)},
    }
    report(result, args.output)


if __name__ == "__main__":
    main()
