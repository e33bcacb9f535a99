"""Metrics: hand-computed cases, and report numbers recomputed independently from the predictions file."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import tiny_config
from mxt_sdk import Extractor, Prediction, Product
from mxt_sdk.evaluation.metrics import Scored, match_key, prf, recall_at_precision, threshold_sweep
from mxt_sdk.evaluation.report import build_report, score
from mxt_sdk.evaluation.thresholds import Thresholds, calibrate
from mxt_sdk.experiments.synthetic import write_catalog


def test_match_key_normalises_case_space_and_edge_punctuation():
    assert match_key("  Navy   Blue. ") == match_key("navy blue") == "navy blue"
    assert match_key("ＢＬＡＣＫ") == "black"
    assert match_key("!!!") is None and match_key(None) is None


ROWS = [  # (predicted, gold, confidence)
    Scored("red", "red", 0.9), Scored("blue", "Blue", 0.8), Scored("green", "black", 0.7),
    Scored("pink", "pink", 0.6), Scored(None, "white", 0.0), Scored("grey", None, 0.5),
]


def test_prf_counts_by_hand():
    # threshold 0.55: accepted red, blue, green, pink -> tp 3, fp 1; stated golds 5
    result = prf(ROWS, 0.55)
    assert (result["true_positives"], result["false_positives"], result["stated"]) == (3, 1, 5)
    assert result["precision"] == pytest.approx(0.75) and result["recall"] == pytest.approx(0.6)


def test_recall_at_precision_by_hand():
    sweep = threshold_sweep(ROWS)
    assert [round(t, 2) for t, _, _ in sweep] == [0.9, 0.8, 0.7, 0.6, 0.5]
    assert recall_at_precision(ROWS, 0.9) == (pytest.approx(0.4), 0.8, 1.0)
    assert recall_at_precision(ROWS, 0.75)[0] == pytest.approx(0.6)
    assert recall_at_precision([Scored("x", "y", 0.9)], 0.9) == (0.0, None, 0.0)


def test_tied_confidences_are_accepted_together():
    rows = [Scored("a", "a", 0.5), Scored("b", "c", 0.5)]
    assert threshold_sweep(rows) == [(0.5, 0.5, 0.5)]
    assert recall_at_precision(rows, 0.9) == (0.0, None, 0.0)


def test_calibrate_marks_unreachable_pairs():
    thresholds = calibrate({("dress", "color"): ROWS, ("mug", "color"): [Scored("x", "y", 0.9)]}, 0.9, min_support=1)
    assert thresholds.pairs["dress\tcolor"] == 0.8 and thresholds.pairs["mug\tcolor"] is None
    assert thresholds.accepts("dress", "color", 0.85) and not thresholds.accepts("mug", "color", 1.0)
    # a pair missing from the data: colour pooled over the 7 rows above never reaches 90% precision
    assert not thresholds.accepts("shoe", "color", 1.0) and thresholds.lookup("shoe", "color")[1] == "attribute"
    assert Thresholds().accepts("shoe", "color", 0.6) and not Thresholds().accepts("shoe", "color", 0.4)


def test_each_decision_path_gets_its_own_threshold_or_a_pooled_floor():
    # one pair answered by two paths: generated answers are right from 0.6 up, the prior-moved ones only at 0.95
    generated = [Scored("a", "a", 0.9), Scored("b", "b", 0.8), Scored("c", "c", 0.6), Scored("d", "x", 0.3)]
    moved = [Scored("e", "e", 0.95), Scored("f", "x", 0.9), Scored("g", "x", 0.85)]
    mug_moved = [Scored("h", "h", 0.9), Scored("i", "x", 0.7)]  # a second pair whose moved answers are few
    mug_generated = [Scored("j", "j", 0.95), Scored("k", "k", 0.8), Scored("l", "l", 0.75)]
    by_path = {("dress", "pattern", "generated"): generated, ("dress", "pattern", "known_value+image_prior"): moved,
               ("mug", "pattern", "known_value+image_prior"): mug_moved, ("mug", "pattern", "generated"): mug_generated}
    thresholds = calibrate({("dress", "pattern"): generated + moved, ("mug", "pattern"): mug_moved + mug_generated},
                           0.9, min_support=3, rows_by_path=by_path)
    # one threshold per pair would accept 0.9 for both paths (precision 6/7 over the pair's rows < 0.9: 0.95)
    assert thresholds.lookup("dress", "pattern", "generated") == (0.6, "pair_path")
    assert thresholds.lookup("dress", "pattern", "known_value+image_prior") == (0.95, "pair_path")
    # the mug's moved answers (2 rows) fall back to the path pooled over both pairs, stricter than the mug's own
    assert thresholds.paths["known_value+image_prior"].support == 5
    assert thresholds.lookup("mug", "pattern", "known_value+image_prior") == (0.95, "path")
    assert thresholds.lookup("mug", "pattern") == (0.75, "pair")  # no path: the pair's alone, as before
    assert not thresholds.accepts("mug", "pattern", 0.9, "known_value+image_prior")
    # prf honours a row's own threshold over the pair's
    assert prf([Scored("a", "a", 0.7, threshold=0.8), Scored("b", "b", 0.7)], 0.5)["true_positives"] == 1
    # files written before paths load and behave as before
    old = Thresholds.model_validate({"pairs": {"dress\tpattern": 0.5}})
    assert old.lookup("dress", "pattern", "span") == (0.5, "pair")


def test_report_numbers_equal_a_recomputation_from_the_predictions_file(tmp_path):
    paths = write_catalog(tmp_path / "data", train_size=10, test_size=10, image_size=32)
    torch.manual_seed(0)
    extractor = Extractor.from_config(tiny_config(["mag"]))
    extractor.fit(paths["train"], output_dir=tmp_path / "model", max_steps=2, batch_size=8,
                  normalizers=["text"], learning_rate=1e-3)
    report = extractor.evaluate(paths["test"], precision=0.5, output=tmp_path / "eval" / "report.json")
    rows = [json.loads(line) for line in (tmp_path / "eval" / "report.predictions.jsonl").read_text().splitlines()]
    gold_rows = sum(len(json.loads(line)["attributes"]) for line in paths["test"].read_text().splitlines())
    assert report["rows"] == len(rows) == gold_rows
    on_disk = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert on_disk["micro"] == pytest.approx(report["micro"])
    _check_pairs_against_rows(report, rows)
    zero_shot = [r for r in rows if r["zero_shot"]]
    assert report["slices"]["zero_shot"]["support"] == len(zero_shot)
    assert report["slices"]["zero_shot"]["correct"] == sum(r["correct"] for r in zero_shot)
    new = [r for r in rows if r["new_value"]]
    assert (report["slices"]["new_value"]["support"], report["slices"]["new_value"]["correct"]) == \
        (len(new), sum(r["correct"] for r in new))
    assert all(r["zero_shot"] for r in new)
    seen_anywhere = {v.casefold() for counts in extractor.metadata.values.values() for v in counts}
    assert [r["new_value"] for r in rows] == [r["gold"] is not None and r["gold"].casefold() not in seen_anywhere
                                              for r in rows]
    absent = [r for r in rows if r["value_absent"]]
    assert {r["attribute"] for r in absent} >= {"pattern"}
    assert all(r["attribute"] != "material" for r in absent)
    assert (tmp_path / "eval" / "report.md").read_text().startswith("# Evaluation report")
    # answers counted per path that decided them, overall and per pair, from the rows' decided_by
    paths = report["decided_by"]
    assert sum(n["answers"] for n in paths["overall"].values()) == sum(r["error"] is None for r in rows)
    assert {r["decided_by"] for r in rows} == set(paths["overall"]) and set(paths["overall"]) <= {
        "generated", "known_value", "known_value+image_prior", "span"}
    for path, n in paths["overall"].items():
        assert n["correct"] == sum(r["correct"] for r in rows if r["decided_by"] == path)
        assert n["answers"] == sum(p[path]["answers"] for p in paths["by_pair"].values() if path in p)
        accepted = [r for r in rows if r["decided_by"] == path and r["value"] is not None
                    and extractor.thresholds.accepts(r["product_type"], r["attribute"], r["confidence"])]
        assert (n["accepted"], n["accepted_correct"]) == (len(accepted), sum(r["correct"] for r in accepted))
        assert n["precision"] == (n["accepted_correct"] / n["accepted"] if accepted else None)
    assert "| decided by |" in (tmp_path / "eval" / "report.md").read_text()
    assert "id='paths'" in (tmp_path / "eval" / "report.html").read_text()
    assert list((tmp_path / "eval").glob("report.pr-*.png"))
    # The same check on rows with a real mix of right and wrong answers and confidences.
    for i, row in enumerate(rows):
        if i % 3:
            row.update(value=row["gold"], correct=row["gold"] is not None, confidence=(i % 7) / 7)
    _check_pairs_against_rows(build_report(rows, extractor.thresholds, 0.5), rows)


def _check_pairs_against_rows(report, rows):
    assert any(p["recall"] > 0 for p in report["pairs"]) or not any(r["correct"] for r in rows)
    for pair in report["pairs"]:
        mine = [r for r in rows if (r["product_type"], r["attribute"]) == (pair["product_type"], pair["attribute"])]
        stated = [r for r in mine if r["gold"] is not None]
        accepted = [r for r in mine if r["value"] is not None and r["confidence"] >= pair["threshold"]]
        tp = sum(r["correct"] for r in accepted)
        assert pair["support"] == len(mine)
        assert pair["precision"] == pytest.approx(tp / len(accepted) if accepted else 0.0)
        assert pair["recall"] == pytest.approx(tp / len(stated) if stated else 0.0)
        best = 0.0
        for threshold in {r["confidence"] for r in mine if r["value"] is not None}:
            kept = [r for r in mine if r["value"] is not None and r["confidence"] >= threshold]
            hits = sum(r["correct"] for r in kept)
            if kept and hits / len(kept) >= 0.5 and stated:
                best = max(best, hits / len(stated))
        assert pair["recall_at_p"] == pytest.approx(best)
        for r in mine:
            assert r["correct"] == (r["value"] is not None and r["gold"] is not None
                                    and r["value"].casefold().strip() == r["gold"].casefold().strip())


@pytest.mark.parametrize("predicted, gold", [("-20", "20"), ("20", "-20"), ("10%", "10"), ("0.5", "5"),
                                             (".5", "5"), ("C++", "c"), ("C#", "C"), ("+5", "5"), ("<5 kg", "5 kg")])
def test_different_numbers_signs_and_symbols_never_match(predicted, gold):
    assert match_key(predicted) != match_key(gold) and not Scored(predicted, gold, 0.9).correct


@pytest.mark.parametrize("predicted, gold", [("Navy  Blue.", "navy blue"), ("(Red)", "red"), ('"13"', "13"),
                                             ("5.", "5"), ("\u221220", "-20"), ("C++", "c++"), ("[10%]", "10%")])
def test_case_space_and_wrapping_punctuation_still_fold(predicted, gold):
    assert Scored(predicted, gold, 0.9).correct


class _DropsSigns:
    """A normalizer that, like a fitted ``merge`` given 20 and -20, maps -20 onto 20."""

    def __call__(self, value, product_type, attribute):
        return value.lstrip("-")


def _scored_report(products, answers, normalizers=(), precision=0.9):
    predictions = [Prediction(product_id=p.id, product_type=p.product_type, attribute=a, value=answers[(p.id, a)][0],
                              confidence=answers[(p.id, a)][1])
                   for p in products for a in p.attributes]
    rows = score(products, predictions, None, list(normalizers))
    return rows, build_report(rows, Thresholds(), precision)


def test_no_normalizer_can_equate_different_signs():
    products = [Product(id="a", product_type="fridge", title="Fridge", attributes={"min temperature": "-20"})]
    rows, report = _scored_report(products, {("a", "min temperature"): ("20", 0.9)}, [_DropsSigns()])
    assert (rows[0]["value"], rows[0]["gold"], rows[0]["correct"]) == ("20", "20", False)
    assert report["micro"]["precision"] == 0.0


DRESSES = [Product(id=f"d{i}", product_type="dress", title=f"Dress {i}", attributes={"color": color, "logo": None})
           for i, color in enumerate(["red", "blue", "green"])]
PERFECT = {**{(p.id, "color"): (p.attributes["color"], 0.9) for p in DRESSES},
           **{(p.id, "logo"): (None, 0.8) for p in DRESSES}}


def test_a_perfect_file_with_an_all_not_stated_pair_scores_one():
    rows, report = _scored_report(DRESSES, PERFECT)
    assert report["macro"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "recall_at_p": 1.0, "pairs": 1}
    assert report["micro"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert report["unstated_pairs"] == {"count": 1, "predictions": 0, "accepted": 0, "pairs": ["dress / logo"]}


def test_predictions_on_a_pair_without_stated_values_are_counted_apart():
    # colour: red right (0.9), blue wrong (0.6), green right (0.3, below 0.5); logo: 2 values where none is stated
    answers = {**PERFECT, ("d1", "color"): ("navy", 0.6), ("d2", "color"): ("green", 0.3),
               ("d0", "logo"): ("nike", 0.7), ("d1", "logo"): ("puma", 0.2)}
    _, report = _scored_report(DRESSES, answers)
    # micro at 0.5: TP red; FP navy, nike -> P 1/3, R 1/3, F1 1/3
    assert report["micro"] == pytest.approx({"precision": 1 / 3, "recall": 1 / 3, "f1": 1 / 3})
    # macro = colour alone: P 1/2, R 1/3, F1 2/5; recall@90P: only red's 0.9 keeps P >= 0.9 -> 1/3
    assert report["macro"] == pytest.approx({"precision": 0.5, "recall": 1 / 3, "f1": 0.4, "recall_at_p": 1 / 3,
                                             "pairs": 1})
    assert report["unstated_pairs"] == {"count": 1, "predictions": 2, "accepted": 1, "pairs": ["dress / logo"]}
