"""The tutorial's plugin package, installed the way a user installs a third-party plugin.

``examples/mxt-example-encoder`` is copied to a temporary folder (so the build leaves nothing in the
repository), pip-installed with ``--target`` into another temporary folder, and used from
subprocesses that put that folder on ``PYTHONPATH``: its ``.dist-info`` makes the ``mxt_sdk`` entry
point visible to ``importlib.metadata``. The running environment is never modified, so the tests
can run twice, or side by side, and leave nothing behind.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # pip-installs a package and runs several subprocesses

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "mxt-example-encoder"
PLUGIN, ENCODER, DISTRIBUTION = "example_encoder", "tiny_cnn", "mxt-example-encoder"


def _installed_distributions() -> set[str]:
    return {dist.metadata["Name"] for dist in importlib.metadata.distributions()}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A folder holding the installed example package (module + dist-info)."""
    before = _installed_distributions()
    work = tmp_path_factory.mktemp("example-plugin")
    source, target = work / "source", work / "site"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__"))
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1", "PIP_NO_INPUT": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-cache-dir",
         "--target", str(target), str(source)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, f"pip install failed:\n{result.stdout}\n{result.stderr}"
    assert list(target.glob("mxt_example_encoder-*.dist-info/entry_points.txt"))
    yield target
    shutil.rmtree(work, ignore_errors=True)
    assert _installed_distributions() == before, "the test environment's packages changed"


