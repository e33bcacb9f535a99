"""The ablation runner: variant configs, a tiny end-to-end run whose table matches the reports, failures
recorded without losing the other variants, one model per product type, and `mxt ablate`."""
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from conftest import tiny_config
from mxt_sdk.cli import main
from mxt_sdk.config import load_config
from mxt_sdk.errors import ConfigError, UnknownComponentError
from mxt_sdk.experiments.ablation import VARIANTS, AblationData, Variant, run_ablation, variant_config
from mxt_sdk.experiments.ablation_table import TIME_HEADING, TOP_K
from mxt_sdk.experiments.synthetic import write_catalog
from mxt_sdk.model.mxt import MXTModel
from mxt_sdk.plugins import manager

BASE = tiny_config(["mag", "xattn"])
BASELINES = ("span", "classify")


def _fusions(config) -> list[str]:
    return [f.name for f in config.model.fusions]


# --------------------------------------------------------------------------- variant configs
def test_no_mag_replaces_mag_by_concat_and_keeps_the_rest():
    config = variant_config("no-mag", BASE)
    assert _fusions(config) == ["concat", "xattn"]
    assert config.model.global_encoder is not None and config.model.regional_encoder is not None
    assert MXTModel(config.model).uses_images


def test_no_xattn_drops_cross_attention_and_the_regional_encoder():
    config = variant_config("no-xattn", BASE)
    assert _fusions(config) == ["mag"] and config.model.regional_encoder is None
    assert set(MXTModel(config.model).encoders) == {"global"}


def test_text_only_builds_a_model_without_encoders():
    config = variant_config("text-only", BASE)
    model = MXTModel(config.model)
    assert not model.uses_images and len(model.encoders) == 0 and _fusions(config) == []


def test_text_only_prior_keeps_only_the_pooled_encoder_for_the_prior():
    config = variant_config("text-only-prior", "mxt-cpu")
    base = load_config("mxt-cpu")
    assert _fusions(config) == [] and config.model.regional_encoder is None
    assert config.model.global_encoder == base.model.global_encoder
    assert config.training.image_prior == base.training.image_prior and config.extraction == base.extraction
    model = MXTModel(config.model)
    assert set(model.encoders) == {"global"} and model.uses_images
    only_map = load_config("mxt-cpu").model_dump()
    only_map["model"]["global_encoder"] = None
    only_map["model"]["fusions"] = [{"name": "xattn", "options": {"heads": 4}}]
    pooled = variant_config("text-only-prior", only_map).model.global_encoder  # the map's network, pooled
    assert pooled.options["pool"] is True and "grid" not in pooled.options
    with pytest.raises(ConfigError, match="text-only-prior"):
        variant_config("text-only-prior", "tiny-cpu")


def test_the_prior_and_chooser_variants_take_out_exactly_those_parts():
    base = load_config("mxt-cpu")
    no_prior = variant_config("mxt-no-prior", "mxt-cpu")
    assert no_prior.training.image_prior is None and no_prior.extraction.choose_among_known == 50
    assert no_prior.model == base.model
    generated = variant_config("mxt-generated", "mxt-cpu")
    assert generated.extraction.choose_among_known == 0 and generated.extraction.choose_text_span is None
    assert generated.training.image_prior is None and generated.model == base.model
    text = variant_config("text-only-generated", "mxt-cpu")
    assert text.model == variant_config("text-only", "mxt-cpu").model and text.extraction.choose_among_known == 0


def test_mxt_and_per_type_keep_the_config_as_given():
    base = variant_config("mxt", BASE)
    assert variant_config("per-type", BASE) == base and _fusions(base) == ["mag", "xattn"]
    assert VARIANTS["per-type"].per_type and not VARIANTS["mxt"].per_type


def test_variant_that_does_not_apply_and_unknown_variant_are_clear_errors():
    with pytest.raises(ConfigError, match="'mag'.*its fusions: xattn"):
        variant_config("no-mag", tiny_config(["xattn"]))
    with pytest.raises(ConfigError, match="Did you mean 'no-mag'.*Available variants: mxt, no-mag"):
        variant_config("no_mag", BASE)


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_variant_names_the_available_generators_when_its_plugin_is_off(name, monkeypatch):
    monkeypatch.setenv("MXT_DISABLE_PLUGINS", "baselines")
    manager.reset()
    with pytest.raises(UnknownComponentError, match=f"'{name}'.*Available generators: .*t5"):
        variant_config(name, BASE)


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_variant_swaps_the_generator(name):
    config = variant_config(name, BASE)
    assert config.model.generator.name == name
    assert config.model.generator.options == variant_config("mxt", BASE).model.generator.options


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_variant_builds_a_model(name):  # the baselines are built-in: never skipped
    assert name in manager.list_generators()
    assert MXTModel(variant_config(name, BASE).model).generator is not None


