"""Extractor end to end: build from config, extract with real images, save/load, batch invariance."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from conftest import tiny_config
from mxt_sdk import Extractor, Prediction, Product
from mxt_sdk.errors import PluginNotInstalledError
from mxt_sdk.inference.engine import make_requests
from mxt_sdk.plugins import manager

ROOT = Path(__file__).resolve().parents[1]
ATTRIBUTES = ["color", "material", "neckline"]


@pytest.fixture(scope="module")
def tiny_cpu():
    torch.manual_seed(0)
    return Extractor.from_config(ROOT / "configs" / "tiny-cpu.yaml")


def _key(p: Prediction):
    return (p.product_id, p.attribute, p.value, p.raw_value)


def test_tiny_cpu_config_builds_offline_and_extracts_one_row_per_pair(tiny_cpu, products, image_dir):
    start = time.perf_counter()
    Extractor.from_config(ROOT / "configs" / "tiny-cpu.yaml")
    build_seconds = time.perf_counter() - start
    predictions = tiny_cpu.extract(products, attributes=ATTRIBUTES, image_root=image_dir)
    assert [(p.product_id, p.attribute) for p in predictions] == [
        (product.id, attribute) for product in products for attribute in ATTRIBUTES]
    assert all(p.error is None and 0.0 <= p.confidence <= 1.0 for p in predictions)
    by_product = {p.product_id: p.image_used for p in predictions}
    assert by_product == {"p1": True, "p2": True, "p3": False, "p4": True, "p5": True}
    assert build_seconds < 30, f"building tiny-cpu took {build_seconds:.1f}s"


def test_save_and_load_give_identical_predictions(tiny_cpu, products, image_dir, tmp_path):
    before = tiny_cpu.extract(products, attributes=ATTRIBUTES, image_root=image_dir)
    tiny_cpu.save_pretrained(tmp_path / "model")
    assert {"config.json", "model.safetensors", "tokenizer", ".complete"} <= {
        p.name for p in (tmp_path / "model").iterdir()}
    loaded = Extractor.from_pretrained(tmp_path / "model")
    after = loaded.extract(products, attributes=ATTRIBUTES, image_root=image_dir)
    assert before == after


def test_batch_size_does_not_change_greedy_outputs(products, image_dir):
    torch.manual_seed(1)
    extractor = Extractor.from_config(tiny_config(["mag", "xattn"]))
    one = extractor.extract(products, attributes=ATTRIBUTES, image_root=image_dir, batch_size=1)
    eight = extractor.extract(products, attributes=ATTRIBUTES, image_root=image_dir, batch_size=8)
    assert [_key(p) for p in one] == [_key(p) for p in eight]
    assert [p.confidence for p in one] == pytest.approx([p.confidence for p in eight], rel=1e-4, abs=1e-12)


@pytest.mark.parametrize("fusions", [["mag", "xattn"], ["concat", "xattn"]])
def test_encoding_prompts_in_groups_does_not_change_outputs(products, image_dir, fusions):
    # Groups of 3 length-sorted rows, each cut to its own longest prompt ("concat" puts an image position
    # in front of the text), against one encoder pass over all 15 rows.
    torch.manual_seed(3)
    extractor = Extractor.from_config(tiny_config(fusions))
    answers = {}
    for rows in (None, 3):
        engine = extractor.engine(batch_size=16, image_root=image_dir)
        engine.settings.encode_rows = rows
        answers[rows] = list(engine.run(make_requests(products, ATTRIBUTES, extractor.metadata)))
    assert [_key(p) for p in answers[3]] == [_key(p) for p in answers[None]]
    assert [p.confidence for p in answers[3]] == pytest.approx([p.confidence for p in answers[None]], rel=1e-4,
                                                               abs=1e-12)


def test_changing_the_image_changes_multimodal_but_not_text_only_outputs(image_dir):
    torch.manual_seed(2)
    red = Product(id="a", product_type="dress", title="Printed dress", image="red.jpg")
    blue = red.model_copy(update={"image": "blue.png"})
    for fusions, should_change in (([], False), (["mag", "xattn"], True)):
        extractor = Extractor.from_config(tiny_config(fusions))
        first, second = (extractor.extract([p], ["color"], image_root=image_dir)[0] for p in (red, blue))
        assert (first.confidence != second.confidence) is should_change


def test_bad_images_and_records_become_error_rows(tiny_cpu, image_dir):
    (image_dir / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    records = [
        {"id": "ok", "product_type": "mug", "title": "Mug", "image": "red.jpg"},
        {"id": "broken", "product_type": "mug", "title": "Mug", "image": "broken.jpg"},
        {"id": "missing", "product_type": "mug", "title": "Mug", "image": "nope.jpg"},
        {"id": "escape", "product_type": "mug", "title": "Mug", "image": "../../etc/passwd"},
        {"id": "no-title", "product_type": "mug"},
    ]
    rows = tiny_cpu.extract(records, ["color", "size"], image_root=image_dir)
    assert len(rows) == 10
    errors = {row.product_id: row.error for row in rows[::2]}
    assert errors["ok"] is None
    assert "record 1" in errors["broken"] and "'image'" in errors["broken"]
    assert "not found" in errors["missing"]
    assert "escapes the image root" in errors["escape"]
    assert "title" in errors["no-title"] and "record 4" in errors["no-title"]
    assert all(row.value is None for row in rows if row.error)

    lenient = tiny_cpu.extract(records[:2], ["color"], image_root=image_dir, on_image_error="text_only")
    assert lenient[1].error and lenient[1].raw_value is not None and not lenient[1].image_used


def test_attributes_default_to_none_needs_training_metadata(tiny_cpu, products):
    rows = tiny_cpu.extract(products[:2])
    assert len(rows) == 2 and all("no attributes are known" in row.error for row in rows)


def test_loading_a_model_whose_plugin_is_missing_names_it(tmp_path, monkeypatch):
    torch.manual_seed(3)
    Extractor.from_config(tiny_config(["mag"])).save_pretrained(tmp_path / "model")
    monkeypatch.setenv("MXT_DISABLE_PLUGINS", "fusions")
    manager.reset()
    with pytest.raises(PluginNotInstalledError, match="fusion 'mag' from plugin 'fusions'"):
        Extractor.from_pretrained(tmp_path / "model")


def test_unigram_tokenizer_is_trained_from_text_and_saved(tmp_path, products):
    config = tiny_config([])
    config["model"]["generator"] = {"name": "t5", "options": {
        "tokenizer": "unigram", "tokenizer_vocab_size": 400, "d_model": 32, "d_ff": 64,
        "num_layers": 1, "num_heads": 4}}
    extractor = Extractor.from_config(config)
    generator = extractor.model.generator
    assert generator.needs_tokenizer_training
    assert len(extractor.extract(products, ["color"])) == len(products)  # bytes stand in until trained
    generator.train_tokenizer(iter([p.text for p in products] * 20))
    assert not generator.needs_tokenizer_training and len(generator.tokenizer) <= 400
    before = extractor.extract(products, ["color"])
    extractor.save_pretrained(tmp_path / "model")
    loaded = Extractor.from_pretrained(tmp_path / "model")
    assert not loaded.model.generator.needs_tokenizer_training
    assert loaded.extract(products, ["color"]) == before


def test_a_tokenizer_trained_with_split_digits_spells_every_number_with_one_digit_pieces(tmp_path):
    config = tiny_config([])
    options = {"tokenizer": "unigram", "tokenizer_vocab_size": 400, "tokenizer_split_digits": False, "d_model": 32,
               "d_ff": 64, "num_layers": 1, "num_heads": 4}
    config["model"]["generator"] = {"name": "t5", "options": options}
    titles = [f"HP Xeon E{5300 + i % 40} server {i * 37 % 1000} GB part 43{i % 90:02d}52-B21" for i in range(300)]
    plain = Extractor.from_config(config)
    plain.model.generator.train_tokenizer(iter(titles))
    options["tokenizer_split_digits"] = True
    assert any(sum(c.isdigit() for c in piece) > 1 for piece in plain.model.generator.tokenizer.get_vocab())
    extractor = Extractor.from_config(config)
    extractor.model.generator.train_tokenizer(iter(titles))
    tokenizer = extractor.model.generator.tokenizer
    assert not any(sum(c.isdigit() for c in piece) > 1 for piece in tokenizer.get_vocab())
    code = tokenizer("997755-b21", add_special_tokens=False)["input_ids"]  # a code no title holds
    in_title = tokenizer("hp part 997755-b21 for dl360", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(code) == "997755-b21"
    assert any(in_title[i:i + len(code)] == code for i in range(len(in_title)))  # the answer is copyable
    extractor.save_pretrained(tmp_path / "model")
    loaded = Extractor.from_pretrained(tmp_path / "model").model.generator.tokenizer
    assert loaded("997755-b21", add_special_tokens=False)["input_ids"] == code
    config["model"]["generator"]["options"]["tokenizer"] = "byte"  # nothing trained: the option cannot apply
    with pytest.raises(Exception, match="tokenizer_split_digits applies to a tokenizer trained on the data"):
        Extractor.from_config(config)


def test_unigram_vocabulary_must_hold_the_byte_stand_in():
    from mxt_sdk.errors import ConfigError

    config = tiny_config([])
    config["model"]["generator"] = {"name": "t5", "options": {"tokenizer": "unigram", "tokenizer_vocab_size": 100}}
    with pytest.raises(ConfigError, match="tokenizer_vocab_size=100 is too small"):
        Extractor.from_config(config)


def test_resaving_removes_files_of_the_previous_model_and_keeps_other_entries(tmp_path, products):
    from mxt_sdk.data.metadata import CatalogMetadata

    torch.manual_seed(4)
    first = Extractor.from_config(tiny_config([]))
    first.metadata = CatalogMetadata(values={"mug\tcolor": {"red": 3}})
    first.save_pretrained(tmp_path / "model")
    (tmp_path / "model" / "train.log").write_text("kept")
    Extractor.from_config(tiny_config([])).save_pretrained(tmp_path / "model")
    assert not (tmp_path / "model" / "metadata.json").exists()
    assert (tmp_path / "model" / "train.log").read_text() == "kept"
    assert Extractor.from_pretrained(tmp_path / "model").metadata is None


def test_an_interrupted_save_is_refused_at_load(tmp_path):
    from mxt_sdk.errors import ConfigError

    Extractor.from_config(tiny_config([])).save_pretrained(tmp_path / "model")
    (tmp_path / "model" / ".complete").unlink()
    with pytest.raises(ConfigError, match="incomplete model folder"):
        Extractor.from_pretrained(tmp_path / "model")


def test_checkpoint_state_round_trips_without_pickle(tmp_path):
    from mxt_sdk.training.checkpoints import load_state_dict, save_state_dict

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    save_state_dict(tmp_path / "optimizer", optimizer.state_dict())
    restored = load_state_dict(tmp_path / "optimizer")
    original = optimizer.state_dict()
    assert restored["param_groups"] == original["param_groups"]
    for index, state in original["state"].items():
        assert all(torch.equal(state[k], restored["state"][index][k]) for k in state)
    assert {p.suffix for p in tmp_path.iterdir()} == {".json", ".safetensors"}


def test_a_trained_tokenizer_cannot_replace_a_pretrained_checkpoints_own():
    from mxt_sdk.errors import ConfigError

    config = tiny_config([])
    config["model"]["generator"] = {"name": "t5", "options": {"from_pretrained": "t5-small", "tokenizer": "unigram"}}
    with pytest.raises(ConfigError, match="checkpoint's own"):
        Extractor.from_config(config)
