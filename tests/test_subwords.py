"""Subword regularization: splits keep the text, agree between prompt and answer, and are reproducible."""
import pytest
from transformers import ByT5Tokenizer

from mxt_sdk.data.subwords import SubwordSplitter
from mxt_t5.tokenizers import train_unigram_tokenizer

TEXTS = ["acme women red cotton t-shirt striped short sleeve",
         "northwind men blue wool dress with long sleeves",
         "bluebird kids green linen backpack"] * 40


@pytest.fixture(scope="module")
def tokenizer():
    return train_unigram_tokenizer(TEXTS, 200)


def _pieces(tokenizer, ids):
    return tokenizer.convert_ids_to_tokens(ids)


def test_rate_zero_changes_nothing(tokenizer):
    ids = tokenizer("northwind men blue wool dress")["input_ids"]
    assert SubwordSplitter(tokenizer, 0.0, seed=1)(ids, "key") == ids


def test_splits_keep_the_text_and_never_touch_special_tokens(tokenizer):
    splitter = SubwordSplitter(tokenizer, 0.5, seed=1)
    for text in TEXTS[:3]:
        ids = tokenizer(text)["input_ids"]
        split = splitter(ids, text)
        assert len(split) > len(ids)  # at rate 0.5 some of the many long pieces split
        assert tokenizer.decode(split, skip_special_tokens=True) == tokenizer.decode(ids, skip_special_tokens=True)
        assert split[-1] == tokenizer.eos_token_id and split.count(tokenizer.eos_token_id) == 1
        assert all(0 <= i < len(tokenizer) for i in split)


def test_a_piece_splits_alike_in_prompt_and_answer_of_one_example(tokenizer):
    splitter = SubwordSplitter(tokenizer, 0.9, seed=3)
    prompt = "question: brand context: northwind men blue wool dress"
    answer_ids = tokenizer("northwind")["input_ids"]
    prompt_split = _pieces(tokenizer, splitter(tokenizer(prompt)["input_ids"], prompt))
    answer_split = _pieces(tokenizer, splitter(answer_ids, prompt))[:-1]  # without </s>
    assert len(answer_split) > 1, "at rate 0.9 the brand's piece should split"
    n = len(answer_split)  # the answer occurs in the prompt piece by piece: it can be copied
    assert any(prompt_split[i:i + n] == answer_split for i in range(len(prompt_split) - n + 1))


def test_same_seed_and_key_give_the_same_split_and_other_keys_vary(tokenizer):
    ids = tokenizer(" ".join(TEXTS[:3]))["input_ids"]
    first = SubwordSplitter(tokenizer, 0.3, seed=7)
    assert first(ids, "k") == SubwordSplitter(tokenizer, 0.3, seed=7)(ids, "k")
    assert len({tuple(first(ids, f"key {n}")) for n in range(10)}) > 1


def test_rejects_a_tokenizer_without_subword_model_and_bad_rates(tokenizer):
    assert not SubwordSplitter.supports(ByT5Tokenizer())
    with pytest.raises(ValueError, match="fast tokenizer"):
        SubwordSplitter(ByT5Tokenizer(), 0.1, seed=0)
    with pytest.raises(ValueError, match="rate"):
        SubwordSplitter(tokenizer, 1.0, seed=0)


def test_an_example_splits_only_the_pieces_its_answer_shares_with_its_prompt(tokenizer):
    splitter = SubwordSplitter(tokenizer, 0.9, seed=3)
    prompt = "question: brand context: northwind men blue wool dress"
    prompt_ids, brand_ids = (tokenizer(t)["input_ids"] for t in (prompt, "northwind"))
    absent_ids = [i for i in tokenizer("green linen backpack")["input_ids"] if i not in set(prompt_ids)]
    assert absent_ids  # an answer sharing no piece with the prompt
    new_prompt, new_brand = splitter.split_example(prompt_ids, brand_ids, prompt)
    assert len(new_brand) > len(brand_ids) and len(new_prompt) > len(prompt_ids)
    assert tokenizer.decode(new_prompt) == tokenizer.decode(prompt_ids)
    shared = set(prompt_ids) & set(brand_ids)  # only those pieces split: the rest is as many pieces as before
    assert len(new_prompt) - len(prompt_ids) == sum(len(splitter([i], prompt)) - 1 for i in prompt_ids if i in shared)
    assert splitter.split_example(prompt_ids, absent_ids, prompt) == (prompt_ids, absent_ids)


def test_longest_bounds_every_split_and_is_reached(tokenizer):
    from mxt_sdk.data.examples import ExampleEncoder

    splitter = SubwordSplitter(tokenizer, 0.9, seed=2)
    answers = ["northwind", "blue wool", "acme", "red"]
    reached = False
    for answer in answers:
        ids = tokenizer(answer)["input_ids"]
        bound = splitter.longest(ids)
        lengths = [len(splitter(ids, f"example {n}")) for n in range(200)]
        assert max(lengths) <= bound
        reached |= max(lengths) == bound
    assert reached  # at rate 0.9 some answer splits every piece at its worst point
    encoder = ExampleEncoder(tokenizer, 64, splitter)
    assert encoder.longest_answer(iter(answers), batch_size=3) == max(
        splitter.longest(tokenizer(a)["input_ids"]) for a in answers)
    assert ExampleEncoder(tokenizer, 64).longest_answer(answers) == max(len(tokenizer(a)["input_ids"]) for a in answers)
    assert SubwordSplitter(tokenizer, 0.0, seed=2).longest([5, 6, 7]) == 3
