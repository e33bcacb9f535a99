"""Character n-gram embedding of attribute values, hashed into a fixed number of dimensions.

Deliberately free of torch and of the SDK (numpy and the standard library only), so it is cheap to
import and its output depends on nothing but its three parameters:

* :func:`exact_key` — the key of an *exact* match: NFKC, case-folded, whitespace runs collapsed
  (``"Navy  Blue "`` and ``"navy blue"`` are the same value);
* :func:`loose_text` — what is embedded: the exact key reduced to its tokens, where a token is a
  run of letters or a number (digits with ``.``, ``,`` or ``/`` *between* digits kept, so ``1.5``
  and ``3/4`` stay whole). Accents are removed (``"bouclé"`` -> ``"boucle"``); hyphens, underscores
  and other punctuation become word breaks; a number glued to letters is split off
  (``"navy-blue"`` -> ``"navy blue"``, ``"3mm"`` -> ``"3 mm"``); and one plural ``s`` is folded off
  every word of four or more letters that does not end in ``ss`` (``"boots"`` -> ``"boot"``,
  ``"reds"`` -> ``"red"``; ``"dress"`` and ``"bus"`` stay). Known and generated values go through
  the same folding, so it only decides which spellings count as the same value;
* :func:`numbers` — the number tokens of a value, which a match must agree on (``128 GB`` is not a
  spelling of ``12 GB``);
* :class:`CharNgramEmbedder` — every character n-gram (``ngram_min..ngram_max``) of the loose text
  padded with one space at each end (so word starts and ends are n-grams of their own and
  ``"navyblue"`` still shares most n-grams with ``"navy blue"``), hashed with CRC-32 into ``dim``
  buckets with a hash-derived sign, counted, and L2-normalised. The inner product of two embeddings
  approximates the cosine similarity of their n-gram count vectors.

CRC-32 (not Python's per-process salted ``hash``) makes the vectors identical in every process, so
an index can be rebuilt from the saved values instead of being stored.
"""
from __future__ import annotations

import math
import re
import unicodedata
import zlib
from collections.abc import Sequence

import numpy as np

__all__ = ["exact_key", "loose_text", "numbers", "numbers_of_loose", "CharNgramEmbedder"]

_TOKEN = re.compile(r"\d+(?:[.,/]\d+)*|[^\W\d_]+")


def exact_key(value: str) -> str:
    """``value`` up to Unicode form, case and whitespace."""
    return " ".join(unicodedata.normalize("NFKC", value).casefold().split())


def _tokens(value: str) -> list[str]:
    """Letter runs and numbers of ``value``, accents removed (NFKD without combining marks)."""
    decomposed = unicodedata.normalize("NFKD", exact_key(value))
    return _TOKEN.findall("".join(c for c in decomposed if not unicodedata.combining(c)))


def _singular(token: str) -> str:
    if len(token) >= 4 and token[-1] == "s" and token[-2] != "s" and not token[0].isdigit():
        return token[:-1]
    return token


def loose_text(value: str) -> str:
    """The text that is embedded: letter runs (plural ``s`` folded) and numbers, one space apart."""
    return " ".join(_singular(token) for token in _tokens(value))


def numbers(value: str) -> tuple[str, ...]:
    """The number tokens of ``value``, in order."""
    return numbers_of_loose(loose_text(value))


def numbers_of_loose(text: str) -> tuple[str, ...]:
    """The number tokens of an already-loose text (see :func:`loose_text`)."""
    return tuple(token for token in text.split(" ") if token[:1].isdigit())


class CharNgramEmbedder:
    """Signed feature hashing of character n-grams into ``dim`` float32 dimensions (L2-normalised)."""

    def __init__(self, ngram_min: int, ngram_max: int, dim: int):
        if not 1 <= ngram_min <= ngram_max:
            raise ValueError(f"need 1 <= ngram_min <= ngram_max, got {ngram_min}..{ngram_max}")
        if dim < 2:
            raise ValueError(f"dim must be at least 2, got {dim}")
        self.ngram_min, self.ngram_max, self.dim = ngram_min, ngram_max, dim

    def features(self, text: str) -> tuple[list[int], list[int]]:
        """(bucket, sign) of every n-gram of the already-loose ``text``."""
        padded = f" {text} "
        buckets, signs = [], []
        crc32, dim = zlib.crc32, self.dim
        for n in range(self.ngram_min, self.ngram_max + 1):
            for start in range(len(padded) - n + 1):
                code = crc32(padded[start:start + n].encode("utf-8"))
                buckets.append(code % dim)
                signs.append(1 - 2 * (code >> 31))
        return buckets, signs

    def embed_many(self, values: Sequence[str]) -> np.ndarray:
        """``[len(values), dim]`` float32, one L2-normalised row per value (zeros for a value
        without letters or digits). A row does not depend on the batch it is computed in."""
        return self.embed_loose_many([loose_text(value) for value in values])

    def embed_loose_many(self, texts: Sequence[str]) -> np.ndarray:
        """:meth:`embed_many` of values already reduced by :func:`loose_text`."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            if not text:
                continue
            buckets, signs = self.features(text)
            # Signed integer counts in float64: their sum of squares is exact, so the norm and the
            # row are bit-identical whatever the summation order; rounded once to float32.
            counts = np.bincount(buckets, weights=signs, minlength=self.dim)
            norm = math.sqrt(counts @ counts)
            if norm:
                out[row] = counts / norm
        return out

    def embed(self, value: str) -> np.ndarray:
        """One value: ``[dim]`` float32."""
        return self.embed_many([value])[0]
