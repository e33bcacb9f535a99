"""The ``span`` (extractive) and ``classify`` (classification) baselines: what each can answer by
construction, that each learns what it should, and that both run through the whole pipeline."""
from __future__ import annotations

import logging
import random

import pytest
import torch

from conftest import TINY_T5, tiny_config
from mxt_sdk import Extractor, Product
from mxt_sdk.data.prompt import build_prompt
from mxt_sdk.plugins import manager

TINY = TINY_T5["options"]
COLORS = ["red", "blue", "green", "black", "white", "pink"]
UNSEEN_COLORS = ["grey", "brown"]
CATEGORIES = {"dress": "apparel", "mug": "kitchen", "shoe": "footwear"}


def _catalog(count: int, colors: list[str], seed: int, attribute: str) -> list[Product]:
    """Products whose colour is written in the title; their category follows from their type."""
    rng = random.Random(seed)
    products = []
    for n in range(count):
        color, kind, brand = rng.choice(colors), rng.choice(list(CATEGORIES)), rng.choice(["Acme", "Zeta", "Nova"])
        value = color if attribute == "color" else CATEGORIES[kind]
        products.append(Product(id=f"s{seed}-{n}", product_type=kind, title=f"{brand} {color} {kind}",
                                attributes={attribute: value}))
    return products


def _config(name: str, **options) -> dict:
    return {"model": {"generator": {"name": name, "options": {**TINY, **options}}, "max_answer_tokens": 8},
            "extraction": {"canonicalizer": None}}


def _fit(name: str, attribute: str, folder) -> Extractor:
    extractor = Extractor.from_config(_config(name))
    extractor.fit(_catalog(32, COLORS, 1, attribute), output_dir=folder, max_steps=16, batch_size=8,
                  learning_rate=5e-3, warmup_ratio=0.0, normalizers=[])
    return extractor


@pytest.fixture(scope="module")
def span_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("span")
    return _fit("span", "color", folder), folder


@pytest.fixture(scope="module")
def classify_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("classify")
    return _fit("classify", "category", folder), folder


def _context(attribute: str, product: Product) -> str:
    return " ".join(build_prompt(attribute, product).split("context:", 1)[1].split())


def _assert_spans_of_the_context(predictions, products_by_id) -> None:
    for prediction in predictions:
        assert prediction.error is None
        assert 0.0 < prediction.confidence <= 1.0
        context = _context(prediction.attribute, products_by_id[prediction.product_id])
        assert prediction.raw_value in context, (prediction.raw_value, context)


# ----------------------------------------------------------------------------- span
def test_span_answers_only_with_spans_of_the_context_before_and_after_training(products, span_model):
    by_id = {p.id: p for p in products}
    untrained = Extractor.from_config(_config("span"))
    _assert_spans_of_the_context(untrained.extract(products, ["color", "material"]), by_id)
    trained, _ = span_model
    _assert_spans_of_the_context(trained.extract(products, ["color", "material"]), by_id)
    held_out = _catalog(12, COLORS + UNSEEN_COLORS, 2, "color")
    _assert_spans_of_the_context(trained.extract(held_out, ["color"]), {p.id: p for p in held_out})


def test_span_learns_to_extract_values_written_in_the_text_even_unseen_ones(span_model):
    trained, _ = span_model
    train = _catalog(32, COLORS, 1, "color")
    correct = sum(p.value == x.attributes["color"] for p, x in zip(trained.extract(train, ["color"]), train))
    assert correct >= len(train) // 2
    held_out = [p for p in _catalog(40, COLORS + UNSEEN_COLORS, 2, "color") if p.attributes["color"] in UNSEEN_COLORS]
    predictions = trained.extract(held_out, ["color"])
    found = [p.value for p, x in zip(predictions, held_out) if p.value == x.attributes["color"]]
    assert found, "an extractive model can answer values it never saw as labels, when they are written"


def _generator(name: str, **options):
    cls = manager.get_component("generators", name).cls
    return cls(cls.parse_options({**TINY, **options}))


