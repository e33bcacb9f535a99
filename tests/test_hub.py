"""Models by Hugging Face Hub ID, from a Hub cache in the real layout (blobs, snapshots, refs; no
network), the checksums checked after a download, and the model card of a saved folder."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from conftest import tiny_config
from mxt_sdk import Extractor
from mxt_sdk.cli import main
from mxt_sdk.errors import ConfigError
from mxt_sdk.experiments.synthetic import write_catalog
from mxt_sdk.model.hub import looks_like_hub_id, resolve_model

REPO = "acme/tiny-mxt"
ATTRIBUTES = ["color", "sleeve_length"]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return write_catalog(tmp_path_factory.mktemp("catalog"), train_size=24, test_size=8, image_size=48)


@pytest.fixture(scope="module")
def trained(catalog, tmp_path_factory):
    """A text-only tiny model trained 4 steps by ``fit`` (so its card has training facts)."""
    folder = tmp_path_factory.mktemp("trained") / "model"
    config = tiny_config([])
    config["training"] = {"learning_rate": 3e-3, "batch_size": 8, "eval_every": 2, "seed": 7}
    extractor = Extractor.from_config(config)
    extractor.fit(catalog["train"], catalog["test"], output_dir=folder, max_steps=4)
    return folder


def put_in_hub_cache(folder: Path, cache: Path, repo_id: str, commit: str, refs: tuple[str, ...] = ("main",)) -> Path:
    """Lay ``folder`` out as ``huggingface_hub`` caches a downloaded snapshot: content-addressed blobs,
    a snapshot folder of relative symlinks to them, and refs naming the commit. Returns the snapshot."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    for ref in refs:
        (repo / "refs" / ref).write_text(commit)
    return snapshot


def _answers(extractor: Extractor, products) -> list[tuple]:
    return [(p.product_id, p.attribute, p.value, round(p.confidence, 6))
            for p in extractor.extract(products, ATTRIBUTES)]


def test_a_model_in_a_fresh_hub_cache_loads_by_its_id_and_predicts_as_the_local_folder(trained, catalog, tmp_path):
    cache = tmp_path / "hub"
    put_in_hub_cache(trained, cache, REPO, "a" * 40)
    local = Extractor.from_pretrained(trained)
    from_hub = Extractor.from_pretrained(REPO, cache_dir=cache, local_files_only=True)
    assert from_hub.source.repo_id == REPO and from_hub.source.commit == "a" * 40
    assert local.source.repo_id is None and local.source.folder == Path(trained)
    text_products = [{"id": f"t{i}", "product_type": "dress", "title": title}
                     for i, title in enumerate(["Red cotton dress", "Blue sleeveless maxi dress"])]
    assert _answers(from_hub, text_products) == _answers(local, text_products)
    for name, tensor in local.model.state_dict().items():
        assert torch.equal(tensor, from_hub.model.state_dict()[name]), name


def test_a_revision_selects_its_own_snapshot(trained, tmp_path):
    cache = tmp_path / "hub"
    put_in_hub_cache(trained, cache, REPO, "b" * 40, refs=("v1",))
    assert Extractor.from_pretrained(REPO, revision="v1", cache_dir=cache).source.commit == "b" * 40
    with pytest.raises(ConfigError, match="could not be fetched"):
        Extractor.from_pretrained(REPO, cache_dir=cache, local_files_only=True)  # no refs/main


def test_an_id_missing_from_the_cache_offline_fails_with_one_clear_line(tmp_path):
    with pytest.raises(ConfigError) as caught:
        Extractor.from_pretrained("acme/not-cached", cache_dir=tmp_path / "empty")
    message = str(caught.value)
    assert "'acme/not-cached'" in message and "could not be fetched" in message and "offline" in message
    assert "\n" not in message


