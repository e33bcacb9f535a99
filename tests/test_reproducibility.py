"""Reproducible training: the same data, config, seed and steps give byte-identical model files in
fresh processes, and a run killed with SIGKILL and resumed by the same command ends identical too."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import tiny_config
from mxt_sdk.experiments.synthetic import write_catalog
from mxt_sdk.training.checkpoints import complete_checkpoints

# A trained Unigram tokenizer, dropout on (the RNG must be seeded and restored) and shuffled batches.
GENERATOR = {"tokenizer": "unigram", "tokenizer_vocab_size": 400, "d_model": 32, "d_ff": 64, "num_layers": 2,
             "num_heads": 4, "dropout_rate": 0.1}
TRAINING = {"learning_rate": 3e-3, "batch_size": 8, "eval_every": 5, "log_every": 1, "seed": 11,
            "keep_checkpoints": 1, "normalizers": ["text", "min_count"]}
STEPS = 30


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("repro")
    catalog = write_catalog(folder / "catalog", train_size=40, test_size=8, image_size=48)
    config = tiny_config(["mag", "xattn"])
    config["model"]["generator"]["options"] = GENERATOR
    config["model"]["fusions"][0]["options"] = {"dropout": 0.1}
    config["training"] = TRAINING
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return {"catalog": catalog, "config": path}


def _command(setup, output: Path) -> list[str]:
    return [sys.executable, "-m", "mxt_sdk.cli", "train", "--config", str(setup["config"]), "--train",
            str(setup["catalog"]["train"]), "--val", str(setup["catalog"]["test"]), "--output", str(output),
            "--max-steps", str(STEPS)]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _train(setup, output: Path) -> None:
    done = subprocess.run(_command(setup, output), capture_output=True, text=True, timeout=300, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]


def model_files(folder: Path) -> dict[str, str]:
    """sha256 of the weights and of every tokenizer file of a saved model folder."""
    files = [folder / "model.safetensors", *sorted((folder / "tokenizer").iterdir())]
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest() for path in files}


@pytest.mark.slow
def test_same_command_in_fresh_processes_writes_identical_files_and_resume_after_kill_too(setup, tmp_path):
    _train(setup, tmp_path / "a")
    _train(setup, tmp_path / "b")
    first = model_files(tmp_path / "a")
    assert "tokenizer/tokenizer.json" in first and first == model_files(tmp_path / "b")

    out, run = tmp_path / "killed", tmp_path / "killed.run"
    process = subprocess.Popen(_command(setup, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True, env=ENV)
    try:
        deadline = time.time() + 120
        while not complete_checkpoints(run) and time.time() < deadline and process.poll() is None:
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    checkpoints = complete_checkpoints(run)
    assert checkpoints and int(checkpoints[-1].name.split("-")[1]) < STEPS, "killed too late to test resuming"
    assert not (out / "model.safetensors").exists()
    resumed = subprocess.run(_command(setup, out), capture_output=True, text=True, timeout=300, env=ENV)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming from checkpoint" in resumed.stderr
    assert model_files(out) == first
