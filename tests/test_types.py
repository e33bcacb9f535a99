import pytest

from mxt_sdk import Prediction, Product
from mxt_sdk.errors import RecordError
from mxt_sdk.types import product_from_record


def test_product_accepts_catalog_record_and_normalises_fields():
    product = product_from_record(
        {"id": 123, "product_type": " dress ", "title": "Red dress", "description": "",
         "bullets": ["cotton"], "attributes": {"color": "red", "size": 38, "lining": None}},
        "line 1 of x.jsonl",
    )
    assert product.id == "123"
    assert product.product_type == "dress"
    assert product.description is None
    assert product.attributes == {"color": "red", "size": "38", "lining": None}
    assert product.text == "Red dress\ncotton"


def test_missing_field_error_names_record_and_field():
    with pytest.raises(RecordError) as info:
        product_from_record({"id": "B01", "product_type": "dress"}, "line 7 of catalog.jsonl")
    message = str(info.value)
    assert "line 7 of catalog.jsonl" in message and "'B01'" in message
    assert info.value.field == "title" and "missing" in message


def test_unknown_field_lists_allowed_fields():
    with pytest.raises(RecordError) as info:
        product_from_record({"id": "1", "product_type": "t", "title": "x", "colour": "red"}, "record 0")
    assert "colour" in str(info.value) and "product_type" in str(info.value)


def test_several_bad_fields_are_all_reported():
    with pytest.raises(RecordError) as info:
        product_from_record({"id": "", "product_type": "t", "title": "  ", "bullets": "x"}, "record 3")
    message = str(info.value)
    assert "'id'" in message and "'title'" in message and "'bullets'" in message


def test_non_object_record_is_a_record_error():
    with pytest.raises(RecordError, match="record 9"):
        product_from_record(["not", "a", "dict"], "record 9")


def test_prediction_confidence_is_bounded():
    Prediction(product_id="1", attribute="color", value="red", confidence=1.0)
    with pytest.raises(ValueError):
        Prediction(product_id="1", attribute="color", confidence=1.5)
    with pytest.raises(ValueError):
        Prediction(product_id="1", attribute="color", colour="red")


def test_product_is_strict_about_extra_fields():
    with pytest.raises(ValueError):
        Product(id="1", product_type="t", title="x", price=3)


def test_a_config_field_is_checked_when_assigned_too():
    from pydantic import ValidationError

    from mxt_sdk.config import load_config

    config = load_config("mxt-cpu")
    with pytest.raises(ValidationError, match="choose_among_known"):
        config.extraction.choose_among_known = -5
    with pytest.raises(ValidationError, match="learning_rate"):
        config.training.learning_rate = "fast"
    config.extraction.choose_among_known = 10
    assert config.extraction.choose_among_known == 10
