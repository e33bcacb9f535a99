"""Candidate spans of a product's text and the hashed features the span prior scores them by.

**Candidates.** The text is cut into tokens: runs of word characters (``\\w+``) and single other
characters (``,`` ``(`` ``/`` ...); only the first ``max_tokens`` count. A candidate starts at a word
token and ends at a word token or a closing mark (``)`` ``"`` ``]`` ``'``) at most ``max_span_tokens``
tokens later; its text is the product's own characters between the two (``36 (US Women's 5.5-6)``).

**Features** describe a candidate by what is around it rather than by what it is, so that a value never
seen in training is found where its pair's values sit: its first, last and inner words, the one and two
words before and after it (or the text's start and end), its length, where it starts and ends counted in
words, the letter shapes of its words and neighbours (``Xx``, ``X``, ``x``, ``d`` for digits, or the mark
itself), whether it holds a digit, whether it is one of the pair's training values and what share of its
words those values use. Each feature is emitted twice, keyed by the attribute (shared by every product
type) and by the (product type, attribute) pair, and hashed with CRC-32 into ``2**hash_bits`` weights
(the same buckets in every process).
"""
from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from itertools import islice
from typing import NamedTuple

__all__ = ["Span", "candidate_spans", "span_features", "match_key", "word_key", "tokens", "FeatureHasher", "NONE_FEATURE"]

_TOKEN = re.compile(r"\w+|[^\w\s]")
_WORD = re.compile(r"\w+")
_CLOSERS = frozenset(")\"]'")
#: the feature of the "no span" candidate (the pair's value is not written in the text)
NONE_FEATURE = "none"


class Span(NamedTuple):
    """A candidate: token positions ``first``..``last`` (inclusive) and the text between them."""

    first: int
    last: int
    text: str


def match_key(value: str) -> str:
    """``value`` case-folded with only its letters and digits: how a training value finds its span."""
    return "".join(ch for ch in value.casefold() if ch.isalnum())


def word_key(value: str) -> str:
    """``value``'s words (``\\w+``), case-folded and joined by single spaces: how known values are compared."""
    return " ".join(_WORD.findall(value.casefold()))


def tokens(text: str, max_tokens: int) -> list[re.Match]:
    """The first ``max_tokens`` tokens of ``text`` (see the module docstring)."""
    return list(islice(_TOKEN.finditer(text), max_tokens))


def candidate_spans(text: str, found: list[re.Match], max_span_tokens: int) -> list[Span]:
    """Every candidate of ``text`` over its tokens ``found``, by start and then end."""
    spans = []
    for first, start in enumerate(found):
        if not _is_word(start.group()):
            continue
        for last in range(first, min(len(found), first + max_span_tokens)):
            piece = found[last].group()
            if _is_word(piece) or piece in _CLOSERS:
                spans.append(Span(first, last, text[start.start():found[last].end()]))
    return spans


def _is_word(token: str) -> bool:
    return token[0].isalnum() or token[0] == "_"


def _shape(token: str) -> str:
    if not _is_word(token):
        return token
    if token.isdigit():
        return "d"
    if token.isupper():
        return "X"
    if token[0].isupper():
        return "Xx"
    return "x" if token.islower() else "m"


def span_features(found: list[re.Match], spans: list[Span], known: Callable[[str], bool],
                  known_words: Callable[[str], bool]) -> list[list[str]]:
    """The feature names of each candidate of ``spans`` over tokens ``found`` (before keying and hashing);
    ``known(word_key)``: whether a training value of the pair; ``known_words(word)``: whether a word of one.
    The names of one position (its word, its neighbours, its shape) are built once per text, not per span."""
    words = [m.group().casefold() for m in found]
    shapes = [_shape(m.group()) for m in found]
    is_word = [_is_word(w) for w in words]
    before, count = [], 0  # word tokens before each position
    for flag in is_word:
        before.append(count)
        count += flag
    total_words = count
    n = len(words)
    starts = [(f"first={w}", f"prev1={words[i - 1] if i > 0 else '<s>'}",
               f"prev2={' '.join(words[max(0, i - 2):i]) if i > 0 else '<s>'}", f"sfirst={shapes[i]}",
               f"sprev={shapes[i - 1] if i > 0 else '<s>'}") for i, w in enumerate(words)]
    ends = [(f"last={w}", f"next1={words[j + 1] if j + 1 < n else '</s>'}",
             f"next2={' '.join(words[j + 1:j + 3]) if j + 1 < n else '</s>'}", f"slast={shapes[j]}",
             f"snext={shapes[j + 1] if j + 1 < n else '</s>'}") for j, w in enumerate(words)]
    inner = [f"in={w}" for w in words]
    known_word = [flag and known_words(w) for w, flag in zip(words, is_word)]
    out = []
    for span in spans:
        first, last = span.first, span.last
        length = last - first + 1
        start_word = before[first]
        span_words = sum(is_word[first:last + 1])
        after_words = total_words - start_word - span_words
        share = round(4 * sum(known_word[first:last + 1]) / span_words)
        head, tail = starts[first], ends[last]
        features = [
            head[0], tail[0], *inner[first:last + 1], head[1], head[2], tail[1], tail[2],
            f"len={min(length, 10)}", f"start={min(start_word, 8)}", f"fromend={min(after_words, 8)}",
            f"start_len={min(start_word, 8)}_{min(length, 6)}",
            f"shapes={'_'.join(shapes[first:min(last + 1, first + 4)])}",
            head[3], tail[3], head[4], tail[4],
            f"known={known(word_key(span.text))}", f"kw={share}", f"kw_len={share}_{min(length, 6)}",
        ]
        if any(ch.isdigit() for ch in span.text):
            features.append("digit")
        out.append(features)
    return out


class FeatureHasher:
    """Buckets of (key, feature) names: CRC-32 of ``key|feature`` modulo ``buckets``, remembered (a text's
    spans share most of their names, and a pair's questions share their keys)."""

    def __init__(self, buckets: int, remember: int = 1 << 18):
        self.buckets, self.remember = buckets, remember
        self._known: dict[tuple[str, str], int] = {}

    def __call__(self, features: list[str], keys: tuple[str, ...]) -> list[int]:
        """The bucket of each (key, feature), keys outermost."""
        known = self._known
        if len(known) > self.remember:
            known.clear()
        out = []
        for key in keys:
            for feature in features:
                bucket = known.get((key, feature))
                if bucket is None:
                    bucket = known[(key, feature)] = zlib.crc32(f"{key}|{feature}".encode()) % self.buckets
                out.append(bucket)
        return out
