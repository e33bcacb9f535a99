"""`mxt demo --quick` end to end: data, two models, evaluations, report."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # trains two models in a subprocess


def test_quick_demo_runs_end_to_end(tmp_path):
    script = Path(sys.executable).with_name("mxt")
    completed = subprocess.run([str(script), "demo", "--quick", "--output", str(tmp_path / "demo")],
                               capture_output=True, text=True, timeout=600,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert completed.returncode == 0, completed.stderr[-3000:]
    out = tmp_path / "demo"
    assert "Values only visible in the image" in completed.stdout
    # quiet by default: no Python warning and no library log line reaches the user
    assert not [line for line in completed.stderr.splitlines()
                if "Warning:" in line or "[transformers]" in line or line.startswith(("WARNING", "Generating"))]
    assert "Demo model 2 of 2: text-only" in completed.stderr
    for path in ("report.md", "data/train.jsonl", "mxt/model.safetensors", "text-only/config.json",
                 "evaluation/report.json", "evaluation/report.predictions.jsonl", "evaluation-text-only/report.json",
                 "evaluation/report.html", "mxt.run/checkpoints", "mxt.run/train.log"):
        assert (out / path).exists(), path
    assert not (out / "mxt" / "checkpoints").exists() and not (out / "mxt" / "cache").exists()
    report = json.loads((out / "evaluation" / "report.json").read_text())
    rows = (out / "evaluation" / "report.predictions.jsonl").read_text().splitlines()
    assert report["rows"] == len(rows) > 0
    assert report["slices"]["zero_shot"]["support"] > 0 and report["slices"]["value_absent"]["support"] > 0
    assert set(report["value_absent_accuracy_by_attribute"]) >= {"pattern", "sleeve_length", "heel_height"}
