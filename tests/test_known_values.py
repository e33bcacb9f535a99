"""Choosing among known values (extraction.choose_among_known): whole-answer scores and the engine rule."""
from __future__ import annotations

from copy import deepcopy

import pytest
import torch

from conftest import tiny_config
from mxt_sdk import Extractor, Product
from mxt_sdk.data.metadata import CatalogMetadata, pair_key
from mxt_sdk.evaluation.metrics import written_in
from mxt_sdk.plugins import manager


@pytest.mark.parametrize("copy", [False, True])
def test_answer_logprobs_of_the_greedy_answer_are_greedy_scores(copy):
    torch.manual_seed(0)
    generator = manager.create("generators", "t5", {"tokenizer": "byte", "d_model": 32, "d_ff": 64, "num_layers": 2,
                                                    "num_heads": 4, "dropout_rate": 0.0, "copy_mechanism": copy})
    generator.eval()
    input_ids = torch.randint(3, 200, (4, 9))
    mask = torch.ones_like(input_ids)
    with torch.no_grad():
        hidden = generator.encode(generator.embed(input_ids), mask)
        out = generator.greedy(hidden, mask, 4, input_ids=input_ids)
        labels = out.token_ids.clone()
        for row in labels:  # what follows the first EOS is padding
            eos = (row == generator.model.config.eos_token_id).nonzero()
            if len(eos):
                row[int(eos[0]) + 1:] = -100
        scores = generator.answer_logprobs(hidden, mask, labels, input_ids=input_ids)
    assert torch.allclose(scores, out.token_logprobs.sum(-1), atol=1e-4)


@pytest.mark.parametrize("copy", [False, True])
@pytest.mark.parametrize("context_encoding", ["per_question", "per_product"])
def test_candidates_scored_on_shared_states_match_each_row_scored_alone(copy, context_encoding):
    """The model hands the candidates' rows to the generator as shared states (projections once per
    question's state); the scores are those of every candidate row decoded with its own copy of the states."""
    torch.manual_seed(0)
    _check_shared_scores(copy, context_encoding)


def _check_shared_scores(copy: bool, context_encoding: str) -> None:
    config = deepcopy(tiny_config(["mag"]))  # conftest's dicts are shared
    config["model"]["generator"]["options"] = {**config["model"]["generator"]["options"], "copy_mechanism": copy}
    config["model"]["context_encoding"] = context_encoding
    model = Extractor.from_config(config).model.eval()
    tokenizer = model.generator.tokenizer
    prompts = tokenizer(["color? shirt red cotton tee", "size? shirt red cotton tee", "color? mug blue"],
                        padding=True, return_tensors="pt")
    images = model.image_features(None, None)
    labels = tokenizer(["red", "blue", "dark green", "red", "large"], padding=True, return_tensors="pt")["input_ids"]
    labels[labels == tokenizer.pad_token_id] = -100
    example = torch.tensor([0, 0, 0, 1, 2])
    features = _image_features(model, 3)
    with torch.no_grad():
        shared = model.answer_logprobs(prompts["input_ids"], prompts["attention_mask"], features, labels, example)
        hidden, mask = model.encode_text(prompts["input_ids"], prompts["attention_mask"], features)
        alone = model.generator.answer_logprobs(hidden[example], mask[example], labels,
                                                input_ids=prompts["input_ids"][example])
    assert images is None
    assert torch.allclose(shared, alone, atol=1e-5)


def _image_features(model, count: int):
    from mxt_sdk.model.mxt import ImageFeatures

    generator = torch.Generator().manual_seed(1)
    dims = {kind: model.feature_dim(kind) for kind in model.feature_kinds}
    return ImageFeatures({kind: torch.randn(count, dim, generator=generator) for kind, dim in dims.items()},
                         torch.ones(count, dtype=torch.bool))


def _extractor(values: dict[str, int], limit: int, fusions: tuple[str, ...] = ()) -> Extractor:
    extractor = Extractor.from_config({**tiny_config(list(fusions)), "extraction": {"canonicalizer": None,
                                                                                      "choose_among_known": limit}})
    extractor.metadata = CatalogMetadata(values={pair_key("shirt", "color"): values}, max_answer_tokens=6)
    return extractor