# --------------------------------------------------------------------------- a tiny run
def _broken(config):
    config["model"]["fusions"] = [{"name": "no-such-fusion", "options": {}}]
    return config


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    folder = tmp_path_factory.mktemp("catalog")
    paths = write_catalog(folder, train_size=30, test_size=10, seed=0, image_size=64)
    # per-type: training holds two product types; the test also has types without a model
    kept = [line for line in paths["train"].read_text().splitlines()
            if json.loads(line)["product_type"] in ("mug", "shoe")]
    paths["train_two_types"] = folder / "train-two-types.jsonl"
    paths["train_two_types"].write_text("\n".join(kept) + "\n")
    return paths


@pytest.fixture(scope="module")
def ablation(catalog, tmp_path_factory):
    output = tmp_path_factory.mktemp("ablation")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(VARIANTS, "broken", Variant("broken", "a variant whose model cannot be built", _broken))
        result = run_ablation(BASE, AblationData(catalog["train"], catalog["test"]), output,
                              variants=["mxt", "broken", "text-only"], reference="text-only", steps=4,
                              seed=3, progress=False)
    return output, result


def _report(output: Path, result, name):
    return json.loads((output / result["variants"][name]["report"]).read_text())


def _top_k_recall(report, k):
    """Recomputed from the report alone: attributes by stated support, recall weighted by stated."""
    support, recalled = {}, {}
    for pair in report["pairs"]:
        support[pair["attribute"]] = support.get(pair["attribute"], 0) + pair["stated"]
        recalled[pair["attribute"]] = recalled.get(pair["attribute"], 0) + pair["recall_at_p"] * pair["stated"]
    top = sorted((a for a in support if support[a]), key=lambda a: (-support[a], a))[:k]
    return sum(recalled[a] / support[a] for a in top) / len(top)


def test_ablation_writes_each_variant_and_the_table(ablation):
    output, result = ablation
    assert (output / "ablation.json").is_file() and (output / "ablation.md").is_file()
    assert json.loads((output / "ablation.json").read_text())["settings"]["seed"] == 3
    for name in ("mxt", "text-only"):
        entry = result["variants"][name]
        assert entry["status"] == "ok" and entry["steps"] == 4 and entry["notes"] == []
        assert (output / name / "model" / "model.safetensors").is_file()
        assert (output / name / "report.predictions.jsonl").is_file()
        card = json.loads((output / name / "model" / "card.json").read_text())
        assert card["training"]["steps"] == 4 and card["evaluation"]["data"]["name"] == "test.jsonl"
    table = (output / "ablation.md").read_text()
    assert table == result["markdown"]
    improvement_rows = [line for line in table.split("## Absolute numbers")[0].splitlines() if line.startswith("| ")]
    assert improvement_rows[0] == "| variant | top-5 | top-10 (all 6) | top-15 (all 6) |"  # 6 attributes
    assert [row.split(" | ")[0] for row in improvement_rows[1:]] == ["| mxt", "| broken", "| text-only"]
    assert improvement_rows[3] == "| text-only | reference | reference | reference |"
    assert "## How answers were decided" in table and "## What each variant has" in table
    section = table.split("## What each variant has")[1].split("\n## ")[0]
    rows = {line.split(" | ")[0][2:]: line for line in section.splitlines() if line.startswith("| ")}
    assert rows["variant"] == ("| variant | generator | fusions | known-value chooser | span binding | image prior "
                               "| text prior | description |")
    assert rows["text-only"].startswith("| text-only | t5 | none | ")
    assert rows["text-only"].endswith(f" | off | off | {VARIANTS['text-only'].description} |")
    assert rows["mxt"].startswith("| mxt | t5 | mag, xattn | ")
    assert rows["broken"].startswith("| broken | t5 | no-such-fusion | off | off | off | off | ")  # its config, as asked


def test_table_numbers_equal_the_reports(ablation):
    output, result = ablation
    table = result["table"]
    reference = _report(output, result, "text-only")
    for name in ("mxt", "text-only"):
        report, values = _report(output, result, name), table["variants"][name]
        assert values["micro_f1"] == report["micro"]["f1"]
        assert values["value_absent"]["accuracy"] == report["slices"]["value_absent"]["accuracy"]
        assert values["value_absent"]["support"] == report["slices"]["value_absent"]["support"] > 0
        assert (values["zero_shot"]["correct"], values["zero_shot"]["support"]) == \
            (report["slices"]["zero_shot"]["correct"], report["slices"]["zero_shot"]["support"])
        for k in TOP_K:
            mine = _top_k_recall(report, k)
            assert values["top_k"][str(k)]["recall_at_p"] == pytest.approx(mine)
            assert values["improvement"][str(k)]["points"] == pytest.approx(100 * (mine - _top_k_recall(reference, k)))
    assert [a["attribute"] for a in table["attributes"]][:3] == ["brand", "color", "material"]  # 10 products each


