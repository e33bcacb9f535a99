"""Calibration with enough support: a pair needs `min_support` labelled rows for its own threshold;
others are pooled over their attribute or all rows, and thresholds.json says which. Hand-computed."""
from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

from conftest import script_answers, tiny_config
from mxt_sdk import Extractor
from mxt_sdk.cli import main
from mxt_sdk.evaluation.metrics import Scored
from mxt_sdk.evaluation.thresholds import Thresholds, calibrate, calibration_summary

# (product type, attribute, product count, correct?, confidence) at target precision 0.75:
# dress/color, 20 rows: 15 right at 0.9 (P 1, R .75), 5 wrong at 0.6 (P .75, R .75, no gain) -> own 0.9.
# shoe/color, 2 rows: own sweep never reaches .75. Colour pooled (22 rows): 0.95 P 0; 0.9 P 15/16;
#   0.6 P 15/21; 0.3 P 16/22 -> 0.9.
# mug/material, 2 rows (both right at 0.4; own: 0.4); material has 2 rows, so all 24 rows: 0.9 P 15/16
#   R 15/24; 0.6 P 15/21; 0.4 P 17/23; 0.3 P 18/24 = .75, R 18/24 -> 0.3.
PLAN = [("dress", "color", 15, True, 0.9), ("dress", "color", 5, False, 0.6), ("shoe", "color", 1, True, 0.3),
        ("shoe", "color", 1, False, 0.95), ("mug", "material", 2, True, 0.4)]


def _by_pair() -> dict[tuple[str, str], list[Scored]]:
    rows: dict[tuple[str, str], list[Scored]] = {}
    for product_type, attribute, count, right, confidence in PLAN:
        rows.setdefault((product_type, attribute), []).extend(
            Scored("v" if right else "w", "v", confidence) for _ in range(count))
    return rows


def test_pairs_below_min_support_are_pooled_by_attribute_then_over_all_rows():
    thresholds = calibrate(_by_pair(), 0.75)
    assert thresholds.min_support == 20
    assert thresholds.pairs == {"dress\tcolor": 0.9, "shoe\tcolor": 0.9, "mug\tmaterial": 0.3}
    assert thresholds.sources == {"dress\tcolor": "pair", "shoe\tcolor": "attribute", "mug\tmaterial": "global"}
    assert thresholds.support == {"dress\tcolor": 20, "shoe\tcolor": 2, "mug\tmaterial": 2}
    assert thresholds.attributes["color"].threshold == 0.9 and "material" not in thresholds.attributes
    assert (thresholds.all_rows.threshold, thresholds.all_rows.support) == (0.3, 24)
    # pairs the calibration data never had
    assert thresholds.lookup("bag", "color") == (0.9, "attribute")
    assert thresholds.lookup("bag", "size") == (0.3, "global")
    # with a support of 2, every pair has its own threshold again
    assert calibrate(_by_pair(), 0.75, min_support=2).pairs == {"dress\tcolor": 0.9, "shoe\tcolor": None,
                                                                "mug\tmaterial": 0.4}


def test_the_summary_lists_what_cannot_reach_the_target():
    rows = _by_pair()
    rows[("bag", "logo")] = [Scored("x", "y", 0.8)] * 20  # 20 rows, all wrong: accepts nothing
    summary = calibration_summary(calibrate(rows, 0.75))
    assert summary["unreachable_accept_nothing"] == ["bag / logo"] and summary["unreachable_attributes"] == ["logo"]
    assert (summary["pairs"], summary["reached"], summary["own_threshold"]) == (4, 3, 2)
    assert summary["pooled_by_attribute"] == ["shoe / color"]
    assert summary["pooled_over_all_rows"] == ["mug / material"]


def test_an_old_thresholds_file_still_reads():
    old = Thresholds.model_validate({"default": 0.5, "target_precision": 0.9,
                                     "pairs": {"dress\tcolor": 0.62, "dress\tneckline": None},
                                     "support": {"dress\tcolor": 140, "dress\tneckline": 2}})
    assert old.lookup("dress", "color") == (0.62, "pair")
    assert old.lookup("dress", "neckline") == (math.inf, "pair")
    assert old.lookup("mug", "color") == (0.5, "default")


@pytest.fixture
def labelled(tmp_path, monkeypatch):
    records, answers, number = [], {}, 0
    for product_type, attribute, count, right, confidence in PLAN:
        for _ in range(count):
            title = f"Item {number:02d} {product_type}"
            records.append({"id": f"p{number}", "product_type": product_type, "title": title,
                            "attributes": {attribute: "plain"}})
            answers[(title, attribute)] = ("plain" if right else "striped", confidence, True)
            number += 1
    data = tmp_path / "val.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    script_answers(monkeypatch, answers)
    torch.manual_seed(0)
    Extractor.from_config(tiny_config([])).save_pretrained(tmp_path / "model")
    return tmp_path / "model", data


def test_mxt_calibrate_pools_a_pair_with_two_rows_and_says_so(labelled):
    model, data = labelled
    result = CliRunner().invoke(main, ["calibrate", "--model", str(model), "--data", str(data), "--precision", "0.75"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output[result.output.index("{"):])
    assert printed["pooled_by_attribute"] == ["shoe / color"] and printed["min_support"] == 20
    saved = json.loads((model / "thresholds.json").read_text())
    assert saved["pairs"] == pytest.approx({"dress\tcolor": 0.9, "shoe\tcolor": 0.9, "mug\tmaterial": 0.3})
    assert saved["sources"] == {"dress\tcolor": "pair", "shoe\tcolor": "attribute", "mug\tmaterial": "global"}
    predictions = Extractor.from_pretrained(model).extract(
        [{"id": "x", "product_type": "shoe", "title": "Item 20 shoe"},
         {"id": "y", "product_type": "bag", "title": "Item 00 dress"}], ["color"])  # bag: not in the data
    assert [(p.threshold_source, p.accepted) for p in predictions] == [("attribute", False), ("attribute", True)]
    # the dress's colour has 20 rows of one path (generated): its own (pair, path) threshold judges its answers
    assert saved["pair_paths"] == pytest.approx({"dress\tcolor\tgenerated": 0.9})
    assert saved["paths"]["generated"]["support"] == 24
    dress = Extractor.from_pretrained(model).extract([{"id": "z", "product_type": "dress", "title": "Item 00 dress"}],
                                                     ["color"])[0]
    assert (dress.decided_by, dress.threshold_source, dress.accepted) == ("generated", "pair_path", True)
    result = CliRunner().invoke(main, ["calibrate", "--model", str(model), "--data", str(data), "--precision", "0.75",
                                       "--min-support", "2"])
    assert result.exit_code == 0, result.output
    assert json.loads((model / "thresholds.json").read_text())["sources"]["shoe\tcolor"] == "pair"