def _batch(generator, prompts: list[str], answers: list[str]):
    encoded = generator.tokenizer(prompts, padding=True, return_tensors="pt")
    labels = generator.tokenizer(answers, padding=True, return_tensors="pt")["input_ids"]
    labels[labels == generator.tokenizer.pad_token_id] = -100
    return encoded["input_ids"], encoded["attention_mask"], labels


def test_span_targets_the_answer_in_the_context_and_the_null_slot_otherwise():
    generator = _generator("span")
    prompt = "question: red context: dress | red cotton"
    input_ids, _, labels = _batch(generator, [prompt] * 3, ["red", "blue", "none"])
    targets = generator._targets(labels, input_ids, generator._context_bounds(input_ids))
    start = prompt.index("red", prompt.index("context:"))  # byte tokens: position = character index
    assert targets.tolist() == [[start, start + 2], [0, 0], [0, 0]]


def test_span_finds_a_label_spelled_with_other_case_than_the_text():
    from mxt_baselines.tokens import find_text_span
    from mxt_t5.tokenizers import train_unigram_tokenizer

    generator = _generator("span")
    prompt = "question: color context: backpack | Kestrel Light Pink Backpack"
    input_ids, _, labels = _batch(generator, [prompt, prompt], ["light pink", "dark pink"])
    targets = generator._targets(labels, input_ids, generator._context_bounds(input_ids))
    start = prompt.index("Light")  # byte tokens: position = character index
    assert targets.tolist() == [[start, start + len("light pink") - 1], [0, 0]]
    # the same with word pieces: the trained tokenizer folds case, so "Light" in the text and "light"
    # in the label are the same pieces
    words = train_unigram_tokenizer(iter(["Kestrel Light Pink Backpack light pink"] * 20 + ["a b c"]), 200)
    pieces = words.convert_ids_to_tokens(words(prompt)["input_ids"])
    assert words("Light Pink")["input_ids"] == words("light pink")["input_ids"]
    span = find_text_span(pieces, "light pink", 0, len(pieces))
    assert span is not None and words.convert_tokens_to_string(pieces[span[0]:span[1] + 1]).strip() == "light pink"


def test_span_reads_text_positions_after_those_a_fusion_put_in_front():
    torch.manual_seed(0)
    generator = _generator("span").eval()
    prompts = ["question: color context: mug | blue mug", "question: size context: x"]
    input_ids, mask, labels = _batch(generator, prompts, ["blue", "none"])
    with torch.no_grad():
        hidden = generator.encode(generator.embed(input_ids), mask)
        # one extra position in front, as the concat fusion's image token
        front_hidden = torch.cat([torch.randn(2, 1, generator.d_model), hidden], dim=1)
        front_mask = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
        plain = generator.greedy(hidden, mask, 6, input_ids=input_ids)
        shifted = generator.greedy(front_hidden, front_mask, 6, input_ids=input_ids)
        assert torch.equal(plain.token_ids, shifted.token_ids)
        assert torch.allclose(plain.token_logprobs, shifted.token_logprobs)
        assert torch.isclose(generator.loss(hidden, mask, labels, input_ids=input_ids),
                             generator.loss(front_hidden, front_mask, labels, input_ids=input_ids))
    assert (plain.token_ids.ne(0).sum(1) <= 6).all()  # the span and its EOS fit max_new_tokens


def test_span_runs_behind_the_concat_fusion(products, image_dir):
    config = tiny_config(["concat"])
    config["model"]["generator"] = {"name": "span", "options": TINY}
    extractor = Extractor.from_config(config)
    predictions = extractor.extract(products, ["color"], image_root=image_dir)
    _assert_spans_of_the_context(predictions, {p.id: p for p in products})


# ----------------------------------------------------------------------------- classify
def test_classify_learns_a_mapping_and_answers_only_values_seen_in_training(classify_model):
    trained, _ = classify_model
    train = _catalog(32, COLORS, 1, "category")
    seen = {p.attributes["category"] for p in train}
    table = trained.model.generator.classes
    tokenizer = trained.model.generator.tokenizer
    assert {tokenizer.decode(table.answer(row)) for row in range(len(table))} == seen
    predictions = trained.extract(train, ["category"])
    assert sum(p.value == x.attributes["category"] for p, x in zip(predictions, train)) >= 0.9 * len(train)
    others = [Product(id="o1", product_type="lamp", title="Brass desk lamp"),
              Product(id="o2", product_type="dress", title="Silk evening gown in teal")]
    for prediction in [*predictions, *trained.extract(others, ["category", "color"])]:
        assert prediction.raw_value in seen and 0.0 < prediction.confidence <= 1.0


