"""An image encoder that trains its last blocks over a fixed, cached trunk (``train_last_blocks``)."""
from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch
import yaml

from conftest import TINY_T5
from test_reproducibility import ENV, model_files
from mxt_sdk import Extractor, Product
from mxt_sdk.config import ModelConfig, TrainingConfig
from mxt_sdk.errors import ConfigError
from mxt_sdk.experiments.synthetic import write_catalog
from mxt_sdk.images.batching import ImageLoader
from mxt_sdk.model.mxt import ImagePixels, MXTModel
from mxt_sdk.training.feature_cache import build_feature_cache, encoder_digest, encoders_frozen
from mxt_sdk.training.optimizer import training_optimizer

LITE0 = {"model_name": "tf_efficientnet_lite0", "image_size": 64, "packaged_weights": True}


def _model_config(**encoder) -> dict:
    options = {**LITE0, **encoder}
    return {"generator": TINY_T5, "global_encoder": {"name": "timm", "options": {**options, "pool": True}},
            "regional_encoder": {"name": "timm", "options": {**options, "pool": False, "grid": 2}},
            "fusions": [{"name": "mag"}, {"name": "xattn", "options": {"heads": 4}}]}


def _model(**encoder) -> MXTModel:
    return MXTModel(ModelConfig.model_validate(_model_config(**encoder))).eval()


def _tail_parameters(model: MXTModel) -> dict[str, torch.Tensor]:
    return {name: p for name, p in model.encoders.named_parameters() if p.requires_grad}


def test_trunk_then_tail_gives_the_whole_networks_features_and_only_the_tail_trains():
    frozen, tailed = _model(), _model(train_last_blocks=2)
    tailed.load_state_dict(frozen.state_dict())
    assert tailed.shared_backbone and tailed.image_features_fixed
    trained = _tail_parameters(tailed)
    # the last two blocks (of 16) and the head convolution with its norm; the stem stays fixed
    assert trained and all(name.startswith(("regional.net.blocks.5.", "regional.net.blocks.6.",
                                            "regional.net.conv_head.", "regional.net.bn2.")) for name in trained)
    images = ImagePixels({"regional": torch.randn(3, 3, 64, 64)}, torch.tensor([True, False, True]))
    with torch.no_grad():
        whole = frozen.encode_images(images).features
        fixed = tailed.fixed_features(images)
        finished = tailed.finish_features(fixed).features
    assert set(fixed.features) == {"regional_trunk"} and fixed.features["regional_trunk"].shape[1] == 192
    for kind in ("global", "regional"):
        assert torch.allclose(finished[kind], whole[kind], atol=1e-4)
    assert not finished["global"][1].any()  # no image, no features

    tailed.train()
    per_example = tailed.image_features(fixed, torch.tensor([0, 0, 2]))
    (per_example.features["global"].sum() + per_example.features["regional"].sum()).backward()
    assert all(p.grad is not None for p in trained.values())
    assert all(p.grad is None for p in tailed.encoders.parameters() if not p.requires_grad)


def test_the_cache_holds_the_trunk_and_its_key_ignores_the_tails_weights(image_dir, tmp_path):
    model = _model(train_last_blocks=1)
    assert encoders_frozen(model)
    loader = ImageLoader(model.preprocessing(), image_dir, 10_000_000)
    cache = build_feature_cache(model, ["red.jpg", "blue.png"], loader, tmp_path / "cache")
    assert cache.kinds == ["regional_trunk"]
    cached, _ = cache.load(["blue.png"])
    with torch.no_grad():
        live = model.encode_images(loader.load(["blue.png"])[0]).features["global"]
        from_cache = model.finish_features(cached).features["global"]
    assert torch.allclose(from_cache, live, rtol=2.0 ** -9, atol=1e-3)  # the trunk is stored as float16

    digest = encoder_digest(model)
    with torch.no_grad():
        for parameter in _tail_parameters(model).values():
            parameter.add_(0.5)  # what training does to the tail
    assert encoder_digest(model) == digest
    assert build_feature_cache(model, ["red.jpg", "blue.png"], loader, tmp_path / "cache").folder == cache.folder


