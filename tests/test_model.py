"""The assembled MXT model: ablation variants, image sensitivity, MAG equations, batch invariance."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from conftest import tiny_config
from mxt_sdk import Extractor, Product
from mxt_sdk.config import load_config
from mxt_sdk.errors import ConfigError
from mxt_sdk.images.io import Preprocessing, to_pixels
from mxt_sdk.model.mxt import ImagePixels, MXTModel
from mxt_sdk.plugins import manager

VARIANTS = {"text-only": [], "mag": ["mag"], "xattn": ["xattn"], "mag+xattn": ["mag", "xattn"],
            "concat+xattn": ["concat", "xattn"]}


def _batch(model, colour):
    """Two examples over one product image of the given colour, and their labels."""
    tokenizer = model.generator.tokenizer
    prompts = ["question: color context: dress | printed dress", "question: sleeve context: dress | dress"]
    encoded = tokenizer(prompts, padding=True, return_tensors="pt")
    labels = tokenizer(["red", "long"], padding=True, return_tensors="pt")["input_ids"]
    labels[labels == tokenizer.pad_token_id] = -100
    image = Image.new("RGB", (80, 60), colour)
    pixels = {kind: to_pixels(image, Preprocessing.model_validate(prep))[None]
              for kind, prep in model.preprocessing().items()}
    features = model.encode_images(ImagePixels(pixels, torch.tensor([True])))
    return encoded, labels, features.select(torch.tensor([0, 0]))


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_builds_trains_and_uses_the_image_only_when_it_should(variant):
    torch.manual_seed(0)
    model = MXTModel(load_config(tiny_config(VARIANTS[variant])).model)
    model.train()
    encoded, labels, features = _batch(model, (200, 20, 20))
    loss = model(encoded["input_ids"], encoded["attention_mask"], labels, features)
    assert torch.isfinite(loss)
    loss.backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sum(p.grad is not None for p in trainable) == len(trainable)

    model.eval()
    with torch.no_grad():
        red = model(encoded["input_ids"], encoded["attention_mask"], labels, _batch(model, (200, 20, 20))[2])
        blue = model(encoded["input_ids"], encoded["attention_mask"], labels, _batch(model, (20, 20, 200))[2])
    if variant == "text-only":
        assert not model.uses_images and torch.equal(red, blue)
    else:
        assert not torch.equal(red, blue)


def test_mag_matches_the_equations_term_by_term():
    torch.manual_seed(0)
    from mxt_sdk.plugins import manager

    beta = 0.7
    mag = manager.create("fusions", "mag", {"beta": beta, "dropout": 0.0}, text_dim=6, image_dim=4).eval()
    hidden = torch.randn(2, 3, 6)
    hidden[0, 2] = 0.0  # a zero embedding
    image = torch.randn(2, 4)
    with torch.no_grad():
        out = mag(hidden, torch.ones(2, 3), image, torch.tensor([True, True])).hidden
    mag.requires_grad_(False)

    W_g, b_g = mag.gate.weight, mag.gate.bias
    W_H, b_H = mag.displacement.weight, mag.displacement_bias
    gamma, shift, eps = mag.layer_norm.weight, mag.layer_norm.bias, mag.layer_norm.eps
    for b in range(2):
        V = image[b]
        for i in range(3):
            T = hidden[b, i]
            g = torch.relu(W_g @ torch.cat([T, V]) + b_g)
            H = g * (W_H @ V) + b_H
            h_norm = H.norm()
            a = 0.0 if h_norm == 0 else min(float(T.norm() / h_norm * beta), 1.0)
            z = T + a * H
            expected = (z - z.mean()) / torch.sqrt(z.var(unbiased=False) + eps) * gamma + shift
            assert torch.allclose(out[b, i], expected, atol=1e-5), (b, i)


def test_mag_guards_a_zero_displacement():
    from mxt_sdk.plugins import manager

    mag = manager.create("fusions", "mag", {"dropout": 0.0}, text_dim=4, image_dim=3).eval()
    with torch.no_grad():
        mag.displacement.weight.zero_()
        mag.displacement_bias.zero_()
    hidden = torch.randn(1, 2, 4)
    out = mag(hidden, torch.ones(1, 2), torch.randn(1, 3), torch.tensor([True])).hidden
    assert torch.isfinite(out).all()
    assert torch.allclose(out, mag.layer_norm(hidden))


def test_fusion_without_its_encoder_is_a_config_error():
    config = tiny_config(["mag"])
    del config["model"]["global_encoder"]
    with pytest.raises(ConfigError, match="global_encoder"):
        Extractor.from_config(config)


def test_encoder_without_a_fusion_is_a_config_error():
    config = tiny_config([])
    config["model"]["regional_encoder"] = tiny_config(["xattn"])["model"]["regional_encoder"]
    with pytest.raises(ConfigError, match="no fusion uses 'regional'"):
        Extractor.from_config(config)


def test_encoder_in_the_wrong_slot_is_a_config_error():
    config = tiny_config(["mag"])
    config["model"]["global_encoder"] = {"name": "xception", "options": {"image_size": 96}}
    with pytest.raises(ConfigError, match="pool"):
        Extractor.from_config(config)


def test_unknown_config_key_is_rejected(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  generator: t5\n  fusion: [mag]\n")
    with pytest.raises(ConfigError, match="fusion"):
        Extractor.from_config(path)


@pytest.mark.parametrize("fusion, image_shape", [("mag", (2, 5)), ("xattn", (2, 3, 5))])
def test_image_norm_makes_a_fusion_blind_to_the_feature_scale(fusion, image_shape):
    torch.manual_seed(0)
    extra = {"heads": 2} if fusion == "xattn" else {}
    layer = manager.create("fusions", fusion, {"dropout": 0.0, "image_norm": True, **extra}, text_dim=4,
                           image_dim=5).eval()
    hidden, mask = torch.randn(2, 3, 4), torch.ones(2, 3, dtype=torch.long)
    image, has_image = torch.rand(image_shape) * 3, torch.tensor([True, True])
    base = layer(hidden, mask, image, has_image).hidden
    assert torch.allclose(layer(hidden, mask, image * 40 + 0.0, has_image).hidden, base, atol=1e-4)
    plain = manager.create("fusions", fusion, {"dropout": 0.0, **extra}, text_dim=4, image_dim=5).eval()
    assert not torch.allclose(plain(hidden, mask, image * 40, has_image).hidden,
                              plain(hidden, mask, image, has_image).hidden, atol=1e-4)


def test_image_dropout_acts_in_training_only():
    torch.manual_seed(0)
    mag = manager.create("fusions", "mag", {"dropout": 0.0, "image_dropout": 0.5}, text_dim=4, image_dim=6)
    hidden, mask = torch.randn(2, 3, 4), torch.ones(2, 3, dtype=torch.long)
    image, has_image = torch.rand(2, 6) + 0.5, torch.tensor([True, True])
    mag.eval()
    first, second = (mag(hidden, mask, image, has_image).hidden for _ in range(2))
    assert torch.equal(first, second)
    mag.train()
    assert not torch.equal(mag(hidden, mask, image, has_image).hidden, first)
