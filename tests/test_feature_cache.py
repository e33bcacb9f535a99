"""Frozen image encoders: one backbone pass for both fusions, features cached once per image."""
from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch

from conftest import TINY_T5, tiny_config
from mxt_sdk import Extractor
from mxt_sdk.config import ModelConfig
from mxt_sdk.errors import ConfigError
from mxt_sdk.experiments.synthetic import write_catalog
from mxt_sdk.images.batching import ImageLoader
from mxt_sdk.model.mxt import ImagePixels, MXTModel
from mxt_sdk.training.feature_cache import FeatureCache, build_feature_cache, encoders_frozen

FP16_ROUNDING = 2.0 ** -10  # relative error of a float16 value, with a margin for the batches' fp32 rounding
LITE0 = {"model_name": "tf_efficientnet_lite0", "image_size": 64, "packaged_weights": True}


def _frozen_config() -> dict:
    config = copy.deepcopy(tiny_config(["mag", "xattn"]))  # conftest's dicts are shared
    for slot in ("global_encoder", "regional_encoder"):
        config["model"][slot]["options"]["freeze"] = True
    return config


def _frozen_tiny_model() -> MXTModel:
    return MXTModel(ModelConfig.model_validate(_frozen_config()["model"])).eval()


def _lite0_model(**regional) -> MXTModel:
    return MXTModel(ModelConfig.model_validate({
        "generator": TINY_T5, "global_encoder": {"name": "timm", "options": {**LITE0, "pool": True}},
        "regional_encoder": {"name": "timm", "options": {**LITE0, "pool": False, **regional}},
        "fusions": [{"name": "mag"}, {"name": "xattn", "options": {"heads": 4}}]})).eval()


def test_one_pass_gives_the_same_features_as_two_separate_encoders():
    shared, separate = _lite0_model(), _lite0_model(freeze=True)  # an option apart: two networks
    assert shared.shared_backbone and list(shared.encoders) == ["regional"]
    assert not separate.shared_backbone and set(separate.encoders) == {"global", "regional"}
    pixels = torch.randn(3, 3, 64, 64)
    has_image = torch.tensor([True, False, True])
    with torch.no_grad():
        one = shared.encode_images(ImagePixels({"regional": pixels}, has_image)).features
        two = separate.encode_images(ImagePixels({"global": pixels, "regional": pixels}, has_image)).features
    for kind in ("global", "regional"):
        assert one[kind].shape == two[kind].shape
        assert torch.allclose(one[kind], two[kind], atol=1e-5)
    assert not one["global"][1].any()  # the product without an image contributes zeros