def test_options_refuse_a_tail_that_cannot_be_cut():
    with pytest.raises(ConfigError, match="train_last_blocks trains the tail of a frozen network"):
        MXTModel(ModelConfig.model_validate(_model_config(packaged_weights=False, model_name="test_efficientnet",
                                                          train_last_blocks=1)))
    resnet = _model_config(train_last_blocks=1)
    for slot in ("global_encoder", "regional_encoder"):
        resnet[slot]["options"].update(model_name="test_resnet", packaged_weights=False, freeze=True)
    with pytest.raises(ConfigError, match="EfficientNet-family network.*'test_resnet' is a ResNet"):
        MXTModel(ModelConfig.model_validate(resnet))
    with pytest.raises(ConfigError, match="train_last_blocks: 16, but 'tf_efficientnet_lite0' has 16 blocks"):
        _model(train_last_blocks=16)


def test_image_weights_get_their_own_learning_rate_and_the_rest_keep_one_group():
    model = _model(train_last_blocks=1)
    tail = {id(p) for p in _tail_parameters(model).values()}
    one = training_optimizer(model, TrainingConfig(learning_rate=1e-3))
    assert len(one.param_groups) == 1
    two = training_optimizer(model, TrainingConfig(learning_rate=1e-3, image_learning_rate=1e-4))
    assert [group["lr"] for group in two.param_groups] == [1e-3, 1e-4]
    assert {id(p) for p in two.param_groups[1]["params"]} == tail
    assert sum(len(g["params"]) for g in two.param_groups) == len(one.param_groups[0]["params"])


@pytest.mark.slow
def test_training_moves_the_tail_keeps_the_trunk_and_the_saved_model_answers_the_same(tmp_path):
    catalog = write_catalog(tmp_path / "catalog", train_size=16, test_size=4, image_size=48)
    model = copy.deepcopy(_model_config(train_last_blocks=1, image_size=48))
    config = {"model": model, "training": {"learning_rate": 3e-3, "image_learning_rate": 1e-3, "batch_size": 8,
                                           "eval_every": 100, "seed": 3, "normalizers": ["text"],
                                           "image_prior": {"dims": 8}}}
    extractor = Extractor.from_config(config)
    before = {k: v.clone() for k, v in extractor.model.encoders.state_dict().items()}
    output = tmp_path / "model"
    extractor.fit(catalog["train"], output_dir=output, max_steps=3)
    assert (tmp_path / "model.run" / "cache" / "image-features").is_dir()  # trained from the cached trunk
    after = extractor.model.encoders.state_dict()
    tail = set(_tail_parameters(extractor.model))
    moved = {name for name in before if not torch.equal(before[name], after[name])}
    assert moved and moved <= tail
    assert extractor.image_prior is not None  # fitted on the trained tail's vectors

    loaded = Extractor.from_pretrained(output)
    assert all(torch.equal(after[name], value) for name, value in loaded.model.encoders.state_dict().items())
    products = [Product.model_validate_json(line) for line in catalog["test"].read_text().splitlines()]
    root = catalog["test"].parent
    first = extractor.extract(products, image_root=root)
    assert all(p.error is None for p in first)
    assert [(p.value, p.confidence) for p in first] == \
        [(p.value, p.confidence) for p in loaded.extract(products, image_root=root)]


@pytest.mark.slow
def test_a_tail_trained_in_two_fresh_processes_writes_the_same_files(tmp_path):
    catalog = write_catalog(tmp_path / "catalog", train_size=16, test_size=4, image_size=48)
    config = {"model": _model_config(train_last_blocks=1, image_size=48),
              "training": {"learning_rate": 3e-3, "image_learning_rate": 1e-3, "batch_size": 8, "seed": 5,
                           "normalizers": ["text"], "image_prior": {"dims": 8}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    hashes = []
    for run in ("a", "b"):
        done = subprocess.run([sys.executable, "-m", "mxt_sdk.cli", "train", "--config", str(tmp_path / "config.yaml"),
                               "--train", str(catalog["train"]), "--output", str(tmp_path / run), "--max-steps", "4"],
                              capture_output=True, text=True, timeout=300, env=ENV)
        assert done.returncode == 0, done.stderr[-3000:]
        hashes.append({**model_files(tmp_path / run),
                       "image_prior": (tmp_path / run / "image_prior.safetensors").read_bytes()})
    assert hashes[0] == hashes[1]
