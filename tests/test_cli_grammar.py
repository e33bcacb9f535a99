"""The shared grammar of the `mxt` command: --set / --seed, exit statuses, -v / -q, --version, and the
split of a training run into a shippable model folder and a run folder."""
from __future__ import annotations

import json
import logging

import pytest
import yaml
from click.testing import CliRunner

from conftest import tiny_config
from mxt_sdk import Extractor, __version__, progress
from mxt_sdk.cli import main
from mxt_sdk.cli.common import setup_logging
from mxt_sdk.config import load_config
from mxt_sdk.config_overrides import apply_overrides
from mxt_sdk.errors import ConfigError
from mxt_sdk.experiments.synthetic import write_catalog


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return write_catalog(tmp_path_factory.mktemp("catalog"), train_size=16, test_size=6, image_size=32)


@pytest.fixture(autouse=True)
def _restore_logging():
    logger = logging.getLogger("mxt_sdk")
    level, handlers = logger.level, list(logger.handlers)
    yield
    logger.setLevel(level)
    for handler in logger.handlers[:]:
        if handler not in handlers:
            logger.removeHandler(handler)
    progress.configure(None)


def test_overrides_set_fields_at_any_depth_with_yaml_values():
    config = apply_overrides("tiny-cpu", ["training.learning_rate=0.002", "training.seed=7",
                                          "model.generator.options.d_model=64", "extraction.canonicalizer=null",
                                          "training.normalizers=[text]"])
    assert config.training.learning_rate == 0.002 and config.training.seed == 7
    assert config.model.generator.options["d_model"] == 64 and config.extraction.canonicalizer is None
    assert [n.name for n in config.training.normalizers] == ["text"]


def test_overrides_reach_into_lists_of_sections_by_position():
    config = apply_overrides("mxt-cpu", ["model.fusions.1.options.heads=2", "model.fusions.0.name=concat"])
    assert config.model.fusions[1].options["heads"] == 2 and config.model.fusions[0].name == "concat"
    assert config.model.fusions[0].options == load_config("mxt-cpu").model.fusions[0].options


@pytest.mark.parametrize("text, expected", [
    ("training.learnin_rate=1", ["training has no field 'learnin_rate'", "Did you mean 'training.learning_rate'",
                                 "Valid fields of training: learning_rate, weight_decay"]),
    ("trainng.seed=1", ["the config has no field 'trainng'", "model, training, extraction"]),
    ("training.seed.x=1", ["training.seed is a value, not a section"]),
    ("training=1", ["not of the form section.field=value"]),
    ("training.batch_size=many", ["batch_size"]),
    ("model.fusions.mag.options.dropout=0", ["model.fusions is a list", "model.fusions.0.options.dropout"]),
    ("model.fusions.9.options.dropout=0", ["model.fusions has 2 item(s); there is no position 9"]),
])
def test_a_bad_override_is_a_clear_error(text, expected):
    with pytest.raises(ConfigError) as error:
        apply_overrides("tiny-cpu", [text])
    for part in expected:
        assert part in str(error.value)


def test_train_with_seed_and_set_records_them_and_ships_a_small_model_folder(catalog, tmp_path):
    """A built-in config by name; the model folder holds only the model and loads; the run folder the rest."""
    out = tmp_path / "model"
    result = CliRunner().invoke(main, ["train", "--config", "tiny-cpu", "--train", str(catalog["train"]),
                                       "--output", str(out), "--max-steps", "2", "--seed", "7",
                                       "--set", "training.learning_rate=0.002", "--set", "training.batch_size=8", "-q"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "config.json").read_text())["config"]["training"]
    assert (saved["seed"], saved["learning_rate"], saved["batch_size"], saved["max_steps"]) == (7, 0.002, 8, 2)
    assert json.loads(result.stdout[result.stdout.index("{"):])["run_dir"] == str((tmp_path / "model.run").resolve())
    run = tmp_path / "model.run"
    assert {"checkpoints", "cache", "metrics.jsonl", "train.log", "cleaning.json"} <= {p.name for p in run.iterdir()}
    assert not {"checkpoints", "cache", "metrics.jsonl", "train.log"} & {p.name for p in out.iterdir()}
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert size < 20 * 1024 * 1024, size
    assert Extractor.from_pretrained(out).extract([{"id": "x", "product_type": "dress", "title": "Red dress"}])


