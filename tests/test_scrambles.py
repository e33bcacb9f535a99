"""Scrambled copies of values written in the text (training.scramble_copied_values)."""
from __future__ import annotations

import random

import pytest

from mxt_sdk import Product
from mxt_sdk.data.examples import example_rows
from mxt_sdk.data.prompt import build_prompt
from mxt_sdk.data.scrambles import ValueScrambler, scramble_word


def _shirt(index: int = 0, **fields) -> Product:
    base = dict(id=f"p{index}", product_type="shirt", title="BELKALI Women Red Cotton Tee",
                description="A belkali shirt; belkalis are soft.", bullets=["Belkali quality"], image="p.png",
                attributes={"brand": "belkali", "color": "red", "pattern": "striped"})
    return Product(**{**base, **fields})


def test_scramble_word_shuffles_letters_and_never_returns_the_word_when_it_can_change():
    rng = random.Random(0)
    for word in ["belkali", "ab", "xl", "10"]:
        out = scramble_word(word, rng)
        assert sorted(out) == sorted(word) and out != word
    assert scramble_word("aaa", rng) == "aaa"


def test_every_whole_word_occurrence_is_replaced_with_its_own_case_and_the_answer_matches():
    product, answer = ValueScrambler(1.0, seed=0)(_shirt(), "brand", "belkali")
    assert answer != "belkali" and sorted(answer) == sorted("belkali")
    assert product.title == f"{answer.upper()} Women Red Cotton Tee"
    assert product.description == f"A {answer} shirt; belkalis are soft."  # "belkalis" is another word
    assert product.bullets == [f"{answer.capitalize()} quality"]
    assert product.attributes == _shirt().attributes and product.image == "p.png"


def test_decoys_shuffle_as_many_other_words_of_the_texts_everywhere_they_occur():
    plain, answer = ValueScrambler(1.0, seed=0)(_shirt(), "brand", "belkali")
    product, decoyed = ValueScrambler(1.0, seed=0, decoys=True)(_shirt(), "brand", "belkali")
    assert decoyed == answer  # the value is shuffled as without decoys
    before = "BELKALI Women Red Cotton Tee A belkali shirt; belkalis are soft. Belkali quality".split()
    after = f"{product.title} {product.description} {product.bullets[0]}".split()
    changed = {(b, a) for b, a in zip(before, after) if b != a and b.casefold().strip(";.") != "belkali"}
    assert len(changed) == 1  # one decoy for a one-word value, shuffled where it occurs
    (word, shuffled), = changed
    word, shuffled = word.strip(";."), shuffled.strip(";.")
    assert sorted(word.casefold()) == sorted(shuffled.casefold()) and word.casefold() != shuffled.casefold()
    assert len(word) >= 3 and word.isalpha()


def test_values_not_written_in_the_text_and_examples_not_drawn_stay_as_they_are():
    scrambler = ValueScrambler(1.0, seed=0)
    product = _shirt()
    assert scrambler(product, "pattern", "striped") == (product, "striped")
    assert scrambler(product, "brand", "bel") == (product, "bel")  # only inside a word
    assert ValueScrambler(0.0, seed=0)(product, "brand", "belkali") == (product, "belkali")
    assert scrambler(product, "size", "--") == (product, "--")  # nothing to shuffle


def test_the_draw_depends_on_seed_product_and_attribute_only():
    products = [_shirt(i) for i in range(400)]
    first = [ValueScrambler(0.3, seed=5)(p, "brand", "belkali")[1] for p in products]
    again = [ValueScrambler(0.3, seed=5)(p, "brand", "belkali")[1] for p in products]
    other_seed = [ValueScrambler(0.3, seed=6)(p, "brand", "belkali")[1] for p in products]
    assert first == again and first != other_seed
    share = sum(answer != "belkali" for answer in first) / len(first)
    assert 0.22 < share < 0.38


def test_example_rows_scramble_prompt_and_answer_together():
    shirt = _shirt()
    brand, color, pattern = example_rows([shirt], "n/a", scrambler=ValueScrambler(1.0, seed=1))
    assert brand["answer"] not in ("belkali",) and brand["answer"].upper() in brand["prompt"]
    assert "BELKALI" not in brand["prompt"]
    assert color["answer"] != "red"
    assert pattern["answer"] == "striped" and pattern["prompt"] == build_prompt("pattern", shirt)  # not written


def test_a_share_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="scrambled"):
        ValueScrambler(1.5, seed=0)

