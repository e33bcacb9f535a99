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


def test_a_retired_setting_in_a_saved_config_loads_with_a_warning_where_it_asked_for_something(caplog):
    from mxt_sdk.config import load_config

    saved = load_config("mxt-cpu").model_dump(mode="json")
    saved["training"]["text_free_copies"] = False  # what every config saved before the removal carries
    saved["training"]["image_prior"]["share"] = "pair"
    with caplog.at_level("WARNING", logger="mxt_sdk.config"):
        assert load_config(saved).model_dump(mode="json") == load_config("mxt-cpu").model_dump(mode="json")
    assert not caplog.records  # the removed setting's value is what the SDK does now: nothing to say
    saved["training"]["text_free_copies"] = True
    saved["training"]["image_prior"]["share"] = "attribute"
    with caplog.at_level("WARNING", logger="mxt_sdk.config"):
        config = load_config(saved)
    assert not hasattr(config.training, "text_free_copies") and not hasattr(config.training.image_prior, "share")
    warned = " ".join(record.getMessage() for record in caplog.records)
    assert "text_free_copies = True is no longer a setting" in warned and "share = 'attribute'" in warned
    saved["training"]["text_free_copie"] = True  # a typo is still an error
    with pytest.raises(Exception, match="text_free_copie"):
        load_config(saved)