def test_a_short_value_list_answers_its_likeliest_value_with_its_probability():
    values = {"red": 3, "blue": 2, "dark green": 1}
    extractor = _extractor(values, limit=5)
    product = Product(id="p1", product_type="shirt", title="A plain cotton tee")
    [prediction] = extractor.extract([product], ["color"])
    none = extractor.config.model.none_answer
    assert prediction.raw_value in {*values, none}
    # the answer is the candidate with the highest whole-answer probability, and that is its confidence
    model, tokenizer = extractor.model.eval(), extractor.model.generator.tokenizer
    prompt = tokenizer([extractor_prompt(product)], return_tensors="pt")
    candidates = [*sorted(values), none]
    labels = tokenizer(candidates, padding=True, return_tensors="pt")["input_ids"]
    labels[labels == tokenizer.pad_token_id] = -100
    with torch.no_grad():
        scores = model.answer_logprobs(prompt["input_ids"], prompt["attention_mask"], None, labels,
                                       torch.zeros(len(candidates), dtype=torch.long))
    best = int(scores.argmax())
    assert prediction.raw_value == candidates[best]
    assert prediction.confidence == pytest.approx(float(scores[best].exp()), rel=1e-4)
    assert prediction.decided_by == "known_value"


def test_a_long_value_list_keeps_the_free_answer():
    values = {f"v{i}": 1 for i in range(6)}
    extractor = _extractor(values, limit=5)
    products = [Product(id="p", product_type="shirt", title="tee"), Product(id="q", product_type="mug", title="mug")]
    limited = [(p.raw_value, p.confidence) for p in extractor.extract(products, ["color"])]
    extractor.config.extraction.choose_among_known = 0
    free = [(p.raw_value, p.confidence) for p in extractor.extract(products, ["color"])]
    assert limited == free  # 6 values > 5, and the mug's pair is unknown
    assert {p.decided_by for p in extractor.extract(products, ["color"])} == {"generated"}
    extractor.config.extraction.choose_among_known = 6
    assert extractor.extract(products[:1], ["color"])[0].raw_value in {*values, extractor.config.model.none_answer}


def extractor_prompt(product: Product) -> str:
    from mxt_sdk.data.prompt import build_prompt

    return build_prompt("color", product)


def test_a_generator_that_cannot_score_keeps_its_free_answers(caplog):
    config = {**tiny_config([]), "extraction": {"canonicalizer": None, "choose_among_known": 5}}
    config["model"]["generator"] = {"name": "span", "options": {"tokenizer": "byte", "d_model": 32, "d_ff": 64,
                                                                "num_layers": 2, "num_heads": 4}}
    extractor = Extractor.from_config(config)
    extractor.metadata = CatalogMetadata(values={pair_key("shirt", "color"): {"red": 1}}, max_answer_tokens=6)
    assert not extractor.model.generator.scores_answers
    with caplog.at_level("WARNING"):
        [prediction] = extractor.extract([Product(id="p", product_type="shirt", title="red tee")], ["color"])
    assert prediction.error is None
    assert "choose_among_known is ignored" in caplog.text


# --------------------------------------------------------------------------- answers bound to the text
def _word_runs(text: str) -> set[str]:
    """Every run of whole words of ``text`` (words: letters and digits), case-folded."""
    import re

    words = re.findall(r"[^\W_]+|[^\w\s]", text.casefold())
    return {" ".join(words[i:j]) for i in range(len(words)) for j in range(i + 1, len(words) + 1)}


def _brand_extractor(share_written: float, span: float | None) -> Extractor:
    config = {**tiny_config([]), "extraction": {"canonicalizer": None, "choose_text_span": span}}
    extractor = Extractor.from_config(config)
    key = pair_key("shirt", "brand")
    extractor.metadata = CatalogMetadata(values={key: {f"brand{i}": 1 for i in range(100)}}, max_answer_tokens=8,
                                         written={key: round(100 * share_written)})
    return extractor


def _spaced(value: str) -> str:
    """Words and punctuation apart, as :func:`_word_runs` writes them."""
    import re

    return " ".join(re.findall(r"[^\W_]+|[^\w\s]", value.casefold()))


