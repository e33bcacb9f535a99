"""String similarity used by the ``merge`` normalizer: comparison keys, bounded edit distance, and a
deletion-neighbourhood index that finds every key within k edits without comparing all pairs."""
from __future__ import annotations

import re
import unicodedata
from collections import defaultdict

_SEPARATORS = re.compile(r"[\W_]+")
_BETWEEN_DIGITS = re.compile(r"(?<=\d)[\W_]+(?=\d)")
_WORD = re.compile(r"[^\W_]+")


def variant_key(value: str) -> str:
    """``value`` compared loosely: NFKC, case-folded, spaces, hyphens and punctuation removed, except
    between two digits (``1.5 mm`` and ``15 mm``, ``3/4`` and ``34`` stay apart). A value made of
    punctuation only is its own key."""
    text = unicodedata.normalize("NFKC", value).casefold()
    parts = _BETWEEN_DIGITS.split(text)
    glue = [" " if sep.isspace() else sep[0] for sep in _BETWEEN_DIGITS.findall(text)]
    squeezed = [_SEPARATORS.sub("", part) for part in parts]
    key = squeezed[0] + "".join(g + p for g, p in zip(glue, squeezed[1:]))
    return key or text


def singular(key: str) -> str:
    """``key`` without one plural ``s`` (``boots`` -> ``boot``; not ``glass``, not keys of 3 or fewer)."""
    return key[:-1] if len(key) > 3 and key.endswith("s") and not key.endswith("ss") else key


def words(value: str) -> list[str]:
    """The words of ``value`` (runs of letters and digits), NFKC and case-folded."""
    return _WORD.findall(unicodedata.normalize("NFKC", value).casefold())


def typo_of(a: str, b: str, min_length: int) -> bool:
    """Whether ``a`` and ``b`` may differ by a typo: same number of words, and every pair of words
    that differ is alphabetic and at least ``min_length`` long. This keeps apart values that differ
    in a short word or a number (``vitamin a`` / ``vitamin c``, ``335e`` / ``335b``, ``128 gb`` /
    ``256 gb``), where a one-letter edit changes the meaning."""
    words_a, words_b = words(a), words(b)
    if len(words_a) != len(words_b):
        return False
    return all(x == y or (x.isalpha() and y.isalpha() and min(len(x), len(y)) >= min_length)
               for x, y in zip(words_a, words_b))


def edit_distance(a: str, b: str, limit: int) -> int:
    """Levenshtein distance of ``a`` and ``b``, or ``limit + 1`` as soon as it must exceed ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        if min(current) > limit:
            return limit + 1
        previous = current
    return previous[-1]


def deletions(key: str, k: int) -> set[str]:
    """``key`` and every distinct string made by deleting up to ``k`` of its characters."""
    found, level = {key}, {key}
    for _ in range(k):
        level = {text[:i] + text[i + 1:] for text in level for i in range(len(text))}
        found |= level
    return found


class NeighbourIndex:
    """Keys indexed by their deletion neighbourhoods: two keys within ``k`` edits (Levenshtein) share
    a string obtained by at most ``k`` deletions from each, so :meth:`candidates` misses none."""

    def __init__(self) -> None:
        self._index: dict[str, set[str]] = defaultdict(set)

    def add(self, key: str, k: int) -> None:
        for variant in deletions(key, k):
            self._index[variant].add(key)

    def candidates(self, key: str, k: int) -> set[str]:
        found: set[str] = set()
        for variant in deletions(key, k):
            found |= self._index.get(variant, set())
        return found

