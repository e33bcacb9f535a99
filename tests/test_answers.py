"""What a Prediction says about its answer: cut at the token limit, "not stated" versus a genuine
value "none" (the reserved answer), and which kind of threshold judged it."""
from __future__ import annotations

import json

import pytest

from conftest import script_answers, tiny_config
from mxt_sdk import Extractor, Product
from mxt_sdk.config import NOT_STATED, ModelConfig
from mxt_sdk.data.examples import example_rows

PRODUCTS = [Product(id="a", product_type="dress", title="Item 01 red dress"),
            Product(id="b", product_type="dress", title="Item 02 navy blue dress"),
            Product(id="c", product_type="dress", title="Item 03 plain dress")]


def _extractor(**model) -> Extractor:
    config = tiny_config([])
    config["model"].update(model)
    return Extractor.from_config(config)


def test_an_answer_without_eos_is_flagged_truncated(monkeypatch):
    script_answers(monkeypatch, {("Item 01", "color"): ("red", 0.9, True),
                                 ("Item 02", "color"): ("navy bl", 0.8, False),
                                 ("Item 03", "color"): (NOT_STATED, 0.7, True)})
    predictions = _extractor().extract(PRODUCTS, ["color"])
    assert [(p.value, p.raw_value, p.truncated) for p in predictions] == [
        ("red", "red", False), ("navy bl", "navy bl", True), (None, NOT_STATED, False)]


def test_a_genuine_none_is_a_value_and_the_reserved_answer_is_not_stated(monkeypatch):
    assert ModelConfig(generator="t5").none_answer == NOT_STATED == "n/a-not-stated"
    script_answers(monkeypatch, {("Item 01", "color"): ("none", 0.9, True),
                                 ("Item 02", "color"): ("N/A-Not-Stated", 0.9, True),
                                 ("Item 03", "color"): ("", 0.9, True)})
    predictions = _extractor().extract(PRODUCTS, ["color"])
    assert [(p.value, p.accepted) for p in predictions] == [("none", True), (None, False), (None, False)]


def test_training_examples_answer_the_reserved_string_for_null_labels_only():
    product = Product(id="a", product_type="bag", title="Bag", attributes={"pattern": "none", "logo": None})
    assert [row["answer"] for row in example_rows([product], NOT_STATED)] == ["none", NOT_STATED]


def test_a_model_saved_with_the_old_none_answer_keeps_it(monkeypatch, tmp_path):
    _extractor().save_pretrained(tmp_path / "old")
    config_file = tmp_path / "old" / "config.json"
    saved = json.loads(config_file.read_text())
    assert saved["config"]["model"]["none_answer"] == NOT_STATED
    saved["config"]["model"]["none_answer"] = "none"  # what folders saved before the reserved answer hold
    config_file.write_text(json.dumps(saved))
    loaded = Extractor.from_pretrained(tmp_path / "old")
    assert loaded.config.model.none_answer == "none"
    script_answers(monkeypatch, {("Item 01", "color"): ("none", 0.9, True),
                                 ("Item 02", "color"): ("blue", 0.9, True),
                                 ("Item 03", "color"): (NOT_STATED, 0.9, True)})
    assert [p.value for p in loaded.extract(PRODUCTS, ["color"])] == [None, "blue", NOT_STATED]


@pytest.mark.parametrize("kind", ["unigram", "byte"])
def test_tokenizers_round_trip_the_reserved_answer(kind):
    from mxt_t5.tokenizers import byte_tokenizer, train_unigram_tokenizer

    texts = ["question: color context: dress | Red dress", "red", NOT_STATED, "none",
             "question: logo context: bag | Plain bag -20% off", NOT_STATED] * 10
    tokenizer = train_unigram_tokenizer(texts, 120) if kind == "unigram" else byte_tokenizer()
    ids = tokenizer(NOT_STATED)["input_ids"]
    assert tokenizer.unk_token_id not in ids and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == NOT_STATED


def test_predictions_say_which_kind_of_threshold_judged_them(monkeypatch):
    from mxt_sdk.evaluation.thresholds import Pooled, Thresholds

    script_answers(monkeypatch, {("Item 01", "color"): ("red", 0.6, True), ("Item 01", "size"): ("m", 0.6, True),
                                 ("Item 01", "fit"): ("slim", 0.6, True)})
    extractor = _extractor()
    assert {p.threshold_source for p in extractor.extract(PRODUCTS[:1], ["color"])} == {"default"}
    extractor.thresholds = Thresholds(target_precision=0.9, pairs={"dress\tcolor": 0.5, "dress\tsize": 0.7},
                                      sources={"dress\tsize": "attribute"},
                                      all_rows=Pooled(threshold=None, support=30))
    predictions = extractor.extract(PRODUCTS[:1], ["color", "size", "fit"])
    assert [(p.attribute, p.threshold_source, p.accepted) for p in predictions] == [
        ("color", "pair", True), ("size", "attribute", False), ("fit", "global", False)]