def test_classify_leaves_answers_beyond_max_classes_out_of_the_loss_with_one_warning(caplog):
    generator = _generator("classify", max_classes=2).train()
    input_ids, mask, labels = _batch(generator, ["question: a context: x"] * 3, ["red", "blue", "green"])
    hidden = generator.encode(generator.embed(input_ids), mask)
    with caplog.at_level(logging.WARNING, logger="mxt_sdk.baselines"):
        for _ in range(2):
            loss = generator.loss(hidden, mask, labels, input_ids=input_ids)
    assert len(generator.classes) == 2 and torch.isfinite(loss)
    assert len([r for r in caplog.records if "max_classes=2" in r.getMessage()]) == 1
    generator.eval()  # outside training, unseen answers add no class and count for nothing
    _, _, unseen = _batch(generator, ["question: a context: x"], ["teal"])
    assert generator.loss(hidden[:1], mask[:1], unseen, input_ids=input_ids[:1]).item() == 0.0
    assert len(generator.classes) == 2


def test_classify_only_picks_classes_that_fit_max_new_tokens_and_without_classes_answers_nothing():
    generator = _generator("classify").train()
    input_ids, mask, labels = _batch(generator, ["question: a context: x"] * 2, ["red", "a much longer answer"])
    hidden = generator.encode(generator.embed(input_ids), mask)
    fresh = _generator("classify").eval()
    with torch.no_grad():
        empty = fresh.greedy(hidden, mask, 5, input_ids=input_ids)
    assert empty.token_ids.tolist() == [[1], [1]] and empty.token_logprobs.abs().sum() == 0
    generator.loss(hidden, mask, labels, input_ids=input_ids)
    with torch.no_grad():
        short = generator.eval().greedy(hidden, mask, 5, input_ids=input_ids)
    assert generator.tokenizer.batch_decode(short.token_ids, skip_special_tokens=True) == ["red", "red"]
    assert (short.token_logprobs[:, 0] < 0).all() and (short.token_logprobs[:, 1:] == 0).all()


# ----------------------------------------------------------------------------- both
@pytest.mark.parametrize("fixture", ["span_model", "classify_model"])
def test_a_saved_then_loaded_baseline_predicts_identically(fixture, request, products):
    trained, folder = request.getfixturevalue(fixture)
    loaded = Extractor.from_pretrained(folder)
    attributes = ["color", "category"]
    data = [*products, *_catalog(8, COLORS + UNSEEN_COLORS, 3, "color")]
    before, after = trained.extract(data, attributes), loaded.extract(data, attributes)
    assert [(p.raw_value, p.value) for p in after] == [(p.raw_value, p.value) for p in before]
    assert [p.confidence for p in after] == pytest.approx([p.confidence for p in before], abs=1e-6)


@pytest.mark.parametrize("name", ["span", "classify"])
def test_a_baseline_with_mag_and_xattn_trains_and_evaluates(name, products, image_dir, tmp_path):
    config = tiny_config(["mag", "xattn"])
    config["model"]["generator"] = {"name": name, "options": TINY}
    colors = {"p1": "red", "p2": "blue", "p3": "white", "p4": "green", "p5": "yellow"}
    labelled = [p.model_copy(update={"attributes": {"color": colors[p.id]}}) for p in products]
    extractor = Extractor.from_config(config)
    result = extractor.fit(labelled, output_dir=tmp_path / "model", image_root=image_dir, max_steps=3,
                           batch_size=4, normalizers=[])
    assert result.steps == 3
    report = extractor.evaluate(labelled, image_root=image_dir)
    assert report["rows"] == len(labelled) and report["errors"] == 0
    assert {"micro", "macro"} <= set(report) and report["slices"]["with_image"]["support"] >= 1
