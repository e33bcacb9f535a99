"""The prompt rule: a prompt that fits the input budget is unchanged; a longer one keeps its question
and product type, then its title whole, then as much of the description and bullets as fits, cut
after a whole word."""
from __future__ import annotations

import pytest
from transformers import ByT5Tokenizer

from mxt_sdk import Product
from mxt_sdk.data.prompt import build_prompt, cut_prompt, fit_prompts, head_end, prompt_with_context

SHIRT = Product(id="a", product_type="shirt", title="Red cotton tee",
                description="A soft shirt with long sleeves and a round neck", bullets=["machine wash"])


@pytest.fixture(scope="module")
def tokenizer():
    return ByT5Tokenizer()  # a token per byte, plus EOS: budgets are easy to reason about


def _tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text)["input_ids"])


def test_a_prompt_that_fits_is_left_exactly_as_built(tokenizer):
    prompt = build_prompt("color", SHIRT)
    assert prompt == "question: color context: shirt | Red cotton tee | A soft shirt with long sleeves and a " \
                     "round neck | machine wash"
    fitted, ids = fit_prompts(tokenizer, _tokens(tokenizer, prompt), [prompt])
    assert fitted == [prompt] and ids == [tokenizer(prompt)["input_ids"]]


def test_an_over_long_prompt_keeps_the_title_whole_and_cuts_the_description_after_a_word(tokenizer):
    prompt = build_prompt("color", SHIRT)
    kept = "question: color context: shirt | Red cotton tee | A soft shirt with"
    for budget in range(_tokens(tokenizer, kept), _tokens(tokenizer, kept + " long")):
        fitted, ids = fit_prompts(tokenizer, budget, [prompt])
        assert fitted == [kept] and len(ids[0]) <= budget and ids[0] == tokenizer(kept)["input_ids"]
    # the bullets go before the description, and a separator is never left dangling
    description = "question: color context: shirt | Red cotton tee | A soft shirt with long sleeves and a round neck"
    assert fit_prompts(tokenizer, _tokens(tokenizer, description + " | machine"), [prompt])[0] == \
        [description + " | machine"]
    assert fit_prompts(tokenizer, _tokens(tokenizer, description + " |"), [prompt])[0] == [description]


def test_the_question_and_type_are_always_kept_and_the_title_goes_only_when_it_alone_overflows(tokenizer):
    prompt = build_prompt("color", SHIRT)
    title = "question: color context: shirt | Red cotton tee"
    assert fit_prompts(tokenizer, _tokens(tokenizer, title) + 2, [prompt])[0] == [title]
    assert fit_prompts(tokenizer, _tokens(tokenizer, title) - 1, [prompt])[0] == \
        ["question: color context: shirt | Red cotton"]
    fitted, ids = fit_prompts(tokenizer, 8, [prompt])  # the head alone overflows: callers cut its end
    assert fitted == ["question: color context: shirt"] and len(ids[0]) > 8


def test_the_head_ends_at_the_first_separator_after_the_context_marker():
    assert head_end("question: a | b context: t | title") == len("question: a | b context: t")
    assert head_end("question: a context: t") == len("question: a context: t")  # no text: nothing to cut
    type_only = prompt_with_context("color", SHIRT.product_type)
    assert cut_prompt(type_only, lambda text: False) == type_only


def test_each_prompt_of_a_batch_is_cut_on_its_own(tokenizer):
    short = build_prompt("color", Product(id="b", product_type="mug", title="Blue mug"))
    long = build_prompt("color", SHIRT)
    fitted, ids = fit_prompts(tokenizer, 60, [short, long, short])
    assert fitted[0] is short and fitted[2] is short and fitted[1] != long
    assert all(len(row) <= 60 for row in ids)


def test_a_fast_tokenizers_offsets_only_save_work():
    from mxt_t5.tokenizers import train_unigram_tokenizer

    words = "red blue cotton linen shirt dress sleeves neck round soft long short wash machine tee".split()
    texts = [" ".join(words[(i * 7 + j) % len(words)] for j in range(5 + i % 9)) for i in range(300)]
    fast = train_unigram_tokenizer(texts, 120)
    assert fast.is_fast
    prompts = [build_prompt("color", Product(id=str(i), product_type="shirt", title=texts[i],
                                             description=" ".join(texts[i + 1:i + 6]))) for i in range(40)]
    for budget in (12, 20, 33, 50):
        fitted, ids = fit_prompts(fast, budget, prompts)
        searched = [cut_prompt(p, lambda text: len(fast(text)["input_ids"]) <= budget)
                    if len(fast(p)["input_ids"]) > budget else p for p in prompts]
        assert fitted == searched and any(f != p for f, p in zip(fitted, prompts))
        assert all(len(row) <= budget or f == p[:head_end(p)] for f, p, row in zip(fitted, prompts, ids))


def test_the_search_for_the_most_words_that_fit_is_right_whatever_the_guess():
    from mxt_sdk.data.prompt import _most_that_fit

    for count in range(6):
        for most in range(count + 1):
            for guess in (None, *range(-1, count + 3)):
                assert _most_that_fit(count, lambda n: n <= most, guess) == most