def test_pairs_whose_values_the_text_states_answer_a_run_of_its_words():
    products = [Product(id="p", product_type="shirt", title="Kalimo soft tee", description="Ships fast."),
                Product(id="q", product_type="shirt", title="Ronto slim-fit shirt")]
    extractor = _brand_extractor(0.95, span=0.9)
    none = extractor.config.model.none_answer
    spanned = extractor.extract(products, ["brand"])
    for product, prediction in zip(products, spanned):
        runs = _word_runs(f"{product.product_type}. {product.text}")
        assert prediction.raw_value == none or _spaced(prediction.raw_value) in runs, prediction
        assert prediction.decided_by == "span" and 0.0 <= prediction.confidence <= 1.0
    extractor.config.extraction.choose_text_span = None
    free = extractor.extract(products, ["brand"])
    assert {p.decided_by for p in free} == {"generated"}
    for product, prediction in zip(products, free):  # the random model's free answers: neither stated nor none,
        assert prediction.raw_value != none and not written_in(prediction.raw_value, product.text)  # so bound above
    extractor.config.extraction.choose_text_span = 0.99  # the pair states 95% of its values: below, free answers
    assert [p.raw_value for p in extractor.extract(products, ["brand"])] == [p.raw_value for p in free]


def test_written_values_are_counted_per_pair_and_absent_counts_mean_unknown():
    from mxt_sdk.data.examples import collect_metadata

    products = [Product(id="a", product_type="shirt", title="Kalimo tee", attributes={"brand": "kalimo", "color": "red"}),
                Product(id="b", product_type="shirt", title="Ronto tee", attributes={"brand": "ronto", "color": None}),
                Product(id="c", product_type="shirt", title="Plain tee", attributes={"brand": "vasto", "color": "blue"})]
    metadata = collect_metadata(products)
    assert metadata.written == {pair_key("shirt", "brand"): 2, pair_key("shirt", "color"): 0}
    assert metadata.written_share("shirt", "brand") == pytest.approx(2 / 3)
    assert metadata.written_share("shirt", "color") == 0.0 and metadata.written_share("mug", "brand") is None
    assert CatalogMetadata(values=metadata.values).written_share("shirt", "brand") is None  # older models


def test_an_answer_written_in_the_text_moves_only_to_a_spelling_of_itself():
    from mxt_sdk.inference.engine import Request

    extractor = Extractor.from_config(tiny_config([]))
    extractor.metadata = CatalogMetadata(values={pair_key("shirt", "brand"): {"belkali": 5},
                                                 pair_key("shirt", "size"): {"16 oz": 3}})
    extractor.set_canonicalizer("faiss")
    engine = extractor.engine()
    product = Product(id="p", product_type="shirt", title="Belkami 16oz tee, by belkalli")
    chunk = [Request("record 0", "p", product, ["brand", "size"])]
    answers = {(0, "brand"): ("belkami", 0.5, False), (0, "size"): ("16oz", 0.5, False)}
    assert engine.canonicalizer.canonicalize("belkami", product_type="shirt", attribute="brand")[0] == "belkali"
    canonical = engine._canonicalize(chunk, answers)
    assert (0, "brand") not in canonical  # stated in the title: stays the new brand
    assert canonical[(0, "size")] == ("16 oz", False)  # the catalog's spelling of the same value
    answers[(0, "brand")] = ("belkaly", 0.5, False)  # not in the text: canonicalized as before
    assert engine._canonicalize(chunk, answers)[(0, "brand")] == ("belkali", False)


