"""The mxt-cpu configuration end to end: packaged EfficientNet-Lite0 in both slots (one pass, frozen but for
its last block, the frozen part cached for training), the copy head, every extraction dtype, and a save/load round trip."""
from __future__ import annotations

import copy

import pytest

from mxt_sdk import Extractor
from mxt_sdk.config import load_config
from mxt_sdk.data.readers import read_products
from mxt_sdk.experiments.synthetic import write_catalog


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mxt-cpu")
    catalog = write_catalog(folder / "catalog", train_size=20, test_size=6, image_size=48)
    config = copy.deepcopy(load_config("mxt-cpu").model_dump())
    for slot in ("global_encoder", "regional_encoder"):
        config["model"][slot]["options"]["image_size"] = 64  # smaller than 224 to keep the test quick
    config["model"]["generator"]["options"].update(d_model=32, d_ff=64, num_layers=2, tokenizer_vocab_size=600)
    config["training"].update(batch_size=8, eval_every=100, normalizers=["text"])
    extractor = Extractor.from_config(config)
    assert extractor.model.shared_backbone and extractor.model.generator.copy_head is not None
    extractor.fit(catalog["train"], output_dir=folder / "model", max_steps=3)
    assert (folder / "model.run" / "cache" / "image-features").is_dir()
    return extractor, folder / "model", catalog


@pytest.mark.slow
def test_every_dtype_extracts_and_a_reloaded_model_answers_the_same(trained):
    extractor, model_dir, catalog = trained
    root = catalog["train"].parent
    test = list(read_products(catalog["test"]))
    fp32 = extractor.extract(test, ["color", "brand"], image_root=root)
    assert len(fp32) == 12 and all(p.error is None for p in fp32)
    for dtype in ("bf16", "int8"):
        rows = extractor.extract(test, ["color", "brand"], image_root=root, dtype=dtype)
        assert [(p.product_id, p.attribute) for p in rows] == [(p.product_id, p.attribute) for p in fp32]
        assert all(0.0 <= p.confidence <= 1.0 for p in rows)
    reloaded = Extractor.from_pretrained(model_dir)
    assert reloaded.model.shared_backbone and reloaded.model.generator.copy_head is not None
    again = reloaded.extract(test, ["color", "brand"], image_root=root)
    assert [(p.value, round(p.confidence, 5)) for p in again] == [(p.value, round(p.confidence, 5)) for p in fp32]


def test_the_demo_trains_the_shipped_mxt_demo_config_that_mxt_train_also_takes():
    from mxt_sdk.config import builtin_configs, load_config
    from mxt_sdk.experiments.demo import _demo_config

    assert "mxt-demo" in builtin_configs()
    shipped = load_config("mxt-demo").model_dump()
    demo = _demo_config("mxt", device=shipped["training"]["device"]).model_dump()
    assert demo == shipped  # the demo patches nothing in code
    cpu = load_config("mxt-cpu").model_dump()
    for slot in ("global_encoder", "regional_encoder"):  # the differences its comments give, and no other
        assert shipped["model"][slot]["options"].pop("image_size") == 128
        assert (shipped["model"][slot]["options"].pop("train_last_blocks", 0),
                cpu["model"][slot]["options"].pop("train_last_blocks")) == (0, 1)
    assert (shipped["training"].pop("image_learning_rate"), cpu["training"].pop("image_learning_rate")) == (None, 1e-4)
    assert (shipped["extraction"].pop("choose_among_known"), cpu["extraction"].pop("choose_among_known")) == (0, 50)
    assert (shipped["training"].pop("batch_size"), cpu["training"].pop("batch_size")) == (96, 192)
    assert (shipped["extraction"].pop("span_prior_share"), cpu["extraction"].pop("span_prior_share")) == (None, 0.5)
    assert shipped["training"].pop("span_prior") is None and cpu["training"].pop("span_prior") is not None
    assert shipped == cpu
