"""The prompt layout embeddings (mxt_t5.layout): parts and word numbers, training and save / load."""
from __future__ import annotations

import pytest
import torch

from conftest import TINY_T5, tiny_config
from mxt_sdk import Extractor, Product
from mxt_t5.layout import MAX_PARTS, prompt_layout
from mxt_t5.tokenizers import find_subsequence, train_unigram_tokenizer
from mxt_t5.words import WordTables

PROMPT = "question: brand context: shoes | kavennox leather boots | soft leather"


def _layout(tokenizer, prompt: str):
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    marker = tokenizer("context:", add_special_tokens=False)["input_ids"]
    start = find_subsequence(ids, marker) + len(marker)
    parts, words = prompt_layout(WordTables().update(tokenizer), tokenizer, torch.tensor([ids]),
                                 torch.tensor([start]), tokenizer.pad_token_id)
    return ids, parts[0].tolist(), words[0].tolist()


def _by_word(tokenizer, ids, parts, words) -> dict[tuple[int, int], str]:
    """``(part, word) -> the word's text`` over the context's words."""
    spelled: dict[tuple[int, int], list[int]] = {}
    for token, part, word in zip(ids, parts, words):
        if word > 0:
            spelled.setdefault((part, word), []).append(token)
    return {key: tokenizer.decode(pieces).strip() for key, pieces in spelled.items()}


@pytest.mark.parametrize("kind", ["unigram", "byte"])
def test_each_context_word_gets_its_part_and_number_within_it(kind):
    if kind == "unigram":
        tokenizer = train_unigram_tokenizer([PROMPT] * 20 + ["leather boots | cotton shirt"] * 20, 80)
    else:
        from mxt_t5.tokenizers import byte_tokenizer
        tokenizer = byte_tokenizer()
    ids, parts, words = _layout(tokenizer, PROMPT)
    assert _by_word(tokenizer, ids, parts, words) == {
        (1, 1): "shoes", (2, 1): "kavennox", (2, 2): "leather", (2, 3): "boots", (3, 1): "soft", (3, 2): "leather"}
    question = len(tokenizer("question: brand context:", add_special_tokens=False)["input_ids"])
    assert set(parts[:question]) == {0} and set(words[:question]) == {0}  # the question is part 0, no words
    assert max(parts) < MAX_PARTS


def test_a_model_with_a_prompt_layout_trains_saves_and_loads_identically(tmp_path):
    config = tiny_config([])
    config["model"]["generator"] = {"name": "t5", "options": {**TINY_T5["options"], "prompt_layout": 8}}
    products = [Product(id=f"p{i}", product_type="shoe", title=f"{brand} leather boot size {i % 5 + 5}",
                        attributes={"brand": brand.lower()})
                for i, brand in enumerate(["Kavennox", "Belkami", "Ronto", "Vasto"] * 6)]
    extractor = Extractor.from_config(config)
    layout = extractor.model.generator.layout
    assert layout is not None and float(layout.words.weight.detach().abs().sum()) == 0.0  # starts as no layout
    extractor.fit(products, output_dir=tmp_path / "model", max_steps=4, batch_size=8, normalizers=[])
    assert float(extractor.model.generator.layout.words.weight.detach().abs().sum()) > 0.0  # trained
    loaded = Extractor.from_pretrained(tmp_path / "model")
    before, after = extractor.extract(products[:6], ["brand"]), loaded.extract(products[:6], ["brand"])
    assert [p.raw_value for p in after] == [p.raw_value for p in before]
    assert [p.confidence for p in after] == pytest.approx([p.confidence for p in before], abs=1e-6)