def test_an_image_prior_joins_the_known_value_scores_of_products_with_an_image(image_dir):
    from mxt_sdk.images.batching import ImageLoader
    from mxt_sdk.inference.image_prior import ImageValuePrior, _Regression

    extractor = _extractor({"red": 3, "blue": 2, "dark green": 1}, limit=5, fusions=("mag",))
    model = extractor.model.eval()
    loader = ImageLoader(model.preprocessing(), image_dir, 10_000_000)
    with torch.no_grad():
        dims = model.encode_images(loader.load(["red.jpg"])[0]).features["global"].shape[1]
    # a prior certain of "dark green" whatever the photo (values are kept sorted: blue, dark green, red)
    extractor.image_prior = ImageValuePrior(torch.zeros(dims), torch.zeros(dims, 1), {"pair:shirt color": _Regression(
        ["blue", "dark green", "red"], torch.zeros(1, 3), torch.tensor([-10.0, 10.0, -10.0]))},
        {pair_key("shirt", "color"): "pair:shirt color"}, l2=0.01)
    products = [Product(id="photo", product_type="shirt", title="A plain cotton tee", image="red.jpg"),
                Product(id="no-photo", product_type="shirt", title="A plain cotton tee")]
    extractor.config.extraction.image_prior_weight = 0.0
    plain = extractor.extract(products, ["color"], image_root=image_dir)
    extractor.config.extraction.image_prior_weight = 100.0  # outweighs the generator's length penalty
    joined = extractor.extract(products, ["color"], image_root=image_dir)
    assert plain[0].raw_value != "dark green"  # a random generator prefers the short values
    assert joined[0].raw_value == "dark green" and 0.99 < joined[0].confidence <= 1.0
    assert [p.decided_by for p in plain] == ["known_value", "known_value"]
    assert [p.decided_by for p in joined] == ["known_value+image_prior", "known_value"]  # moved only with a photo
    assert (joined[1].raw_value, joined[1].confidence) == (plain[1].raw_value, plain[1].confidence)  # no photo


# --------------------------------------------------------------------------- open pairs (Good-Turing)
def test_new_value_share_is_the_share_of_training_values_seen_once():
    metadata = CatalogMetadata(values={pair_key("shirt", "brand"): {"a": 1, "b": 1, "c": 2},
                                       pair_key("shirt", "size"): {"s": 5, "m": 5}})
    assert metadata.new_value_share("shirt", "brand") == pytest.approx(2 / 4)
    assert metadata.new_value_share("shirt", "size") == 0.0
    assert metadata.new_value_share("mug", "brand") is None


def test_an_open_pair_keeps_the_free_answer_and_a_closed_one_chooses():
    products = [Product(id="p", product_type="shirt", title="Kalimo soft tee")]
    open_values = {"kalimo": 1, "ronto": 1, "vasto": 2}  # Good-Turing new-value share 2/4
    extractor = _extractor(open_values, limit=5)
    free_extractor = _extractor(open_values, limit=0)
    free = [(p.raw_value, p.decided_by) for p in free_extractor.extract(products, ["color"])]
    assert extractor.extract(products, ["color"])[0].decided_by == "known_value"
    extractor.config.extraction.open_pair_new_share = 0.4  # 0.5 > 0.4: open, the free answer stays
    assert [(p.raw_value, p.decided_by) for p in extractor.extract(products, ["color"])] == free
    extractor.config.extraction.open_pair_new_share = 0.6  # 0.5 <= 0.6: closed, a known value is chosen
    assert extractor.extract(products, ["color"])[0].decided_by == "known_value"


@pytest.mark.parametrize("written, kept", [(1, False), (8, True)])
def test_a_stated_answer_that_is_no_known_value_stands_only_where_the_pair_writes_its_values(monkeypatch, written,
                                                                                             kept):
    from conftest import script_answers

    # "cotton" is in the title but is no fit: on a pair that rarely writes its values (1 of 8) it is another
    # attribute's word and the known values decide; on a pair that writes them all (8 of 8) it may be a new fit
    script_answers(monkeypatch, {("Cotton slim fit shirt", "fit"): ("cotton", 0.9, True)})
    extractor = Extractor.from_config({**tiny_config([]), "extraction": {"canonicalizer": None,
                                                                         "choose_among_known": 50}})
    key = pair_key("shirt", "fit")
    extractor.metadata = CatalogMetadata(values={key: {"regular fit": 5, "slim fit": 3}}, max_answer_tokens=6,
                                         written={key: written})
    [prediction] = extractor.extract([Product(id="p", product_type="shirt", title="Cotton slim fit shirt")], ["fit"])
    if kept:
        assert (prediction.raw_value, prediction.decided_by) == ("cotton", "generated")
    else:
        assert prediction.decided_by == "known_value"
        assert prediction.raw_value in {"regular fit", "slim fit", extractor.config.model.none_answer}
