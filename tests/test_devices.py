"""Devices: ``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` resolved in one place, ``--device`` on every command
that runs the model. Runs on CPU; where CUDA must seem present, torch's own queries are patched."""
from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from conftest import tiny_config
from mxt_sdk import Extractor
from mxt_sdk.cli import main
from mxt_sdk.config import MXTConfig, load_config
from mxt_sdk.devices import check_device_name, loader_workers, mixed_precision_for, resolve_device
from mxt_sdk.errors import ConfigError

#: every sub-command that builds or loads a model and runs it
MODEL_COMMANDS = ("train", "evaluate", "calibrate", "extract", "serve", "demo", "ablate", "pretrain")


def _cuda(monkeypatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_auto_is_cuda_where_present_and_cpu_elsewhere(monkeypatch):
    _cuda(monkeypatch, 0)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    _cuda(monkeypatch, 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device(" CUDA ") == torch.device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")


def test_cuda_out_of_range_or_absent_is_a_clear_error(monkeypatch):
    _cuda(monkeypatch, 2)
    with pytest.raises(ConfigError, match=r"extraction.device: 'cuda:2' is out of range; this machine has 2 CUDA "
                                          r"devices \(cuda:0 to cuda:1\)"):
        resolve_device("cuda:2", "extraction.device")
    _cuda(monkeypatch, 0)
    for name in ("cuda", "cuda:0"):
        with pytest.raises(ConfigError, match="asks for CUDA, which this machine does not have"):
            resolve_device(name)


@pytest.mark.parametrize("name", ["gpu", "cuda:", "cuda:-1", "cuda:x", "mps", ""])
def test_names_of_no_device_are_refused(name):
    with pytest.raises(ConfigError, match="use auto, cpu, cuda or cuda:N"):
        check_device_name(name)


def test_configs_default_to_auto_and_check_the_form():
    config = MXTConfig.model_validate({"model": {"generator": "t5"}})
    assert (config.training.device, config.extraction.device) == ("auto", "auto")
    assert config.training.mixed_precision == "auto" and config.training.num_workers == "auto"
    for name in ("tiny-cpu", "mxt-cpu", "mxt-base"):
        shipped = load_config(name)
        assert shipped.extraction.device == "auto" and shipped.training.device == "auto", name
    with pytest.raises(ConfigError, match="training.device: 'cuda:one' is not a device"):
        load_config({"model": {"generator": "t5"}, "training": {"device": "cuda:one"}})


def test_training_precision_and_workers_never_change_cpu_runs(monkeypatch):
    cpu = torch.device("cpu")
    assert [mixed_precision_for(m, cpu) for m in ("auto", "bf16", "fp16", "no")] == ["no"] * 4
    assert loader_workers("auto", cpu, decodes_images=True) == 0
    assert loader_workers(3, cpu, decodes_images=True) == 3
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    cuda = torch.device("cuda")
    assert mixed_precision_for("auto", cuda) == "bf16" and mixed_precision_for("fp16", cuda) == "fp16"
    assert loader_workers("auto", cuda, decodes_images=False) == 1  # tokenizes the next batches
    assert 1 <= loader_workers("auto", cuda, decodes_images=True) <= 4


def test_every_model_command_takes_device():
    for name in MODEL_COMMANDS:
        options = {opt for param in main.commands[name].params for opt in param.opts}
        assert "--device" in options, name


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    Extractor.from_config(tiny_config([])).save_pretrained(folder)
    return folder


def test_extract_runs_on_the_device_given_and_refuses_a_missing_one(model_dir, tmp_path, monkeypatch):
    _cuda(monkeypatch, 0)
    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps({"id": "a", "product_type": "mug", "title": "Blue mug"}) + "\n")
    ok = CliRunner().invoke(main, ["extract", "--model", str(model_dir), "--input", str(data), "--output",
                                   str(tmp_path / "out.jsonl"), "--attributes", "color", "--device", "cpu"])
    assert ok.exit_code == 0, ok.output
    for command in (["extract", "--model", str(model_dir), "--input", str(data), "--output", str(tmp_path / "x")],
                    ["evaluate", "--model", str(model_dir), "--data", str(data), "--output", str(tmp_path / "r.json")],
                    ["calibrate", "--model", str(model_dir), "--data", str(data)]):
        bad = CliRunner().invoke(main, [*command, "--device", "cuda:1"])
        assert bad.exit_code == 2, bad.output
        assert "Invalid value for '--device'" in bad.output and "does not have" in bad.output
    assert not (tmp_path / "x").exists()


def test_from_pretrained_places_the_model_on_the_resolved_device(model_dir):
    assert Extractor.from_pretrained(model_dir, device="auto").device == resolve_device("auto")
    assert Extractor.from_pretrained(model_dir, device="cpu").device == torch.device("cpu")
