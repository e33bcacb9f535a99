"""Progress that tells the truth: the training bar counts the budget the run stops at, and bars
respect TQDM_DISABLE, a non-terminal stderr and -q."""
from __future__ import annotations

import re

import pytest

from conftest import tiny_config
from mxt_sdk import Extractor, progress
from mxt_sdk.experiments.synthetic import write_catalog
from mxt_sdk.training.budget_bar import BudgetBar


@pytest.fixture(autouse=True)
def _reset():
    yield
    progress.configure(None)


def test_the_total_is_where_the_seconds_budget_ends_not_the_planned_steps():
    bar = BudgetBar(1_000_000, 0, max_seconds=120.0, seconds_before=0.0, enabled=False)
    assert bar.expected_stop(0, 0.0) == 1_000_000  # no rate measured yet
    assert bar.expected_stop(10, 10.0) == 120  # 1 step/s, 110 s left
    assert bar.expected_stop(10, 125.0) == 10  # budget spent: it stops now
    resumed = BudgetBar(500, 100, max_seconds=120.0, seconds_before=100.0, enabled=False)
    assert resumed.expected_stop(110, 105.0) == 110 + 30  # 0.5 s/step over this run, 15 s left
    steps_only = BudgetBar(300, 0, max_seconds=None, seconds_before=0.0, enabled=False)
    assert steps_only.expected_stop(10, 10.0) == 300
    assert BudgetBar(50, 0, max_seconds=1e6, seconds_before=0.0, enabled=False).expected_stop(10, 1.0) == 50


def test_bars_follow_tqdm_disable_the_terminal_and_quiet(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    progress.configure(True)
    assert not progress.bars_enabled() and progress.bar(desc="x").disable
    monkeypatch.delenv("TQDM_DISABLE")
    assert progress.bars_enabled()
    progress.configure(None)
    assert progress.bars_enabled() is False  # pytest's stderr is not a terminal
    progress.configure(False)
    with progress.stage("variant 2/7: no-mag"):
        assert progress.stage_prefix() == "[variant 2/7: no-mag] "


def test_a_time_budgeted_run_ends_its_bar_at_the_step_it_stopped(tmp_path, capsys):
    catalog = write_catalog(tmp_path / "data", train_size=16, test_size=2, image_size=32)
    progress.configure(True)
    with progress.stage("demo model 1/2: text-only"):
        result = Extractor.from_config(tiny_config([])).fit(
            catalog["train"], output_dir=tmp_path / "m", max_steps=1_000_000, max_train_seconds=1.5,
            batch_size=4, normalizers=["text"])
    assert result.stopped_by_time and result.steps < 1_000_000
    lines = [line for line in re.split(r"[\r\n]", capsys.readouterr().err) if "Training" in line]
    assert lines and "[demo model 1/2: text-only] Training" in lines[-1]
    assert f" {result.steps}/{result.steps} [" in lines[-1], lines[-1]
    assert "steps/s" in lines[-1] and "examples/s" in lines[-1]
    assert "1000000" not in lines[-1]
