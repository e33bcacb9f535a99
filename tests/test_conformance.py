"""Conformance: every registered encoder, fusion and generator is checked the same way, so a new
plugin is tested by being installed. Components are built with their class's ``example_options``."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_model, save_model

from mxt_sdk.images.io import Preprocessing, to_pixels
from mxt_sdk.plugins import manager


def _names(kind):
    return [info.name for info in manager.list_components(kind)]


def _build(kind, name, **build_args):
    cls = manager.get_component(kind, name).cls
    return cls, cls(cls.parse_options(cls.example_options), **build_args)


def _roundtrip_json(state):
    return json.loads(json.dumps(state))


def _assert_all_parameters_get_gradients(module):
    missing = [n for n, p in module.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient reached: {missing[:5]}"


# ----------------------------------------------------------------------------- image encoders
@pytest.mark.parametrize("name", _names("image_encoders"))
def test_image_encoder_conformance(name, tmp_path):
    torch.manual_seed(0)
    cls, encoder = _build("image_encoders", name)
    assert encoder.output in ("global", "regional")
    assert isinstance(encoder.out_dim, int) and encoder.out_dim > 0
    preprocessing = Preprocessing.model_validate(encoder.preprocessing())
    images = [Image.new("RGB", (120, 80), (200, 30, 30)), Image.new("RGB", (50, 90), (30, 30, 200))]
    pixels = torch.stack([to_pixels(image, preprocessing) for image in images])
    assert pixels.shape == (2, *preprocessing.input_size)

    encoder.train()
    features = encoder(pixels)
    expected_rank = 2 if encoder.output == "global" else 3
    assert features.dim() == expected_rank and features.shape[0] == 2 and features.shape[-1] == encoder.out_dim
    assert features.dtype == torch.float32 and torch.isfinite(features).all()
    features.square().mean().backward()
    if not encoder.options.freeze:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())

    encoder.eval()
    with torch.no_grad():
        before = encoder(pixels)
    save_model(encoder, str(tmp_path / "encoder.safetensors"))
    rebuilt = cls(encoder.options, saved=_roundtrip_json(encoder.export_state())).eval()
    load_model(rebuilt, str(tmp_path / "encoder.safetensors"))
    assert rebuilt.preprocessing() == _roundtrip_json(encoder.preprocessing())
    with torch.no_grad():
        assert torch.equal(rebuilt(pixels), before)


# ----------------------------------------------------------------------------- fusions
TEXT_DIM, IMAGE_DIM, TOKENS, REGIONS = 32, 24, 7, 5


def _fusion_inputs(image_input, seed):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(3, TOKENS, TEXT_DIM, generator=generator)
    mask = torch.ones(3, TOKENS, dtype=torch.long)
    mask[1, 5:] = 0
    shape = (3, IMAGE_DIM) if image_input == "global" else (3, REGIONS, IMAGE_DIM)
    image = torch.randn(*shape, generator=generator)
    has_image = torch.tensor([True, True, False])
    return hidden, mask, image, has_image


@pytest.mark.parametrize("name", _names("fusions"))
def test_fusion_conformance(name, tmp_path):
    torch.manual_seed(0)
    cls, fusion = _build("fusions", name, text_dim=TEXT_DIM, image_dim=IMAGE_DIM)
    assert fusion.stage in ("embeddings", "encoder_output")
    assert fusion.image_input in ("global", "regional")
    hidden, mask, image, has_image = _fusion_inputs(fusion.image_input, seed=1)
    hidden.requires_grad_(True)

    fusion.train()
    out = fusion(hidden, mask, image, has_image)
    assert out.hidden.shape[0] == 3 and out.hidden.shape[2] == TEXT_DIM
    assert out.hidden.shape[1] >= TOKENS and out.attention_mask.shape == out.hidden.shape[:2]
    assert out.hidden.dtype == hidden.dtype
    out.hidden.square().sum().backward()
    assert hidden.grad is not None and hidden.grad.abs().sum() > 0
    _assert_all_parameters_get_gradients(fusion)

    fusion.eval()
    with torch.no_grad():
        first = fusion(hidden, mask, image, has_image)
        other_image = _fusion_inputs(fusion.image_input, seed=2)[2]
        second = fusion(hidden, mask, other_image, has_image)
    visible = first.attention_mask.bool()
    changed = (first.hidden - second.hidden).abs().sum(-1) * visible
    assert changed[0].sum() > 0 and changed[1].sum() > 0, "the image must influence rows that have one"
    assert changed[2].sum() == 0, "rows without an image must not see the (zero) image features"

    save_model(fusion, str(tmp_path / "fusion.safetensors"))
    rebuilt = cls(fusion.options, text_dim=TEXT_DIM, image_dim=IMAGE_DIM).eval()
    load_model(rebuilt, str(tmp_path / "fusion.safetensors"))
    with torch.no_grad():
        assert torch.equal(rebuilt(hidden, mask, image, has_image).hidden, first.hidden)


# ----------------------------------------------------------------------------- generators
TEXTS = ["question: color context: dress | red cotton dress", "question: material context: mug | ceramic mug"]


@pytest.mark.parametrize("name", _names("generators"))
def test_generator_conformance(name, tmp_path):
    torch.manual_seed(0)
    cls, generator = _build("generators", name)
    if generator.needs_tokenizer_training:
        generator.train_tokenizer(iter(TEXTS * 10))
    tokenizer = generator.tokenizer
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    labels = tokenizer(["red", "ceramic"], padding=True, return_tensors="pt")["input_ids"]
    labels[labels == tokenizer.pad_token_id] = -100

    generator.train()
    embeddings = generator.embed(batch["input_ids"])
    assert embeddings.shape == (*batch["input_ids"].shape, generator.d_model)
    encoded = generator.encode(embeddings, batch["attention_mask"])
    assert encoded.shape == embeddings.shape
    loss = generator.loss(encoded, batch["attention_mask"], labels, input_ids=batch["input_ids"])
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in generator.parameters())

    generator.eval()
    with torch.no_grad():
        hidden = generator.encode(generator.embed(batch["input_ids"]), batch["attention_mask"])
        out = generator.greedy(hidden, batch["attention_mask"], max_new_tokens=5,
                                 input_ids=batch["input_ids"])
    assert out.token_ids.shape == out.token_logprobs.shape and out.token_ids.shape[0] == 2
    assert out.token_ids.shape[1] <= 5 and (out.token_logprobs <= 0).all()

    save_model(generator, str(tmp_path / "generator.safetensors"))
    generator.save_tokenizer(tmp_path / "tokenizer")
    rebuilt = cls(generator.options, saved=_roundtrip_json(generator.export_state())).eval()
    rebuilt.load_tokenizer(tmp_path / "tokenizer")
    load_model(rebuilt, str(tmp_path / "generator.safetensors"))
    assert rebuilt.tokenizer(TEXTS)["input_ids"] == tokenizer(TEXTS)["input_ids"]
    with torch.no_grad():
        hidden2 = rebuilt.encode(rebuilt.embed(batch["input_ids"]), batch["attention_mask"])
        again = rebuilt.greedy(hidden2, batch["attention_mask"], max_new_tokens=5,
                                input_ids=batch["input_ids"])
    assert torch.equal(again.token_ids, out.token_ids)
    assert torch.allclose(again.token_logprobs, out.token_logprobs)