def _env(site: Path, disable: str | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "MXT_DISABLE_PLUGINS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if disable is not None:
        env["MXT_DISABLE_PLUGINS"] = disable
    return env


def _mxt_command() -> list[str]:
    script = Path(sys.executable).with_name("mxt")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from mxt_sdk.cli import main; main(prog_name='mxt')"]


EXTRACTION_SCRIPT = textwrap.dedent('''
    import json, sys
    from pathlib import Path

    import torch
    from PIL import Image

    from mxt_sdk import Extractor, Product
    from mxt_sdk.plugins import manager

    work = Path(sys.argv[1])
    torch.manual_seed(0)
    Image.new("RGB", (80, 60), (200, 30, 30)).save(work / "red.png")
    Image.new("RGB", (60, 90), (20, 40, 220)).save(work / "blue.png")
    info = manager.get_component("image_encoders", "tiny_cnn")
    generator = {"name": "t5", "options": {"tokenizer": "byte", "d_model": 32, "d_ff": 64,
                                           "num_layers": 2, "num_heads": 2}}
    products = [
        Product(id="p1", product_type="dress", title="Red summer dress", image="red.png"),
        Product(id="p2", product_type="dress", title="Blue summer dress"),
        Product(id="p3", product_type="dress", title="Red summer dress", image="blue.png"),
    ]
    report = {"plugin": info.plugin, "module_file": sys.modules[info.cls.__module__].__file__, "models": {}}
    configs = {
        "global": {"generator": generator, "global_encoder": {"name": "tiny_cnn",
                   "options": {"output": "global", "out_dim": 32}}, "fusions": ["mag"]},
        "regional": {"generator": generator, "regional_encoder": {"name": "tiny-cnn",
                     "options": {"output": "regional", "out_dim": 16}},
                     "fusions": [{"name": "xattn", "options": {"heads": 2}}]},
    }
    for slot, model in configs.items():
        config = {"model": {**model, "max_answer_tokens": 6}, "extraction": {"image_root": str(work)}}
        extractor = Extractor.from_config(config)
        predictions = extractor.extract(products, attributes=["color"])
        folder = work / f"model-{slot}"
        extractor.save_pretrained(folder)
        saved = json.loads((folder / "config.json").read_text())
        reloaded = Extractor.from_pretrained(folder).extract(products, attributes=["color"])
        report["models"][slot] = {
            "predictions": [p.model_dump() for p in predictions],
            "reloaded": [p.model_dump() for p in reloaded],
            "components": saved["components"],
            "states": saved["component_states"],
            "preprocessing": extractor.model.preprocessing(),
        }
    print(json.dumps(report))
''')


def _start(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _finish(process: subprocess.Popen) -> str:
    try:
        stdout, stderr = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    assert process.returncode == 0, f"{process.args} failed:\n{stderr}"
    return stdout


@pytest.fixture(scope="module")
def runs(site, tmp_path_factory) -> dict[str, object]:
    """Every subprocess this module needs, started together (each spends seconds importing torch)."""
    work = tmp_path_factory.mktemp("example-extraction")
    script = work / "extract.py"
    script.write_text(EXTRACTION_SCRIPT, encoding="utf-8")
    processes = {
        "listing": _start([*_mxt_command(), "plugins", "--json"], _env(site)),
        "listing_disabled": _start([*_mxt_command(), "plugins", "--json"], _env(site, disable=PLUGIN)),
        "extraction": _start([sys.executable, str(script), str(work)], _env(site)),
    }
    try:
        outputs = {name: _finish(process) for name, process in processes.items()}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.communicate()
    yield {
        "listing": json.loads(outputs["listing"]),
        "listing_disabled": json.loads(outputs["listing_disabled"]),
        "extraction": json.loads(outputs["extraction"].strip().splitlines()[-1]),
    }
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def extraction(runs):
    return runs["extraction"]


def test_mxt_plugins_lists_the_installed_encoder(runs):
    entries = {item["name"]: item for item in runs["listing"]["image_encoders"]}
    assert entries[ENCODER]["plugin"] == PLUGIN
    assert entries[ENCODER]["aliases"] == ["tiny-cnn"]
    assert entries[ENCODER]["class"] == "mxt_example_encoder.encoder.TinyCNNEncoder"
    assert entries["timm"]["plugin"] == "timm"  # the built-ins are still there


def test_disabling_the_plugin_removes_only_its_components(runs):
    names = {item["name"] for item in runs["listing_disabled"]["image_encoders"]}
    assert ENCODER not in names
    assert {"timm", "resnet152", "xception"} <= names


def test_the_installed_copy_is_the_one_used(extraction, site):
    assert extraction["plugin"] == PLUGIN
    assert Path(extraction["module_file"]).resolve().is_relative_to(site.resolve())


@pytest.mark.parametrize("slot", ["global", "regional"])
def test_a_model_with_the_encoder_builds_and_extracts(extraction, slot):
    model = extraction["models"][slot]
    predictions = {p["product_id"]: p for p in model["predictions"]}
    assert list(predictions) == ["p1", "p2", "p3"]
    assert all(p["error"] is None and p["attribute"] == "color" for p in predictions.values())
    assert all(0.0 <= p["confidence"] <= 1.0 for p in predictions.values())
    assert predictions["p1"]["image_used"] and predictions["p3"]["image_used"]
    assert not predictions["p2"]["image_used"]
    # p1 and p3 differ only in their photo: the encoder's features reach the answer
    assert predictions["p1"]["confidence"] != predictions["p3"]["confidence"]
    kind = "global" if slot == "global" else "regional"
    assert model["preprocessing"][kind]["input_size"] == [3, 64, 64]


@pytest.mark.parametrize("slot", ["global", "regional"])
def test_the_saved_model_records_the_plugin_and_reloads_identically(extraction, slot):
    model = extraction["models"][slot]
    encoders = [c for c in model["components"] if c["kind"] == "image_encoders"]
    assert encoders == [{"kind": "image_encoders", "name": ENCODER, "plugin": PLUGIN,
                         "distribution": DISTRIBUTION, "version": "0.1.0"}]
    assert model["states"][f"{slot}_encoder"]["preprocessing"] == model["preprocessing"][slot]
    for before, after in zip(model["predictions"], model["reloaded"], strict=True):
        assert after["raw_value"] == before["raw_value"]
        assert after["confidence"] == pytest.approx(before["confidence"], rel=1e-5, abs=1e-12)
