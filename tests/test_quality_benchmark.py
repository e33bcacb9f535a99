"""benchmarks/quality.py: the same seed and steps print the same tables in two fresh runs."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent


def _smoke(output: Path) -> str:
    done = subprocess.run([sys.executable, "benchmarks/quality.py", "--smoke", "--output", str(output),
                           "--variants", "mxt,span", "--threads", "1"],
                          cwd=REPOSITORY, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return (output / "results.md").read_text()


@pytest.mark.slow
def test_two_smoke_runs_with_the_same_seed_print_identical_tables(tmp_path):
    first, second = _smoke(tmp_path / "a"), _smoke(tmp_path / "b")
    numbers = [text.split("\n## Time\n")[0] for text in (first, second)]
    assert numbers[0] == numbers[1]
    assert "| mxt | " in numbers[0] and "30 training steps per variant" in numbers[0]
    assert "recall@90P top-5 (n)" in numbers[0]  # every recall@P with its support
    times = first.split("\n## Time\n")[1]
    assert "One run at a time, 1 torch thread(s)" in times and "| text-only | 30 |" in times
