"""The span prior: a hashed linear model over the runs of a product's text, saved with the model."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tiny_config
from mxt_sdk import Extractor, Product
from mxt_sdk.experiments.synthetic import write_catalog
from mxt_sdk.inference.span_features import candidate_spans, match_key, tokens, word_key
from mxt_sdk.inference.span_prior import INDEX_FILE, WEIGHTS_FILE, SpanPrior

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "bo", "da", "fu"]
MODELS = ["Tulsa", "Vagabond", "Milano", "Adana", "Radler", "Jayna"]
TYPES = ["Flat", "Loafer", "Slip On", "Boot", "Sandal"]
COLOURS = ["Black", "Brown Ruff", "Navy", "Red Patent"]


def _brand(n: int) -> str:
    """A made-up brand name, different for each ``n`` below 1,728 (three syllables: ``n``'s base-12 digits)."""
    return "".join(SYLLABLES[(n // 12 ** k) % 12] for k in range(3)).capitalize()


def _shoes(first: int, count: int) -> list[Product]:
    """Shoes titled like OA-Mine's ("<Brand> Men's <Model> <Type>,<Colour>,<size> M US"), brand ``first + i``
    for the i-th; every attribute is written in the title."""
    products = []
    for i in range(count):
        n = first + i
        brand, model, kind = _brand(n), MODELS[n % 6], TYPES[(n // 2) % 5]
        colour, size = COLOURS[(n // 3) % 4], f"{6 + n % 7} M US"
        title = f"{brand} {'Men' if n % 2 else 'Women'}'s {model} {kind},{colour},{size}"
        products.append(Product(id=str(n), product_type="Shoes", title=title,
                                 attributes={"Brand": brand, "Colour": colour, "Size": size, "Model": model}))
    return products


def test_candidates_are_runs_of_the_texts_own_characters():
    text = "Ipath Men's Cats Mid Skate Shoe,Beige/Hemp,11.5 M (US)"
    spans = {span.text for span in candidate_spans(text, tokens(text, 48), 10)}
    assert {"Ipath", "Men's", "Beige/Hemp", "Hemp", "11.5 M (US)", "Skate Shoe"} <= spans
    assert not any(span[0] in ",/(" or span[-1] in ",/(" for span in spans)  # no candidate starts or ends on a mark
    assert all(len(tokens(span, 99)) <= 3 for span in candidate_spans(text, tokens(text, 48), 3) for span in [span.text])
    assert max(span.last for span in candidate_spans(text, tokens(text, 5), 10)) < 5  # only the first tokens count
    assert match_key("16 OZ") == match_key("16oz") and word_key("Black/Grey") == "black grey"


def test_the_prior_finds_brands_training_never_saw_by_where_they_sit():
    prior = SpanPrior.fit(lambda: iter(_shoes(0, 240)), hash_bits=16, epochs=4)
    assert prior.pairs == {"Shoes\tBrand": 1.0, "Shoes\tColour": 1.0, "Shoes\tSize": 1.0, "Shoes\tModel": 1.0}
    held_out = _shoes(1000, 60)  # brands 1000..1059: none of them in training
    assert not {p.attributes["Brand"] for p in held_out} & {p.attributes["Brand"] for p in _shoes(0, 240)}
    found = [prior.best(p, "Brand") for p in held_out]
    right = sum(answer == p.attributes["Brand"] for (answer, _), p in zip(found, held_out))
    assert right >= 0.9 * len(held_out)
    assert all(0.0 < probability <= 1.0 for _, probability in found)
    sizes = sum(prior.best(p, "Size")[0] == p.attributes["Size"] for p in held_out)
    assert sizes >= 0.9 * len(held_out)
    assert prior.best(held_out[0], "Heel height") is None  # a pair it was never fitted on


def test_a_pair_whose_values_are_not_written_is_not_fitted_and_none_is_a_candidate():
    products = [p.model_copy(update={"attributes": {**p.attributes, "Season": "Summer"}}) for p in _shoes(0, 40)]
    prior = SpanPrior.fit(lambda: iter(products), hash_bits=12, epochs=2)
    assert "Shoes\tSeason" not in prior.pairs and not prior.applies("Shoes", "Season")
    assert prior.written_share("Shoes", "Season") is None and prior.written_share("Shoes", "Brand") == 1.0
    untitled = Product(id="x", product_type="Shoes", title="!!!", attributes={})
    assert prior.best(untitled, "Brand") == (None, pytest.approx(1.0))  # nothing to point at: "not written"


def test_the_same_products_give_the_same_files_and_a_saved_prior_answers_the_same(tmp_path):
    products = _shoes(0, 60)
    first, second = (SpanPrior.fit(lambda: iter(products), hash_bits=12, epochs=2) for _ in range(2))
    for name, prior in (("a", first), ("b", second)):
        (tmp_path / name).mkdir()
        prior.save(tmp_path / name)
    for name in (WEIGHTS_FILE, INDEX_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    loaded = SpanPrior.load(tmp_path / "a")
    for product in _shoes(500, 5):
        assert loaded.best(product, "Brand") == first.best(product, "Brand")
    assert SpanPrior.load(tmp_path / "nothing") is None
    index = json.loads((tmp_path / "a" / INDEX_FILE).read_text())
    (tmp_path / "a" / INDEX_FILE).write_text(json.dumps({**index, "version": 99}))
    with pytest.raises(ValueError, match="span prior version 99"):
        SpanPrior.load(tmp_path / "a")


def test_fitting_without_labels_is_refused():
    with pytest.raises(ValueError, match="labelled"):
        SpanPrior.fit(lambda: iter([Product(id="1", product_type="Shoes", title="A shoe")]))


@pytest.mark.slow
def test_a_trained_span_prior_is_saved_loaded_and_names_the_answers_it_gives(tmp_path):
    catalog = write_catalog(tmp_path / "catalog", train_size=24, test_size=6, image_size=32)
    config = tiny_config([])
    config["training"] = {"span_prior": {"hash_bits": 12, "epochs": 2}, "seed": 0}
    config["extraction"] = {"span_prior_share": 0.3}
    extractor = Extractor.from_config(config)
    extractor.fit(catalog["train"], output_dir=tmp_path / "model", max_steps=3)
    assert (tmp_path / "model" / WEIGHTS_FILE).is_file() and extractor.span_prior.pairs
    loaded = Extractor.from_pretrained(tmp_path / "model")
    assert loaded.span_prior is not None and loaded.span_prior.pairs == extractor.span_prior.pairs
    products = [Product.model_validate_json(line) for line in catalog["test"].read_text().splitlines()]
    with_prior = loaded.extract(products)
    spans = [p for p in with_prior if p.decided_by == "span_prior"]
    # a 3-step generator knows next to nothing; the prior answers its pairs with runs of the product's text
    assert spans and all(p.in_text and 0.0 < p.confidence <= 1.0 for p in spans)
    loaded.config.extraction.span_prior_share = None
    without = loaded.extract(products)
    assert [(p.product_id, p.attribute) for p in with_prior] == [(p.product_id, p.attribute) for p in without]
    assert not any(p.decided_by == "span_prior" for p in without)


FIT_IN_A_FRESH_PROCESS = """
import sys
from pathlib import Path
from test_span_prior import _shoes
from mxt_sdk.inference.span_prior import SpanPrior
SpanPrior.fit(lambda: iter(_shoes(0, 80)), hash_bits=12, epochs=2, seed=3).save(Path(sys.argv[1]))
"""


@pytest.mark.slow
def test_two_fresh_processes_with_different_hash_seeds_write_the_same_files(tmp_path):
    tests = str(Path(__file__).parent)
    for name, hash_seed in (("a", "1"), ("b", "2")):
        (tmp_path / name).mkdir()
        env = {**os.environ, "PYTHONHASHSEED": hash_seed,
               "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}
        subprocess.run([sys.executable, "-c", FIT_IN_A_FRESH_PROCESS, str(tmp_path / name)], check=True, env=env,
                       cwd=tests)
    for name in (WEIGHTS_FILE, INDEX_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
