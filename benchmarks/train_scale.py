"""``mxt train`` against catalog size: peak memory and time to the first optimizer step, 20k vs 200k products.

Run from the repository root (not a test; about 15 minutes on a shared 2-core machine)::

    python benchmarks/train_scale.py --output /tmp/bench/train_scale.json
    python benchmarks/train_scale.py --sizes 2000 20000 --steps 2     # a few minutes

Writes synthetic catalogs (:func:`mxt_sdk.experiments.synthetic.generate`, about 4.4 labelled
attributes per product) of each size as JSONL **without images** (drawing 200k pictures would
measure PNG encoding; image features have their own bounded cache, ``docs/training.md``), and a
text-only tiny config: a 2-layer T5 of width 64 whose Unigram tokenizer is trained on the data, the
default label cleaning (text, units, merge, min_count), batch 32, ``--steps`` steps, no validation.

Each size runs ``python -m mxt_sdk.cli train`` in a fresh process (``--runs`` times, into fresh
folders: nothing cached), and reports

* **peak RSS**: the process's ``ru_maxrss`` from ``wait4`` (exact, not sampled);
* **time to first step**: from starting the process to the first line of ``metrics.jsonl``
  (``log_every: 1``: written right after optimizer step 1), watched from outside every 20 ms;
* **cached first step**: the same, for a re-run with more steps in the same folders (a resume:
  the staged data and the example cache are reused);

and prints the largest / smallest ratios side by side.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]
from measure import machine, report  # noqa: E402
from mxt_sdk.experiments.synthetic import generate  # noqa: E402

CONFIG = {
    "model": {"generator": {"name": "t5", "options": {"tokenizer": "unigram", "tokenizer_vocab_size": 2000,
                                                      "d_model": 64, "d_ff": 128, "num_layers": 2, "num_heads": 4,
                                                      "dropout_rate": 0.0}},
              "max_input_tokens": 96, "max_answer_tokens": 8},
    "training": {"batch_size": 32, "learning_rate": 1e-3, "log_every": 1, "eval_every": 1000,
                 "checkpoint_every_minutes": None, "seed": 0},
    "extraction": {"canonicalizer": None},
}


def write_catalog(path: Path, size: int, seed: int) -> Path:
    if not path.exists():
        with open(path.with_suffix(".tmp"), "w", encoding="utf-8") as handle:
            for item in generate(size, seed):
                handle.write(json.dumps(item.product) + "\n")
        path.with_suffix(".tmp").rename(path)
    return path


def run_train(data: Path, config: Path, output: Path, steps: int, threads: int) -> dict[str, float]:
    """One ``mxt train`` in a fresh process: peak RSS, time to the first step, total time."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")])}
    metrics = output.with_name(output.name + ".run") / "metrics.jsonl"
    command = [sys.executable, "-m", "mxt_sdk.cli", "train", "--config", str(config), "--train", str(data),
               "--output", str(output), "--max-steps", str(steps), "-q"]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    seen_lines = len(metrics.read_text().splitlines()) if metrics.exists() else 0
    first_step = None
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if first_step is None and metrics.exists() and len(metrics.read_text().splitlines()) > seen_lines:
            first_step = time.perf_counter() - started
        if pid:
            break
        time.sleep(0.02)
    total = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    error = process.stderr.read().decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {process.returncode}:\n{error[-3000:]}")
    return {"peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "first_step_seconds": round(first_step, 2),
            "total_seconds": round(total, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--runs", type=int, default=1, help="fresh runs per size (the median is reported)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, help="folder for catalogs and runs (default: a temporary one)")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="mxt-train-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    config = work / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    results: dict[int, dict] = {}
    for size in args.sizes:
        data = write_catalog(work / f"catalog-{size}.jsonl", size, args.seed)
        runs = []
        for number in range(args.runs):
            output = work / f"model-{size}-{number}-{time.time_ns()}"
            fresh = run_train(data, config, output, args.steps, args.threads)
            cached = run_train(data, config, output, args.steps + 1, args.threads)
            runs.append({"fresh": fresh, "cached_first_step_seconds": cached["first_step_seconds"],
                         "cached_peak_rss_mib": cached["peak_rss_mib"],
                         "model_folder": sorted(p.name for p in output.iterdir())})
            print(json.dumps({"size": size, **runs[-1]}), flush=True)
        middle = sorted(runs, key=lambda r: r["fresh"]["first_step_seconds"])[len(runs) // 2]
        results[size] = {"products": size, "data_mib": round(data.stat().st_size / 2**20, 1), **middle}
    small, large = min(results), max(results)

    def ratio(get) -> float:
        return round(get(results[large]) / get(results[small]), 2)

    summary = {
        "machine": machine(), "load_average": os.getloadavg(), "args": {k: str(v) for k, v in vars(args).items()},
        "config": CONFIG, "results": results,
        "ratios": {"peak_rss": ratio(lambda r: r["fresh"]["peak_rss_mib"]),
                   "first_step": ratio(lambda r: r["fresh"]["first_step_seconds"]),
                   "cached_first_step": ratio(lambda r: r["cached_first_step_seconds"])},
    }
    print(f"\n{'':24}{small:>12,}{large:>12,}{'ratio':>8}")
    for label, get, key in (("peak RSS (MiB)", lambda r: r["fresh"]["peak_rss_mib"], "peak_rss"),
                            ("first step (s)", lambda r: r["fresh"]["first_step_seconds"], "first_step"),
                            ("cached first step (s)", lambda r: r["cached_first_step_seconds"], "cached_first_step")):
        print(f"{label:24}{get(results[small]):>12}{get(results[large]):>12}{summary['ratios'][key]:>8}")
    report(summary, args.output)


if __name__ == "__main__":
    main()