def test_a_bad_set_path_exits_2_listing_the_valid_fields(catalog, tmp_path):
    result = CliRunner().invoke(main, ["train", "--config", "tiny-cpu", "--train", str(catalog["train"]),
                                       "--output", str(tmp_path / "m"), "--set", "training.lr=0.1"])
    assert result.exit_code == 2
    assert "training has no field 'lr'" in result.output and "learning_rate" in result.output
    assert not (tmp_path / "m").exists()


def test_exit_statuses_and_version():
    runner = CliRunner()
    version = runner.invoke(main, ["--version"])
    assert version.exit_code == 0 and __version__ in version.output
    assert runner.invoke(main, ["train", "--no-such-option"]).exit_code == 2  # click's usage error
    missing = runner.invoke(main, ["ablate", "--config", "no-such-config", "--train", __file__, "--test", __file__])
    assert missing.exit_code == 2 and "Built-in configs" in missing.output  # an MXTError: the same status
    for command in ("train", "extract", "evaluate", "calibrate", "ablate", "pretrain", "demo", "plugins"):
        help_text = runner.invoke(main, [command, "--help"]).output
        assert "--verbose" in help_text and "--quiet" in help_text, command
    for command in ("train", "ablate", "pretrain"):
        assert "--set" in runner.invoke(main, [command, "--help"]).output, command
        assert "--seed" in runner.invoke(main, [command, "--help"]).output, command


def test_quiet_and_verbose_set_levels_and_bars(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    setup_logging(-1)
    assert logging.getLogger("mxt_sdk").getEffectiveLevel() == logging.WARNING and not progress.bars_enabled()
    assert logging.getLogger("transformers").getEffectiveLevel() == logging.ERROR
    setup_logging(1)
    assert logging.getLogger("mxt_sdk").getEffectiveLevel() == logging.DEBUG
    assert len([h for h in logging.getLogger("mxt_sdk").handlers if type(h) is logging.StreamHandler]) == 1


def test_importing_and_training_leave_the_logger_level_alone(catalog, tmp_path):
    logger = logging.getLogger("mxt_sdk")
    logger.setLevel(logging.NOTSET)
    import mxt_sdk.training.trainer  # noqa: F401

    assert logger.level == logging.NOTSET
    Extractor.from_config(tiny_config([])).fit(catalog["train"], output_dir=tmp_path / "m", max_steps=1,
                                                batch_size=8, normalizers=["text"])
    assert logger.level == logging.NOTSET
    assert "Model saved" in (tmp_path / "m.run" / "train.log").read_text()  # the file still gets INFO


def test_a_tiny_ablation_sets_its_base_config_and_exit_status(catalog, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config([])))
    result = CliRunner().invoke(main, ["ablate", "--config", str(config), "--train", str(catalog["train"]),
                                       "--test", str(catalog["test"]), "--variants", "text-only,no-mag",
                                       "--steps-per-variant", "1", "--output", str(tmp_path / "out"),
                                       "--set", "training.batch_size=4", "-q"])
    # no-mag needs a 'mag' fusion the text-only base lacks: that variant fails, the run goes on -> 4
    assert result.exit_code == 4, result.output
    assert "Finished with 1 of 2 variants failed" in result.output
    saved = json.loads((tmp_path / "out" / "text-only" / "model" / "config.json").read_text())
    assert saved["config"]["training"]["batch_size"] == 4


def test_an_old_folder_mixing_model_and_checkpoints_still_loads_and_resumes(catalog, tmp_path):
    old = tmp_path / "old-model"
    settings = {"batch_size": 8, "normalizers": ["text"]}
    Extractor.from_config(tiny_config([])).fit(catalog["train"], output_dir=old, run_dir=old, max_steps=2,
                                                **settings)  # the layout before run folders
    assert (old / "checkpoints").is_dir() and (old / "model.safetensors").is_file()
    assert Extractor.from_pretrained(old).extract([{"id": "x", "product_type": "mug", "title": "Blue mug"}])
    again = Extractor.from_config(tiny_config([])).fit(catalog["train"], output_dir=old, max_steps=3, **settings)
    assert again.resumed_from_step == 2 and again.steps == 3
    assert (tmp_path / "old-model.run" / "checkpoints").is_dir()
