"""A generated catalog vocabulary for the canonicalizer benchmark and its tests: many small pairs,
one brand-like pair holding a large share of the values, and queries that need a nearest-neighbour
search (one or two typing slips of a known value, or a value never seen).

Everything is drawn from ``random.Random(seed)``: the same arguments give the same values.
"""
from __future__ import annotations

import random

CONSONANTS = "bcdfghjklmnprstvwxz"
VOWELS = "aeiouy"
NUMBERED = ("cm", "ml", "mm", "gb", "inch", "pack")


def _word(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(CONSONANTS) + rng.choice(VOWELS) + (rng.choice("nrst") if rng.random() < 0.3 else "")
                   for _ in range(syllables))


def _brand(rng: random.Random) -> str:
    name = _word(rng, rng.randint(2, 4))
    if rng.random() < 0.5:
        name += " " + _word(rng, rng.randint(1, 3))
    return name.title()


def _small_value(rng: random.Random, lexicon: list[str]) -> str:
    if rng.random() < 0.2:
        return f"{rng.randint(1, 500)} {rng.choice(NUMBERED)}"
    return " ".join(rng.choice(lexicon) for _ in range(rng.randint(1, 3)))


def _distinct(rng: random.Random, make, count: int) -> list[str]:
    """``count`` values whose folded spellings differ (the canonicalizer indexes one per spelling)."""
    from mxt_faiss.embedding import loose_text

    values, seen = [], set()
    while len(values) < count:
        value = make(rng)
        key = loose_text(value)
        if key and key not in seen:
            seen.add(key)
            values.append(value)
    return values


def vocabulary(values: int, pairs: int, big_pair: int, seed: int = 0) -> dict[tuple[str, str], dict[str, int]]:
    """``values`` known values over ``pairs`` pairs: ``("any", "brand")`` holds ``big_pair`` of them,
    the other pairs share the rest evenly."""
    rng = random.Random(seed)
    lexicon = _distinct(rng, lambda r: _word(r, r.randint(1, 3)), 3000)
    result = {("any", "brand"): {v: rng.randint(1, 50) for v in _distinct(rng, _brand, big_pair)}}
    small = pairs - 1
    for index in range(small):
        share = (values - big_pair) // small + (index < (values - big_pair) % small)
        made = _distinct(rng, lambda r: _small_value(r, lexicon), share)
        result[(f"type{index // 20}", f"attribute{index % 20}")] = {v: rng.randint(1, 50) for v in made}
    return result


def _slip(rng: random.Random, value: str) -> str:
    """One typing slip: a letter dropped, doubled, swapped with the next, or replaced."""
    letters = [i for i, c in enumerate(value) if c.isalpha()]
    if not letters:
        return value + "x"
    i = rng.choice(letters)
    kind = rng.randrange(4)
    if kind == 0:
        return value[:i] + value[i + 1:]
    if kind == 1:
        return value[:i] + value[i] + value[i:]
    if kind == 2 and i + 1 < len(value):
        return value[:i] + value[i + 1] + value[i] + value[i + 2:]
    return value[:i] + rng.choice(VOWELS + CONSONANTS) + value[i + 1:]


def queries(vocab: dict[tuple[str, str], dict[str, int]], count: int, big_share: float = 0.5,
            novel_share: float = 0.2, seed: int = 1) -> list[tuple[str, str, str]]:
    """``count`` generated values ``(value, product_type, attribute)``: ``big_share`` of them for
    the brand pair, the rest for random small pairs; ``novel_share`` are new values, the others one
    or two slips of a known value."""
    rng = random.Random(seed)
    pairs = sorted(vocab)
    big = ("any", "brand") if ("any", "brand") in vocab else None
    lists = {pair: sorted(values) for pair, values in vocab.items()}
    result = []
    for _ in range(count):
        pair = big if big is not None and rng.random() < big_share else rng.choice(pairs)
        if rng.random() < novel_share:
            value = _brand(rng) if pair == big else _word(rng, rng.randint(2, 3))
        else:
            value = _slip(rng, rng.choice(lists[pair]))
            if rng.random() < 0.3:
                value = _slip(rng, value)
        result.append((value, *pair))
    return result