def test_the_cli_names_a_missing_hub_model_in_one_line(tmp_path):
    result = CliRunner().invoke(main, ["extract", "--model", "acme/not-cached-anywhere", "--input",
                                       str(_write_products(tmp_path)), "--output", str(tmp_path / "out.jsonl")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "acme/not-cached-anywhere" in lines[0] and "could not be fetched" in lines[0]


def _write_products(folder: Path) -> Path:
    path = folder / "products.jsonl"
    path.write_text("".join(json.dumps({"id": f"q{i}", "product_type": "dress", "title": t}) + "\n"
                            for i, t in enumerate(["Red cotton dress", "Green wrap dress with long sleeves"])))
    return path


@pytest.mark.slow
def test_mxt_extract_by_hub_id_writes_the_same_rows_as_the_local_folder(trained, tmp_path):
    cache = tmp_path / "hub"
    put_in_hub_cache(trained, cache, REPO, "c" * 40)
    products = _write_products(tmp_path)
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    outputs = {}
    for name, model in (("hub", REPO), ("local", str(trained))):
        outputs[name] = tmp_path / f"{name}.jsonl"
        subprocess.run([sys.executable, "-m", "mxt_sdk.cli", "extract", "-q", "--model", model, "--input",
                        str(products), "--output", str(outputs[name]), "--attributes", ",".join(ATTRIBUTES)],
                       check=True, env=env, timeout=300)
    hub_rows = outputs["hub"].read_text().splitlines()
    assert len(hub_rows) == 4 and hub_rows == outputs["local"].read_text().splitlines()


def test_a_damaged_or_added_file_in_the_cache_is_refused_by_name(trained, tmp_path):
    snapshot = put_in_hub_cache(trained, tmp_path / "hub", REPO, "d" * 40)
    weights = snapshot / "model.safetensors"
    blob = weights.resolve()
    blob.write_bytes(blob.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ConfigError, match=r"'model.safetensors' has SHA-256 .* the download is damaged"):
        Extractor.from_pretrained(REPO, cache_dir=tmp_path / "hub")

    snapshot = put_in_hub_cache(trained, tmp_path / "hub2", REPO, "e" * 40)
    (snapshot / "tokenizer" / "extra.pkl").write_bytes(b"not listed")
    with pytest.raises(ConfigError, match=r"'tokenizer/extra.pkl' is not listed in checksums.json"):
        Extractor.from_pretrained(REPO, cache_dir=tmp_path / "hub2")


def test_local_paths_and_hub_ids_are_told_apart(trained, tmp_path):
    assert resolve_model(trained).folder == Path(trained)
    assert looks_like_hub_id("acme/tiny-mxt") and not looks_like_hub_id("./acme/tiny")
    assert not looks_like_hub_id("a/b/c") and not looks_like_hub_id("tiny")
    with pytest.raises(ConfigError, match="No model folder 'tiny'"):
        resolve_model("tiny")
    with pytest.raises(ConfigError, match="revision='v1' applies to Hub IDs"):
        resolve_model(trained, revision="v1")


def _front_matter(readme: str) -> dict:
    assert readme.startswith("---\n")
    return yaml.safe_load(readme.split("---\n", 2)[1])


def test_a_trained_model_folder_has_a_model_card_with_config_steps_seed_and_data(trained, catalog):
    readme = (trained / "README.md").read_text(encoding="utf-8")
    meta = _front_matter(readme)
    assert meta["library_name"] == "mxt-sdk" and "attribute-value-extraction" in meta["tags"]
    assert catalog["train"].name in meta["datasets"] and "f1" in meta["metrics"]
    facts = json.loads((trained / "card.json").read_text())["training"]
    assert facts["steps"] == 4 and facts["seed"] == 7 and facts["train"]["name"] == catalog["train"].name
    assert facts["train"]["fingerprint"].startswith("sha256:") and facts["data_fingerprint"]
    assert "- steps: 4" in readme and "- seed: 7" in readme and facts["data_fingerprint"] in readme
    assert "generator: `t5`" in readme and "| dress |" in readme
    assert "Not measured yet" in readme


def test_mxt_evaluate_and_calibrate_write_their_figures_into_the_card(trained, catalog, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(trained, folder)
    weights_before = (folder / "model.safetensors").read_bytes()
    runner = CliRunner()
    result = runner.invoke(main, ["evaluate", "--model", str(folder), "--data", str(catalog["test"]),
                                  "--output", str(tmp_path / "eval" / "report.json")])
    assert result.exit_code in (0, 4), result.output
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    card = json.loads((folder / "card.json").read_text())
    assert card["evaluation"]["figures"]["micro_f1"] == pytest.approx(report["micro"]["f1"])
    assert card["evaluation"]["data"]["name"] == catalog["test"].name and card["training"]["steps"] == 4
    readme = (folder / "README.md").read_text(encoding="utf-8")
    index = _front_matter(readme)["model-index"][0]["results"][0]
    assert index["dataset"]["name"] == catalog["test"].name
    assert {m["name"] for m in index["metrics"]} >= {"micro F1", "micro precision"}
    assert (folder / "model.safetensors").read_bytes() == weights_before  # the card alone was rewritten
    Extractor.from_pretrained(folder)  # still a complete, loadable folder

    result = runner.invoke(main, ["calibrate", "--model", str(folder), "--data", str(catalog["test"]),
                                  "--min-support", "1"])
    assert result.exit_code == 0, result.output
    card = json.loads((folder / "card.json").read_text())
    assert card["calibration"]["figures"]["pairs"] >= 1 and card["evaluation"] is not None
    assert "## Calibration" in (folder / "README.md").read_text(encoding="utf-8")


def test_calibrating_a_hub_model_needs_an_output_folder(trained, catalog, tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    put_in_hub_cache(trained, cache, REPO, "f" * 40)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    runner = CliRunner()
    result = runner.invoke(main, ["calibrate", "--model", REPO, "--data", str(catalog["test"])])
    assert result.exit_code == 2 and "pass --output FOLDER" in result.output
    result = runner.invoke(main, ["calibrate", "--model", REPO, "--data", str(catalog["test"]), "--min-support", "1",
                                  "--output", str(tmp_path / "calibrated")])
    assert result.exit_code == 0, result.output
    assert Extractor.from_pretrained(tmp_path / "calibrated").card.calibration is not None


def test_push_to_hub_refuses_a_bad_repo_id_before_any_network_call():
    extractor = Extractor.from_config(tiny_config([]))
    with pytest.raises(ConfigError, match="not a Hub ID"):
        extractor.push_to_hub("not a repo id")
