"""The ``faiss`` canonicalizer on large pairs: an HNSW graph with exactly scored candidates agrees
with the exact index, reports its memory, and answers the same alone or in a batch."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from catalog_values import queries, vocabulary  # noqa: E402
from mxt_faiss.canonicalizer import FaissCanonicalizer  # noqa: E402


def _canonicalizer(**options) -> FaissCanonicalizer:
    return FaissCanonicalizer(FaissCanonicalizer.Options(dim=256, **options))


@pytest.fixture(scope="module")
def catalog():
    vocab = vocabulary(values=3000, pairs=11, big_pair=2000, seed=3)
    return vocab, queries(vocab, 400, seed=4)


def test_a_large_pair_gets_a_graph_and_agrees_with_exact_search(catalog):
    vocab, asked = catalog
    graph, exact = _canonicalizer(exact_max_values=500), _canonicalizer(exact_max_values=10**6)
    for canon in (graph, exact):
        canon.fit(vocab)
        canon.build_indexes()
    stats = graph.index_stats()
    assert (stats["hnsw_indexes"], stats["exact_indexes"], stats["indexed_values"]) == (1, 10, 3000)
    # exact indexes hold 2 bytes a dimension (float16 codes), the graph 1 plus its links
    assert exact.index_stats()["index_bytes"] == 3000 * 256 * 2
    assert stats["index_bytes"] == 1000 * 256 * 2 + 2000 * (256 + 2 * 32 * 4 + 8)
    answers, reference = graph.canonicalize_many(asked), exact.canonicalize_many(asked)
    agree = sum(a == b for a, b in zip(answers, reference)) / len(asked)
    assert agree >= 0.97, agree
    assert sum(not novel for _, novel in answers) > len(asked) // 3  # slips do find their value


def test_exact_indexes_score_their_candidates_exactly(catalog):
    """float16 codes only choose the candidates: the scores are float32 cosines of the values, so a
    pair's nearest value and its score are those of a float32 product over all its values."""
    import numpy as np

    vocab, asked = catalog
    canon = _canonicalizer()
    canon.fit(vocab)
    key = next(k for k, values in vocab.items() if 50 < len(values) <= 500)
    pair = canon._pairs[key]
    texts = [text for text, pt, attr in asked if (pt, attr) == key][:20] or list(pair.canonical[:20])
    vectors = canon._embedder.embed_loose_many(texts)
    scores, ids = canon._index(pair).search(vectors, 8)
    full = vectors @ canon._embedder.embed_many(pair.canonical).T
    assert (ids[:, 0] == full.argmax(axis=1)).all()
    assert np.allclose(scores[:, 0], full.max(axis=1), atol=1e-6)


def test_graph_answers_do_not_depend_on_the_batch(catalog):
    vocab, asked = catalog
    canon = _canonicalizer(exact_max_values=500)
    canon.fit(vocab)
    together = canon.canonicalize_many(asked[:60])
    fresh = _canonicalizer(exact_max_values=500)
    fresh.fit(vocab)
    assert [fresh.canonicalize(v, product_type=pt, attribute=a) for v, pt, a in asked[:60]] == together


def test_a_known_value_and_a_slip_of_it_in_a_large_pair():
    vocab = vocabulary(values=1200, pairs=2, big_pair=1000, seed=5)
    canon = _canonicalizer(exact_max_values=100)
    canon.fit(vocab)
    value = sorted(vocab[("any", "brand")])[7]
    assert canon.canonicalize(value, product_type="any", attribute="brand") == (value, False)
    slipped = value[:-1] + value[-1] * 2
    assert canon.canonicalize(slipped, product_type="any", attribute="brand") == (value, False)
    assert canon.index_stats()["hnsw_indexes"] == 1
