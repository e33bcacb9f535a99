"""The FAISS index of one (product type, attribute) pair, chosen by the pair's size.

* :class:`ExactIndex` (``IndexScalarQuantizer`` with float16 codes, searched exhaustively) for pairs
  of up to ``exact_max_values`` values: every known value is compared. Its float16 scores only
  choose the ``k`` candidates; each is then scored with the exact float32 cosine of its value,
  re-embedded from its text, so the scores and the threshold are those of an exact float32 index.
  float16 codes take half the memory of float32 ones: over 10,000 pairs of a catalog, the small
  pairs' exact indexes are most of the canonicalizer's memory (500,000 values: 1 GB, not 2 GB).
  FAISS scores each query on its own whether one value or thousands are canonicalized at once, so
  ``canonicalize_many`` equals ``canonicalize``.
* :class:`HNSWIndex` (``IndexHNSWSQ``: a navigable-small-world graph over 8-bit codes) for larger
  pairs (a brand list of millions). A query walks the graph from its entry point and compares about
  ``ef_search`` x 32 values instead of all of them; one byte per dimension plus 256 bytes of links
  per value instead of four bytes per dimension. Its candidates are scored exactly as above.
  (Inverted lists over k-means cells
  were measured first: hashed n-gram vectors are spread so evenly that a near miss and its value
  often fall in different cells, and 16 probed cells of 632 found the right value for only 95% of
  slipped queries, against 99.6% for the graph.) The graph is built on FAISS's OpenMP threads, so
  its links may differ between builds; a near miss can then, rarely, find another candidate.

Both return ``(scores, ids)`` of the ``k`` best known values per query (id ``-1`` where fewer exist)
and say how many bytes they hold (:attr:`memory_bytes`). Vectors are added in slices of
:data:`ADD_SLICE`, so building never holds a pair's float32 vectors at once.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import faiss
import numpy as np

__all__ = ["ExactIndex", "HNSWIndex", "build_index", "exactly_scored", "ADD_SLICE"]

#: Values embedded and added per slice while building (bounds the float32 vectors held at once).
ADD_SLICE = 16384
#: Graph neighbours per node and the breadth of the search while inserting (FAISS's defaults).
HNSW_NEIGHBOURS, EF_CONSTRUCTION = 32, 40
#: Values the 8-bit quantizer's ranges are fitted on (evenly spaced over the pair).
SQ_TRAINING_SAMPLE = 20000

Embed = Callable[[Sequence[str]], np.ndarray]


def exactly_scored(ids: np.ndarray, vectors: np.ndarray, values: Sequence[str], embed: Embed
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, ids)`` with each candidate ``values[id]`` scored by the exact float32 cosine of its
    vector, re-embedded from its text, with the query's (``-inf`` where the id is ``-1``)."""
    wanted = sorted({int(i) for i in ids.ravel() if i >= 0})
    exact = dict(zip(wanted, embed([values[i] for i in wanted]))) if wanted else {}
    scores = np.full(ids.shape, -np.inf, dtype=np.float32)
    for row, (query, candidates) in enumerate(zip(vectors, ids)):
        for column, i in enumerate(candidates):
            if i >= 0:
                scores[row, column] = np.dot(exact[int(i)], query)
    return scores, ids


class ExactIndex:
    """Exhaustive search over a pair's float16 codes; candidates scored exactly."""

    kind = "exact"

    def __init__(self, dim: int, values: Sequence[str], embed: Embed):
        self.values, self.embed = values, embed
        self.index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
        for start in range(0, len(values), ADD_SLICE):
            self.index.add(embed(values[start:start + ADD_SLICE]))

    @property
    def ntotal(self) -> int:
        return self.index.ntotal

    @property
    def memory_bytes(self) -> int:
        return self.index.ntotal * self.index.d * 2  # float16 codes

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        _, ids = self.index.search(vectors, k)
        return exactly_scored(ids, vectors, self.values, self.embed)


class HNSWIndex:
    """A navigable-small-world graph over 8-bit scalar-quantized vectors (approximate search), whose
    candidates are then scored exactly."""

    kind = "hnsw"

    def __init__(self, dim: int, values: Sequence[str], embed: Embed, ef_search: int):
        self.values, self.embed = values, embed
        self.index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = EF_CONSTRUCTION
        sample = min(len(values), SQ_TRAINING_SAMPLE)
        stride = len(values) / sample
        self.index.train(embed([values[int(i * stride)] for i in range(sample)]))
        for start in range(0, len(values), ADD_SLICE):
            self.index.add(embed(values[start:start + ADD_SLICE]))
        self.index.hnsw.efSearch = ef_search

    @property
    def ntotal(self) -> int:
        return self.index.ntotal

    @property
    def memory_bytes(self) -> int:
        """Codes plus the graph's base-level links (upper levels add a few percent)."""
        return self.index.ntotal * (self.index.d + 2 * HNSW_NEIGHBOURS * 4 + 8)  # 8-bit codes: d bytes

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The graph's ``k`` candidates per query, each scored with the exact cosine of its value
        (re-embedded from its text), so the threshold means what it means for an exact index."""
        _, ids = self.index.search(vectors, k)
        return exactly_scored(ids, vectors, self.values, self.embed)


def build_index(dim: int, values: Sequence[str], embed: Embed, *, exact_max_values: int,
                ef_search: int) -> ExactIndex | HNSWIndex:
    """The index for one pair's ``values`` (FAISS id ``i`` is ``values[i]``): exact up to
    ``exact_max_values`` values, HNSW above."""
    if len(values) <= exact_max_values:
        return ExactIndex(dim, values, embed)
    return HNSWIndex(dim, values, embed, ef_search)