def test_cache_gives_the_encoders_features_and_is_reused_until_an_image_changes(image_dir, tmp_path):
    model = _frozen_tiny_model()
    assert encoders_frozen(model)
    loader = ImageLoader(model.preprocessing(), image_dir, 10_000_000)
    (image_dir / "broken.jpg").write_bytes(b"not an image")
    references = ["red.jpg", "blue.png", "red.jpg", None, "broken.jpg", "green.png"]
    cache = build_feature_cache(model, references, loader, tmp_path / "cache", batch_size=2)
    asked = ["green.png", None, "broken.jpg", "red.jpg", "unknown.jpg"]
    cached, errors = cache.load(asked)
    with torch.no_grad():
        live = model.encode_images(loader.load(asked)[0])
    assert cached.has_image.tolist() == [True, False, False, True, False]
    for kind, values in live.features.items():  # stored as float16: within its rounding
        assert torch.allclose(cached.features[kind], values, rtol=FP16_ROUNDING, atol=1e-5)
    assert errors[0] is None and errors[1] is None
    assert "not a readable image" in errors[2]  # the decoding error of that file
    assert "not in the feature cache" in errors[4]

    again = build_feature_cache(model, references, loader, tmp_path / "cache")
    assert again.folder == cache.folder
    stat = (image_dir / "red.jpg").stat()
    os.utime(image_dir / "red.jpg", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    rebuilt = build_feature_cache(model, references, loader, tmp_path / "cache")
    assert rebuilt.folder != cache.folder and not cache.folder.exists()
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [rebuilt.folder.name]


def test_cache_refuses_trainable_encoders(image_dir, tmp_path):
    model = MXTModel(ModelConfig.model_validate(tiny_config(["mag"])["model"]))
    loader = ImageLoader(model.preprocessing(), image_dir, 10_000_000)
    with pytest.raises(ValueError, match="frozen"):
        build_feature_cache(model, ["red.jpg"], loader, tmp_path / "cache")


@pytest.mark.slow
def test_training_on_cached_features_equals_training_on_pixels_to_float16_rounding(tmp_path):
    catalog = write_catalog(tmp_path / "catalog", train_size=16, test_size=4, image_size=48)
    weights = {}
    for cached in (True, False):
        config = _frozen_config()
        config["training"] = {"learning_rate": 3e-3, "batch_size": 8, "eval_every": 100, "seed": 3,
                              "normalizers": ["text"], "cache_image_features": cached}
        extractor = Extractor.from_config(config)
        output = tmp_path / f"model-{cached}"
        extractor.fit(catalog["train"], output_dir=output, max_steps=4)
        assert (tmp_path / f"model-{cached}.run" / "cache" / "image-features").is_dir() == cached
        weights[cached] = {k: v.detach().clone() for k, v in extractor.model.state_dict().items()}
    # The cache stores float16: Adam's first steps move a weight whose gradient is near zero by up to its
    # learning rate on a tiny change, so a few weights differ; all the rest stay equal
    diffs = torch.cat([(value - weights[False][name]).abs().flatten() for name, value in weights[True].items()])
    assert float((diffs > 1e-5).float().mean()) < 1e-3 and float(diffs.max()) < 3e-3


def test_cache_copies_without_its_memory_maps(image_dir, tmp_path):
    model = _frozen_tiny_model()
    loader = ImageLoader(model.preprocessing(), image_dir, 10_000_000)
    cache = build_feature_cache(model, ["red.jpg"], loader, tmp_path / "cache")
    cache.load(["red.jpg"])
    duplicate = copy.copy(cache)  # goes through __getstate__, as a worker's copy does
    assert isinstance(duplicate, FeatureCache) and duplicate._arrays is None
    assert torch.equal(duplicate.load(["red.jpg"])[0].features["global"],
                       cache.load(["red.jpg"])[0].features["global"])


class _FailingLoader:
    """An image loader that raises (as a killed build stops) at its ``fail_at``-th batch."""

    def __init__(self, loader: ImageLoader, fail_at: int):
        self.loader, self.root, self.fail_at, self.batches = loader, loader.root, fail_at, 0

    def load(self, references):
        self.batches += 1
        if self.batches == self.fail_at:
            raise KeyboardInterrupt("killed")
        return self.loader.load(references)


def _folder_bytes(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_an_interrupted_build_resumes_from_its_chunks_and_equals_an_uninterrupted_one(image_dir, tmp_path):
    model = _frozen_tiny_model()
    loader = ImageLoader(model.preprocessing(), image_dir, 10_000_000)
    (image_dir / "broken.jpg").write_bytes(b"not an image")
    references = ["red.jpg", "blue.png", "broken.jpg", "green.png", None]
    whole = build_feature_cache(model, references, loader, tmp_path / "whole", batch_size=1, chunk_images=2)

    interrupted = _FailingLoader(loader, fail_at=4)  # in the second (last) chunk: the first is on disk
    with pytest.raises(KeyboardInterrupt):
        build_feature_cache(model, references, interrupted, tmp_path / "resumed", batch_size=1, chunk_images=2)
    staging = next((tmp_path / "resumed").iterdir())
    assert staging.name.startswith(".tmp-") and not (staging / "index.json").exists()  # never looks complete
    assert [p.name for p in (staging / "chunks").iterdir() if not p.name.startswith(".")] == ["000000"]

    counting = _FailingLoader(loader, fail_at=0)
    resumed = build_feature_cache(model, references, counting, tmp_path / "resumed", batch_size=1, chunk_images=2)
    assert counting.batches == 2  # the two images of the chunks not written yet: the first is not redone
    assert resumed.folder.name == whole.folder.name
    assert _folder_bytes(resumed.folder) == _folder_bytes(whole.folder)


def test_compact_cache_of_a_grid_3_map_takes_under_32_kb_per_image(image_dir, tmp_path):
    model = MXTModel(ModelConfig.model_validate({
        "generator": TINY_T5, "global_encoder": {"name": "timm", "options": {**LITE0, "image_size": 224, "pool": True}},
        "regional_encoder": {"name": "timm", "options": {**LITE0, "image_size": 224, "pool": False, "grid": 3}},
        "fusions": [{"name": "mag"}, {"name": "xattn", "options": {"heads": 4}}]})).eval()
    assert model.shared_backbone  # grid shapes what is made of the pass, not the network
    loader = ImageLoader(model.preprocessing(), image_dir, 10_000_000)
    cache = build_feature_cache(model, ["red.jpg", "blue.png"], loader, tmp_path / "cache")
    features, _ = cache.load(["red.jpg"])
    assert tuple(features.features["regional"].shape) == (1, 9, 1280)
    assert cache.bytes_per_image <= 32 * 1024
    with torch.no_grad():
        pixels = loader.load(["red.jpg"])[0]
        full = model.encoders["regional"].net.forward_features(pixels.pixels["regional"])
        live = model.encode_images(pixels).features["regional"]
    pooled = torch.nn.functional.adaptive_avg_pool2d(full, 3).flatten(2).transpose(1, 2)
    # what extraction sees is what training cached (up to the rounding of the folded batch norms)
    assert torch.allclose(live, pooled, atol=1e-4)


def test_grid_needs_a_map():
    config = ModelConfig.model_validate({"generator": TINY_T5, "fusions": [{"name": "mag"}], "global_encoder": {
        "name": "timm", "options": {**LITE0, "pool": True, "grid": 3}}})
    with pytest.raises(ConfigError, match="grid reduces the regional map: it needs pool: false"):
        MXTModel(config)


@pytest.mark.slow
def test_ray_data_actors_build_the_same_cache_training_reads(tmp_path):
    """training.image_cache_ray_actors: the chunks are encoded by Ray Data actors (a local Ray here) into the
    run's cache, under the same key and with the in-process build's features."""
    ray = pytest.importorskip("ray", reason="the optional 'ray' extra is not installed")
    catalog = write_catalog(tmp_path / "catalog", train_size=12, test_size=2, image_size=32)
    config = {"model": {"generator": TINY_T5, "max_answer_tokens": 6,
                        "global_encoder": {"name": "timm", "options": {**LITE0, "pool": True}},
                        "regional_encoder": {"name": "timm", "options": {**LITE0, "pool": False}},
                        "fusions": [{"name": "mag"}, {"name": "xattn", "options": {"heads": 4}}]},
              "training": {"batch_size": 4, "seed": 0}}  # packaged weights: every worker builds the same encoders
    here = Extractor.from_config(config)
    here.fit(catalog["train"], output_dir=tmp_path / "here", max_steps=1)
    config["training"]["image_cache_ray_actors"] = 2
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        Extractor.from_config(config).fit(catalog["train"], output_dir=tmp_path / "ray", max_steps=1)
    finally:
        ray.shutdown()
    built = [sorted((tmp_path / f"{name}.run" / "cache" / "image-features").glob("*/index.json"))
             for name in ("here", "ray")]
    assert len(built[0]) == len(built[1]) == 1 and built[0][0].parent.name == built[1][0].parent.name
    assert built[0][0].read_text() == built[1][0].read_text()  # the same references, kinds and errors
    for array in sorted(built[0][0].parent.glob("*.npy")):
        mine, theirs = np.load(array), np.load(built[1][0].parent / array.name)
        assert mine.dtype == theirs.dtype and mine.shape == theirs.shape, array.name
        # an actor's torch runs one thread, this process two: sums differ in the last bit of float16 at most
        np.testing.assert_allclose(theirs.astype(np.float32), mine.astype(np.float32), rtol=2e-3, atol=2e-3)
