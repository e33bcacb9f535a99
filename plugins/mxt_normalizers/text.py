"""``text``: the surface clean-up every value gets before anything is learned from it.

In order: HTML entities decoded (``Men&#39;s`` -> ``Men's``, option ``unescape_html``), Unicode
NFKC (full-width forms, ligatures, non-breaking spaces), whitespace runs collapsed to one space,
case folded (option ``lowercase``, :meth:`str.casefold`), and surrounding punctuation and quotes
stripped:

* an enclosing pair is removed: ``"Red"`` / ``(Red)`` / ``“Red”`` -> ``Red`` (not ``"a" or "b"``);
* loose ``.,;:!?*|~_`` and dashes at either end go (``- Red.`` -> ``Red``), but not a ``.`` or
  ``-`` that starts a number (``.5 mm``, ``-5``);
* an unmatched quote or bracket at either end goes, except an inch or foot mark right after a digit
  (``13"`` and ``5'`` keep their mark) and a bracket that closes one opened inside (``size (us)``).

A value that is empty afterwards is dropped (``None``). Deterministic; learns nothing.
"""
from __future__ import annotations

import html
import unicodedata

from mxt_sdk import ComponentOptions, Normalizer

_PAIRS = {'"': '"', "'": "'", "“": "”", "‘": "’", "«": "»", "(": ")", "[": "]", "{": "}"}
_CLOSERS = {close: open_ for open_, close in _PAIRS.items() if open_ != close}
_LOOSE = frozenset(".,;:!?*|~_•·-–—„‚")
_MARKS = frozenset("\"'”’″′")  # inch / foot marks when they follow a digit
_NUMBER_STARTS = frozenset(".-")


def strip_edges(text: str) -> str:
    """Remove surrounding punctuation and quotes by the rules in the module docstring."""
    while True:
        before = text
        text = _unwrap(text.strip())
        while text and _loose_start(text):
            text = text[1:].lstrip()
        while text and _loose_end(text):
            text = text[:-1].rstrip()
        if text == before:
            return text


def _unwrap(text: str) -> str:
    """``text`` without an enclosing quote or bracket pair, when the pair encloses all of it."""
    if len(text) < 2 or _PAIRS.get(text[0]) != text[-1]:
        return text
    open_, close, inner = text[0], text[-1], text[1:-1]
    if open_ == close:
        return inner if open_ not in inner else text
    depth = 0
    for char in inner:
        depth += (char == open_) - (char == close)
        if depth < 0:
            return text
    return inner if depth == 0 else text


def _loose_start(text: str) -> bool:
    """Whether the first character is loose: edge punctuation, or a quote/bracket never closed."""
    char = text[0]
    if char in _NUMBER_STARTS and text[1:2].isdigit():
        return False
    if char in _LOOSE:
        return True
    close = _PAIRS.get(char)
    if close is None:
        return False
    return text.count(char) % 2 == 1 if close == char else text.count(char) > text.count(close)


def _loose_end(text: str) -> bool:
    """Whether the last character is loose: edge punctuation, or a quote/bracket never opened."""
    char = text[-1]
    if char in _MARKS and text[-2:-1].isdigit():
        return False
    if char in _LOOSE:
        return True
    if _PAIRS.get(char) == char:
        return text.count(char) % 2 == 1
    open_ = _CLOSERS.get(char)
    return open_ is not None and text.count(char) > text.count(open_)


class TextNormalizer(Normalizer):
    """Unicode, whitespace, case and edge-punctuation clean-up of a value."""

    name = "text"

    class Options(ComponentOptions):
        lowercase: bool = True
        unescape_html: bool = True

    def __call__(self, value: str, *, product_type: str, attribute: str) -> str | None:
        if self.options.unescape_html:
            value = html.unescape(value)
        value = " ".join(unicodedata.normalize("NFKC", value).split())
        if self.options.lowercase:
            value = value.casefold()
        return strip_edges(value) or None
