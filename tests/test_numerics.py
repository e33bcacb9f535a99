"""Extraction dtypes: fp32 / bf16 / int8 run the same pipeline; bf16 and int8 run copies, never the trainable model."""
from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from conftest import tiny_config
from mxt_sdk import Extractor
from mxt_sdk.cli import main
from mxt_sdk.errors import ConfigError
from mxt_sdk.model.numerics import resolve_dtype

COLORS = ["red", "blue", "green", "black", "white", "pink"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny MXT that has learnt to copy the colour word of the title (clear margins, no argmax ties)."""
    folder = tmp_path_factory.mktemp("numerics")
    train = folder / "train.jsonl"
    rows = [{"id": f"t{i}", "product_type": "shirt", "title": f"{COLORS[i % 6]} shirt number {i}",
             "attributes": {"color": COLORS[i % 6]}} for i in range(96)]
    train.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    torch.manual_seed(0)
    config = tiny_config(["mag", "xattn"])
    config["training"] = {"learning_rate": 3e-3, "batch_size": 16, "warmup_ratio": 0.0, "seed": 0}  # init too
    extractor = Extractor.from_config(config)
    extractor.fit(train, output_dir=folder / "run", max_steps=100, eval_every=10**6, seed=0)
    return extractor


def test_dtype_names_resolve_per_device():
    assert resolve_dtype("auto", "cpu") == "fp32"
    assert resolve_dtype("auto", "cuda") == "bf16"
    assert resolve_dtype("int8", "cpu") == "int8"
    with pytest.raises(ConfigError, match="CPU only"):
        resolve_dtype("int8", "cuda")
    with pytest.raises(ConfigError, match="dtype must be one of"):
        resolve_dtype("fp16", "cpu")


def test_fast_dtypes_agree_with_fp32_on_a_trained_model(trained, products, image_dir):
    probe = [{"id": f"q{i}", "product_type": "shirt", "title": f"{c} shirt on sale", "image": "red.jpg"}
             for i, c in enumerate(COLORS)]
    answers = {}
    for dtype in ("fp32", "bf16", "int8"):
        predictions = trained.extract(probe, ["color"], dtype=dtype, image_root=image_dir)
        assert [p.error for p in predictions] == [None] * len(probe)
        assert all(0.0 <= p.confidence <= 1.0 for p in predictions)
        answers[dtype] = [p.value for p in predictions]
    assert sum(v == c for v, c in zip(answers["fp32"], COLORS)) >= 4, answers["fp32"]  # it did learn
    assert answers["int8"] == answers["fp32"]
    assert answers["bf16"] == answers["fp32"]


def test_int8_runs_a_quantized_copy_and_leaves_the_model_trainable(trained, products, image_dir):
    before = {name: p.detach().clone() for name, p in trained.model.named_parameters()}
    rows = trained.extract(products, ["color", "material"], dtype="int8", image_root=image_dir)
    assert len(rows) == 2 * len(products)
    quantized = trained._inference_model("int8")
    int8_linear = torch.ao.nn.quantized.dynamic.Linear
    assert sum(isinstance(m, int8_linear) for m in quantized.modules()) > 10
    assert not any(isinstance(m, int8_linear) for m in trained.model.modules())
    after = dict(trained.model.named_parameters())
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert quantized is not trained.model


def test_bf16_runs_a_copy_with_bf16_weights_and_leaves_the_model_in_fp32(trained, products, image_dir):
    rows = trained.extract(products, ["color"], dtype="bf16", image_root=image_dir)
    assert [r.error for r in rows] == [None] * len(products)
    copy = trained._inference_model("bf16")
    assert copy is not trained.model
    linears = [m for m in copy.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    assert linears and all(m.weight.dtype == torch.bfloat16 for m in linears)
    # T5 ties its output layer to the embedding: the copy's output layer is bf16, its embedding stays fp32
    generator = copy.generator.model
    assert generator.get_input_embeddings().weight.dtype == torch.float32
    assert generator.get_output_embeddings().weight.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 and p.requires_grad for p in trained.model.parameters())


def test_fit_drops_inference_copies_made_from_old_weights(tmp_path):
    extractor = Extractor.from_config(tiny_config([]))
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps({"id": f"m{i}", "product_type": "mug", "title": "red mug",
                                          "attributes": {"color": "red"}}) for i in range(8)), encoding="utf-8")
    extractor.extract([{"id": "x", "product_type": "mug", "title": "mug"}], ["color"], dtype="int8")
    old = extractor._inference_model("int8")
    extractor.fit(data, output_dir=tmp_path / "run", max_steps=1, eval_every=10**6)
    assert extractor._inference_model("int8") is not old


def test_cli_extract_accepts_a_dtype(trained, image_dir, tmp_path):
    trained.save_pretrained(tmp_path / "model")
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"id": "a", "product_type": "shirt", "title": "blue shirt", "image": "red.jpg"}),
                      encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(main, ["extract", "--model", str(tmp_path / "model"), "--input", str(source),
                                       "--output", str(out), "--images", str(image_dir), "--dtype", "int8"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["product_id"], r["attribute"], r["error"]) for r in rows] == [("a", "color", None)]