def test_failing_variant_is_recorded_and_the_others_still_run(ablation):
    output, result = ablation
    broken = result["variants"]["broken"]
    assert broken["status"] == "failed" and "no-such-fusion" in broken["error"]
    assert "broken" not in result["table"]["variants"]
    assert "| broken | failed | failed | failed |" in result["markdown"]
    assert result["variants"]["text-only"]["status"] == "ok"  # ran after the failure


def test_same_seed_and_steps_give_the_same_table_and_a_seconds_cap_only_stops(catalog, tmp_path):
    data = AblationData(catalog["train"], catalog["test"])
    tables = [run_ablation(BASE, data, tmp_path / name, variants=["text-only"], reference="text-only", steps=3,
                           seed=5, progress=False)["markdown"].split(TIME_HEADING) for name in ("a", "b")]
    assert tables[0][0] == tables[1][0] and "3 training steps each" in tables[0][0]
    assert "| text-only | 3 |" in tables[0][1]  # steps and seconds, apart from the numbers
    capped = run_ablation(BASE, data, tmp_path / "c", variants=["text-only"], reference="text-only", steps=500,
                          max_seconds=1e-3, progress=False)["variants"]["text-only"]
    assert capped["steps"] < 500 and "stopped by the seconds cap" in capped["notes"][0]


def test_runner_refuses_bad_requests_before_training(catalog, tmp_path):
    data = AblationData(catalog["train"], catalog["test"])
    with pytest.raises(ConfigError, match="Available variants"):
        run_ablation(BASE, data, tmp_path / "a", variants=["mxt", "nope"], reference="mxt")
    with pytest.raises(ConfigError, match="reference variant 'text-only' is not among"):
        run_ablation(BASE, data, tmp_path / "b", variants=["mxt"])
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "ablation.json").write_text("{}")
    with pytest.raises(ConfigError, match="already holds an ablation"):
        run_ablation(BASE, data, tmp_path / "c", variants=["mxt"], reference="mxt")


def test_per_type_trains_one_model_per_type_and_accounts_for_every_row(catalog, tmp_path):
    result = run_ablation(tiny_config([]), AblationData(catalog["train_two_types"], catalog["test"]), tmp_path,
                          variants=["per-type"], reference="per-type", steps=5, progress=False)
    entry = result["variants"]["per-type"]
    assert entry["status"] == "ok", entry.get("error")
    assert set(entry["parts"]) == {"mug", "shoe"}
    assert entry["steps"] == sum(p["steps"] for p in entry["parts"].values()) == 5  # the types share the steps
    assert all((tmp_path / "per-type" / "model" / p["folder"] / "model.safetensors").is_file()
               for p in entry["parts"].values())
    report = json.loads((tmp_path / "per-type" / "report.json").read_text())
    test = [json.loads(line) for line in catalog["test"].read_text().splitlines()]
    rows = [json.loads(line) for line in (tmp_path / "per-type" / "report.predictions.jsonl").read_text().splitlines()]
    assert report["rows"] == len(rows) == sum(len(p["attributes"]) for p in test)
    assert [(r["product_id"], r["attribute"]) for r in rows] == [(p["id"], a) for p in test for a in p["attributes"]]
    without_model = [r for r in rows if r["product_type"] not in ("mug", "shoe")]
    assert without_model and all(r["error"] and r["value"] is None for r in without_model)
    assert report["errors"] == len(without_model)
    assert any("no model" in note for note in entry["notes"])


# --------------------------------------------------------------------------- the command
def test_cli_help_lists_the_options_and_variants():
    result = CliRunner().invoke(main, ["ablate", "--help"])
    assert result.exit_code == 0
    for text in ("--config", "--train", "--test", "--val", "--variants", "--reference", "--steps-per-variant",
                 "--max-seconds-per-variant",
                 "--output", "--seed", "--images", *VARIANTS):
        assert text in result.output
    assert "ablate" in CliRunner().invoke(main, ["--help"]).output


def test_cli_runs_a_tiny_ablation(catalog, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config([])))
    args = ["ablate", "--config", config, "--train", catalog["train"], "--test", catalog["test"],
            "--variants", "text-only", "--steps-per-variant", "3", "--output", tmp_path / "out", "--seed", "1"]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert "| text-only | reference | reference | reference |" in result.output
    assert (tmp_path / "out" / "ablation.md").is_file() and (tmp_path / "out" / "text-only" / "report.json").is_file()
    bad = CliRunner().invoke(main, [str(a) for a in args[:-4]] + ["--variants", "mxt,nope", "--output",
                                                                   str(tmp_path / "bad")])
    assert bad.exit_code != 0 and "No ablation variant named 'nope'" in bad.output
