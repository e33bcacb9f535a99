"""The text prior: per-pair softmax regressions over the TF-IDF of a product's words, saved with the model."""
from __future__ import annotations

import json
import math

import pytest

from conftest import tiny_config
from mxt_sdk import Extractor, Product
from mxt_sdk.experiments.synthetic import write_catalog
from mxt_sdk.inference.text_prior import (INDEX_FILE, WEIGHTS_FILE, TextPriorExample, TextValuePrior,
                                          product_document)
from mxt_sdk.inference.value_regression import SMOOTHING

FITS = ["slim", "regular", "loose"]


def _catalog(count: int, offset: int = 0) -> tuple[list[str], list[TextPriorExample]]:
    """Pair ``shirt\\tfit`` takes the fit its description implies through a cue word that is not the value
    ('tapered' -> slim, 'classic' -> regular, 'relaxed' -> loose) among filler words; pair ``shirt\\tbrand``
    has one value; pair ``shirt\\tcode`` has too many."""
    cues = {"slim": "tapered", "regular": "classic", "loose": "relaxed"}
    documents, examples = [], []
    for row in range(count):
        fit = FITS[(row + offset) % 3]
        filler = " ".join(f"word{(row * 7 + k) % 11}" for k in range(4))
        documents.append(f"shirt\nCotton shirt {filler}\nA {cues[fit]} cut for every day")
        examples += [TextPriorExample("shirt\tfit", fit, row), TextPriorExample("shirt\tbrand", "acme", row),
                     TextPriorExample("shirt\tcode", f"c{row}", row)]
    return documents, examples


def test_the_prior_learns_the_value_the_words_imply_and_leaves_unfitted_pairs_alone():
    documents, examples = _catalog(30)
    prior = TextValuePrior.fit(lambda: iter(documents), examples, max_values=5)
    held_out, _ = _catalog(9, offset=1)
    for row, document in enumerate(held_out):
        probabilities = [math.exp(x) for x in prior.log_probs("shirt\tfit", prior.vector(document), FITS)]
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
        assert FITS[max(range(3), key=probabilities.__getitem__)] == FITS[(row + 1) % 3]
    assert prior.log_probs("shirt\tbrand", prior.vector(held_out[0]), ["acme", "n/a"]) == pytest.approx(
        [math.log(1 - SMOOTHING + SMOOTHING / 2), math.log(SMOOTHING / 2)])
    assert prior.log_probs("shirt\tcode", prior.vector(held_out[0]), ["c1"]) is None  # 30 values > max_values
    assert prior.log_probs("dress\tfit", prior.vector(held_out[0]), FITS) is None
    # words in fewer than two training products stay out of the vocabulary; a vector has unit length
    assert "tapered" in prior.vocabulary and "every" in prior.vocabulary
    assert math.sqrt(sum(v * v for v in prior.vector(documents[0]).values())) == pytest.approx(1.0)
    assert prior.vector("nothing known here") == {}


def test_the_same_data_gives_the_same_files_and_a_saved_prior_answers_the_same(tmp_path):
    documents, examples = _catalog(18)
    first, second = (TextValuePrior.fit(lambda: iter(documents), examples, max_values=5) for _ in range(2))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first.save(tmp_path / "a")
    second.save(tmp_path / "b")
    for name in (WEIGHTS_FILE, INDEX_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    loaded = TextValuePrior.load(tmp_path / "a")
    assert set(loaded.pairs) == {"shirt\tfit", "shirt\tbrand"}
    for document in documents[:4]:
        assert loaded.log_probs("shirt\tfit", loaded.vector(document), FITS) == pytest.approx(first.log_probs("shirt\tfit", first.vector(document), FITS))
    assert TextValuePrior.load(tmp_path / "nothing") is None


def test_a_text_prior_file_of_another_version_is_refused(tmp_path):
    documents, examples = _catalog(6)
    TextValuePrior.fit(lambda: iter(documents), examples).save(tmp_path)
    index = json.loads((tmp_path / INDEX_FILE).read_text())
    (tmp_path / INDEX_FILE).write_text(json.dumps({**index, "version": 99}))
    with pytest.raises(ValueError, match="text prior version 99"):
        TextValuePrior.load(tmp_path)


def test_the_document_is_the_product_type_and_every_text_field():
    product = Product(id="1", product_type="shirt", title="Blue shirt", description="Slim cut", bullets=["Cotton"])
    assert product_document(product) == "shirt\nBlue shirt\nSlim cut\nCotton"


@pytest.mark.slow
def test_a_trained_text_prior_is_saved_loaded_and_named_where_it_moves_a_choice(tmp_path):
    catalog = write_catalog(tmp_path / "catalog", train_size=24, test_size=6, image_size=32)
    config = tiny_config([])
    config["training"] = {"text_prior": {"l2": 1e-4}, "seed": 0}
    config["extraction"] = {"choose_among_known": 50, "text_prior_weight": 4.0}
    extractor = Extractor.from_config(config)
    extractor.fit(catalog["train"], output_dir=tmp_path / "model", max_steps=3)
    assert (tmp_path / "model" / WEIGHTS_FILE).is_file()
    loaded = Extractor.from_pretrained(tmp_path / "model")
    assert loaded.text_prior is not None and set(loaded.text_prior.pairs) == set(extractor.text_prior.pairs)
    products = [Product.model_validate_json(line) for line in catalog["test"].read_text().splitlines()]
    with_prior = loaded.extract(products)
    loaded.config.extraction.text_prior_weight = 0.0
    without = loaded.extract(products)
    assert [(p.product_id, p.attribute) for p in with_prior] == [(p.product_id, p.attribute) for p in without]
    assert all(p.error is None for p in with_prior)
    assert {p.decided_by for p in without} <= {"generated", "known_value", "span"}
    moved = [p for p, q in zip(with_prior, without) if p.value != q.value]
    # a 3-step generator knows next to nothing: the prior, fitted on the whole training text, moves answers,
    # and every moved known-value answer names it
    assert moved and all(p.decided_by == "known_value+text_prior" for p in moved if p.decided_by != "generated")
    # calibration weighs the text prior too, keeping the configured weight unless another is clearly better
    loaded.config.extraction.text_prior_weight = 4.0
    loaded.calibrate(catalog["test"], prior_weights=(0.0, 4.0))
    assert loaded.calibration_summary()["text_prior_weight"] in (0.0, 4.0)
    loaded.config.extraction.choose_among_known = 0
    assert not loaded.text_prior_in_use and "text_prior_weight" not in loaded.calibration_summary()
