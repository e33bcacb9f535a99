"""Calls a transformers / GLiNER user expects: ``extractor(products, attributes=..., threshold=...)``, plain
dicts without ids, and the same over ``POST /v1/extract``."""
from __future__ import annotations

import httpx
import pytest
from conftest import tiny_config
from live_server import LiveServer
from mxt_sdk import Extractor, Product
from mxt_sdk.errors import ConfigError
from mxt_sdk.experiments.synthetic import write_catalog
from mxt_sdk.serving.app import create_app
from mxt_sdk.serving.settings import ServeSettings

ATTRIBUTES = ["color", "sleeve_length"]


@pytest.fixture(scope="module")
def extractor(tmp_path_factory):
    """A tiny text-only model trained a few steps: it writes (poor) values where an untrained one writes
    nothing (a "not stated" answer is never accepted, whatever the threshold)."""
    catalog = write_catalog(tmp_path_factory.mktemp("catalog"), train_size=24, test_size=8, image_size=48)
    config = tiny_config([])
    config["training"] = {"learning_rate": 3e-3, "batch_size": 8, "seed": 7}
    extractor = Extractor.from_config(config)
    extractor.fit(catalog["train"], output_dir=tmp_path_factory.mktemp("model"), max_steps=4)
    return extractor


def test_calling_the_extractor_with_plain_dicts_and_threshold_zero_accepts_every_answer(extractor):
    predictions = extractor([{"title": "Red cotton dress", "product_type": "dress"}], attributes=ATTRIBUTES,
                            threshold=0.0)
    assert [p.attribute for p in predictions] == ATTRIBUTES
    assert all(p.value is not None and p.accepted and p.threshold_source == "call" for p in predictions)
    assert {p.product_id for p in predictions} == {"record-0"}


def test_the_call_is_extract_and_a_single_product_is_a_list_of_one(extractor):
    product = Product(id="p1", product_type="dress", title="Long sleeve red dress")
    assert extractor(product, attributes=ATTRIBUTES) == extractor.extract([product], ATTRIBUTES)
    records = [{"product_type": "dress", "title": "Blue dress"}, {"id": "", "product_type": "dress", "title": "Maxi"},
               {"id": 7, "product_type": "dress", "title": "Green dress"}]
    ids = [p.product_id for p in extractor(records, attributes=["color"])]
    assert ids == ["record-0", "record-1", "7"]


def test_a_call_threshold_replaces_the_calibrated_ones_for_that_call_only(extractor):
    product = {"product_type": "dress", "title": "Red cotton dress"}
    calibrated = extractor(product, attributes=ATTRIBUTES)
    assert all(p.threshold_source == "default" for p in calibrated)
    strict = extractor(product, attributes=ATTRIBUTES, threshold=1.0)
    assert not any(p.accepted for p in strict)  # an untrained model is never certain
    per_attribute = extractor(product, attributes=ATTRIBUTES, threshold={"color": 0.0})
    assert [(p.accepted, p.threshold_source) for p in per_attribute] == [(True, "call"), (False, "default")]
    per_pair = extractor(product, attributes=ATTRIBUTES, threshold={("dress", "sleeve_length"): 0.0})
    assert [p.threshold_source for p in per_pair] == ["default", "call"]
    assert [p.threshold_source for p in extractor(product, attributes=ATTRIBUTES)] == ["default", "default"]


@pytest.mark.parametrize("threshold, named", [(1.5, "threshold must be"), ({"color": "high"}, "threshold['color']"),
                                              (True, "threshold must be"), ({3: 0.5}, "threshold key 3")])
def test_a_bad_call_threshold_is_refused_naming_it(extractor, threshold, named):
    with pytest.raises(ConfigError) as caught:
        extractor({"product_type": "dress", "title": "Red dress"}, attributes=ATTRIBUTES, threshold=threshold)
    assert named in str(caught.value)


def test_a_dict_without_a_product_type_gets_error_rows_naming_the_field(extractor):
    rows = extractor([{"title": "Red dress"}, {"product_type": "dress", "title": "Red dress"}], attributes=["color"])
    assert "product_type" in rows[0].error and rows[0].product_id == "record-0"
    assert rows[1].error is None


def test_the_http_api_takes_products_without_ids_and_a_threshold(extractor):
    with LiveServer(create_app(extractor, ServeSettings())) as server:
        single = httpx.post(server.url + "/v1/extract", timeout=60, json={
            "product": {"product_type": "dress", "title": "Red cotton dress"}, "attributes": ATTRIBUTES,
            "threshold": 0.0}).json()["predictions"]
        listed = httpx.post(server.url + "/v1/extract", timeout=60, json={
            "products": [{"product_type": "dress", "title": "Red cotton dress"}, {"id": "x", "product_type": "dress",
                                                                                 "title": "Blue dress"}],
            "attributes": ATTRIBUTES, "threshold": {"color": 0.0}}).json()["predictions"]
        refused = httpx.post(server.url + "/v1/extract", timeout=60, json={
            "product": {"product_type": "dress", "title": "Red dress"}, "threshold": 2})
    assert [(r["product_id"], r["accepted"], r["threshold_source"]) for r in single] == [
        ("record-0", True, "call"), ("record-0", True, "call")]
    expected = extractor([{"product_type": "dress", "title": "Red cotton dress"},
                          {"id": "x", "product_type": "dress", "title": "Blue dress"}],
                         attributes=ATTRIBUTES, threshold={"color": 0.0})
    assert [(r["product_id"], r["attribute"], r["value"], r["accepted"], r["threshold_source"]) for r in listed] == [
        (p.product_id, p.attribute, p.value, p.accepted, p.threshold_source) for p in expected]
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "threshold"]
