"""Scrambled copies: teach a generator to copy a value from the text instead of recalling it.

A catalog's long tail (brands, model names) is written in the title, and every training value the
generator sees again and again becomes something it *recalls*: its vocabulary distribution learns
the training brands, and a never-seen brand that shares a first piece with one of them comes out as
the training brand (``belkami`` -> ``belkali``). Copying is the only way to get a new value right.

:class:`ValueScrambler` rewrites a share of the training examples whose answer is written in the
product's text: the answer's letters are shuffled within each of its words (``belkali`` ->
``klabeil``), and every whole-word occurrence of the answer in the title, description and bullets
is replaced by the same string, keeping that occurrence's upper and lower case letter by letter.
The scrambled value is a string the model has never seen, so the only way to produce it is to copy
it from the prompt; the example still teaches where the value sits in the text. Values that are not
written in the text (read from the image, or not stated) are never touched. This is the
entity-substitution augmentation used to make sequence models copy rather than memorise names,
applied here to the catalog's own values.

**Decoys.** A shuffled value is a string no catalog writes (``klabeil``), and alone it teaches the copy
attention a shortcut: point at the word that looks unlike any other. With ``decoys``, as many other words of
the same texts as the value has are shuffled too, so an odd-looking word is as often not the value as it is,
and only where the word sits (after "by", before the product noun, first in the title) tells them apart.

Whether and how an example is scrambled depends only on (seed, product id, attribute), so the same
data and seed give the same training set in every process.
"""
from __future__ import annotations

import hashlib
import random
import re

from mxt_sdk.types import Product

__all__ = ["ValueScrambler", "scramble_word"]

_WORD = re.compile(r"\w+")


def scramble_word(word: str, rng: random.Random) -> str:
    """``word``'s characters in a shuffled order that differs from the original where any order
    does (a word of one repeated letter stays as it is)."""
    letters = list(word)
    rng.shuffle(letters)
    if "".join(letters) == word and len(set(word)) > 1:
        letters = letters[1:] + letters[:1]
    return "".join(letters)


def _with_case_of(text: str, template: str) -> str:
    """``text`` (as long as ``template``) with each letter upper-cased where ``template``'s is."""
    return "".join(c.upper() if t.isupper() else c.lower() for c, t in zip(text, template))


class ValueScrambler:
    """Scrambles the value of a ``rate`` share of the examples whose answer is written in the text.

    ``rate`` in ``[0, 1]``; ``seed`` makes the choice and the shuffle reproducible; ``decoys``: shuffle as many
    other words of the texts too (see the module docstring).
    """

    def __init__(self, rate: float, seed: int, decoys: bool = False):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"the share of scrambled values must be in [0, 1], got {rate}")
        self.rate, self.seed, self.decoys = rate, seed, decoys

    def _rng(self, product_id: str, attribute: str) -> random.Random:
        digest = hashlib.blake2b(f"{self.seed}\x1f{product_id}\x1f{attribute}".encode(), digest_size=8).digest()
        return random.Random(int.from_bytes(digest, "little"))

    def __call__(self, product: Product, attribute: str, answer: str) -> tuple[Product, str]:
        """``(product, answer)`` with the answer and its occurrences in the product's texts scrambled,
        or unchanged when this example is not drawn or its answer is not written in the text."""
        if self.rate == 0.0 or not _WORD.search(answer):
            return product, answer
        rng = self._rng(product.id, attribute)
        if rng.random() >= self.rate:
            return product, answer
        pattern = re.compile(rf"(?<!\w){re.escape(answer)}(?!\w)", re.IGNORECASE)
        texts = {"title": product.title, "description": product.description or "", "bullets": product.bullets}
        if not any(pattern.search(text) for text in [texts["title"], texts["description"], *texts["bullets"]]):
            return product, answer
        scrambled = _WORD.sub(lambda word: scramble_word(word.group(), rng), answer)
        decoys = self._decoys([texts["title"], texts["description"], *texts["bullets"]], pattern,
                              len(_WORD.findall(answer)), rng) if self.decoys else {}

        def replace(text: str) -> str:
            text = pattern.sub(lambda found: _with_case_of(scrambled, found.group()), text)
            if not decoys:
                return text
            return _WORD.sub(lambda word: _with_case_of(decoys[word.group().casefold()], word.group())
                             if word.group().casefold() in decoys else word.group(), text)

        update = {"title": replace(product.title), "bullets": [replace(b) for b in product.bullets]}
        if product.description is not None:
            update["description"] = replace(product.description)
        return product.model_copy(update=update), scrambled

    @staticmethod
    def _decoys(texts: list[str], pattern: re.Pattern, count: int, rng: random.Random) -> dict[str, str]:
        """``count`` other words of ``texts`` (case-folded, at least three letters, outside the value's
        occurrences), each with its shuffled spelling; fewer when the texts have fewer."""
        candidates = set()
        for text in texts:
            outside = pattern.sub(" ", text)
            candidates.update(w.casefold() for w in _WORD.findall(outside) if len(w) >= 3 and w.isalpha())
        chosen = rng.sample(sorted(candidates), min(count, len(candidates)))
        return {word: scramble_word(word, rng) for word in chosen}
