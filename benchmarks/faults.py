"""Fault benchmark: SIGKILL at random moments, a seeded corruption fuzz, and SSRF probes.

Run from the repository root (not a test)::

    python benchmarks/faults.py --output /tmp/faults                  # 10 kills per command
    python benchmarks/faults.py --output /tmp/faults-smoke --smoke     # 2 kills each, 200 fuzz records

What it does, with the tiny CPU model (T5 width 32, timm ``test_resnet``, MAG) on the synthetic catalog:

* ``train``: one uninterrupted ``mxt train`` (with validation, so ``checkpoints/best`` is replaced
  again and again), then ``--runs`` runs of the same command, each killed with SIGKILL once (at a
  random time, or, every third run, inside a checkpoint write through ``MXT_CRASH_AT``) and re-run
  until it exits 0. Each must end with model and tokenizer files byte-identical to the uninterrupted
  run and no ``.tmp-`` / ``.old-`` leftover anywhere (model folder ``<output>``, run folder
  ``<output>.run``, or beside them).
* ``pretrain``: the same with ``mxt pretrain`` (``--pretrain-runs``).
* ``extract``: ``mxt extract --resume`` killed at random moments (or after a chosen row) and re-run;
  the final file must equal the uninterrupted one byte for byte, every (product, attribute) once.
* ``fuzz``: ``--fuzz`` records, a seeded mix of good products and 25 kinds of corruption; one row per
  requested pair, and the good products' answers equal those of a run on the good products alone.
* ``ssrf``: image URLs at a listening socket on 127.0.0.1 (URLs off, then on), and a local HTTP server
  (allowed by ``url_allow_networks``) redirecting to 127.0.0.2 and to 10.0.0.1: no connection may reach
  the listener, and every such record gets an error row.

Results: ``<output>/results.json`` and a printed summary. Timings are the machine's of the day and are
only used to choose kill moments.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import yaml  # noqa: E402

from fault_inputs import corrupt_catalog, ssrf_probe  # noqa: E402  (benchmarks/fault_inputs.py)
from mxt_sdk.experiments.synthetic import write_catalog  # noqa: E402
from mxt_sdk.training.layout import default_run_dir  # noqa: E402

LEFTOVER = re.compile(r"\.(tmp|old)-[0-9a-f]{8}$")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
#: exit statuses of a finished mxt extract (mxt_sdk/cli/exits.py): all answered, or some error rows
EXTRACT_FINISHED = (0, 4)
CRASH_POINTS = ["atomic_directory.retired", "atomic_directory.staged", "staged_update.moving"]
CONFIG = {
    "model": {"generator": {"name": "t5", "options": {"tokenizer": "unigram", "tokenizer_vocab_size": 400,
                                                      "d_model": 32, "d_ff": 64, "num_layers": 2, "num_heads": 4,
                                                      "dropout_rate": 0.1}},
              "global_encoder": {"name": "timm", "options": {"model_name": "test_resnet", "image_size": 64,
                                                             "pool": True}},
              "fusions": [{"name": "mag", "options": {"dropout": 0.1}}], "max_answer_tokens": 6},
    "training": {"learning_rate": 3e-3, "batch_size": 8, "eval_every": 4, "log_every": 1, "seed": 11,
                 "keep_checkpoints": 1, "normalizers": ["text", "min_count"]},
}


def mxt(*args: str) -> list[str]:
    return [sys.executable, "-m", "mxt_sdk.cli", *args]


def run(command: list[str], env: dict | None = None, kill_after: float | None = None,
        kill_when=None) -> tuple[int, float]:
    """Run ``command``; SIGKILL its process group after ``kill_after`` seconds or as soon as
    ``kill_when()`` is true (polled every 20 ms). Returns (exit status, seconds)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True, env=env or ENV)
    deadline = started + (kill_after if kill_after is not None else 1800)
    while process.poll() is None:
        if time.perf_counter() >= deadline or (kill_when is not None and kill_when()):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            break
        time.sleep(0.02)
    return process.returncode, time.perf_counter() - started


def digests(folder: Path, names: tuple[str, ...]) -> dict[str, str]:
    files = [p for name in names for p in sorted(folder.glob(name)) if p.is_file()]
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def leftovers(output: Path) -> list[str]:
    """``.tmp-`` / ``.old-`` entries inside ``output`` and its run folder, or beside them under their names."""
    found = []
    for folder in (output, default_run_dir(output)):
        if folder.is_dir():
            found += [p for p in folder.rglob("*") if LEFTOVER.search(p.name)]
        found += [p for p in folder.parent.iterdir()
                  if p.name.startswith(f".{folder.name}.") and LEFTOVER.search(p.name)]
    return [str(p) for p in found]


def killed_runs(name: str, command, runs: int, reference_seconds: float, files: tuple[str, ...],
                reference: dict[str, str], root: Path, rng: random.Random) -> list[dict]:
    """``runs`` fresh outputs, each killed once then re-run with the same command to the end."""
    results = []
    for index in range(runs):
        output = root / f"{name}-{index}"
        env, kill_after, kill_when = ENV, None, None
        if index % 3 == 2:
            point = f"{rng.choice(CRASH_POINTS)}:{rng.randint(1, 3)}"
            env, how = {**ENV, "MXT_CRASH_AT": point}, f"MXT_CRASH_AT={point}"
        elif index % 3 == 1:  # early: during start-up or the first steps
            kill_after = rng.uniform(0.05, 0.5) * reference_seconds
            how = f"SIGKILL after {kill_after:.1f} s"
        else:  # at a random step (metrics.jsonl gets a line per step): times mean little on a shared machine
            step = rng.randint(1, 29)
            how = f"SIGKILL at step {step}"

            # mxt train logs to its run folder, mxt pretrain into its output folder
            def kill_when(places=(default_run_dir(output) / "metrics.jsonl", output / "metrics.jsonl"),
                          step=step) -> bool:
                return any(m.exists() and m.read_bytes().count(b"\n") >= step for m in places)
        status, _ = run(command(output), env=env, kill_after=kill_after, kill_when=kill_when)
        reruns = 0
        while reruns < 3:
            reruns += 1
            if run(command(output))[0] == 0:
                break
        result = {"run": index, "kill": how, "first_status": status, "reruns": reruns,
                  "identical": digests(output, files) == reference, "leftovers": leftovers(output)}
        print(f"  {name} {index}: {how}, first exit {status}, identical={result['identical']}, "
              f"leftovers={len(result['leftovers'])}", flush=True)
        results.append(result)
    return results


def train_section(root: Path, catalog: dict, runs: int, rng: random.Random, seconds: float | None = None) -> dict:
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))

    def command(output: Path) -> list[str]:
        return mxt("train", "--config", str(config), "--train", str(catalog["train"]), "--val",
                   str(catalog["test"]), "--output", str(output), "--max-steps", "30")

    files = ("model.safetensors", "tokenizer/*")
    if seconds is None:  # else the reference of an earlier invocation, and how long it took
        status, seconds = run(command(root / "train-reference"))
        assert status == 0, "the uninterrupted training failed"
    reference = digests(root / "train-reference", files)
    return {"reference_seconds": round(seconds, 1), "runs": killed_runs("train", command, runs, seconds, files,
                                                                       reference, root, rng)}


def pretrain_section(root: Path, catalog: dict, runs: int, rng: random.Random) -> dict:
    def command(output: Path) -> list[str]:
        return mxt("pretrain", "--input", str(catalog["train"]), "--output", str(output), "--config",
                   str(root / "config.yaml"), "--steps", "30", "--checkpoint-every", "4", "--vocab-size", "600")

    # the generator folder; pretrain.json (its summary) holds wall-clock times and is left out
    files = ("model.safetensors", "config.json", "generation_config.json", "tokenizer*.json")
    status, seconds = run(command(root / "pretrain-reference"))
    assert status == 0, "the uninterrupted pretraining failed"
    reference = digests(root / "pretrain-reference", files)
    return {"reference_seconds": round(seconds, 1),
            "runs": killed_runs("pretrain", command, runs, seconds, files, reference, root, rng)}


def extract_section(root: Path, model: Path, catalog: Path, runs: int, rng: random.Random) -> dict:
    def command(output: Path) -> list[str]:
        return mxt("extract", "--model", str(model), "--input", str(catalog), "--output", str(output),
                   "--batch-size", "8", "--resume")

    status, seconds = run(command(root / "extract-reference.jsonl"))
    assert status in EXTRACT_FINISHED, f"the uninterrupted extraction failed (exit {status})"
    reference = (root / "extract-reference.jsonl").read_bytes()
    pairs = [(r["product_id"], r["attribute"]) for r in map(json.loads, reference.decode().splitlines())]
    results = []
    for index in range(runs):
        output = root / f"extract-{index}.jsonl"
        env, kill_when = ENV, None
        if index % 3 == 2:
            env = {**ENV, "MXT_CRASH_AT": f"extract.row:{rng.randint(1, len(pairs) - 1)}"}
            how = env["MXT_CRASH_AT"]
        else:  # a random moment while the output grows (the load of a shared machine makes times useless)
            size = rng.randint(1, len(reference) - 1)
            how = f"SIGKILL once the output reached {size} bytes"

            def kill_when(output=output, size=size) -> bool:
                return output.exists() and output.stat().st_size >= size
        first, _ = run(command(output), env=env, kill_when=kill_when)
        kept = len(output.read_bytes().splitlines()) if output.exists() else 0
        final, _ = run(command(output))
        rows = [json.loads(line) for line in output.read_text().splitlines()]
        got = [(r["product_id"], r["attribute"]) for r in rows]
        result = {"run": index, "kill": how, "first_status": first, "rows_before_resume": kept,
                  "final_status": final, "each_pair_once": sorted(got) == sorted(pairs) and len(set(got)) == len(got),
                  "identical": output.read_bytes() == reference}
        print(f"  extract {index}: {how}, first exit {first}, {kept} rows kept, identical={result['identical']}",
              flush=True)
        results.append(result)
    return {"reference_seconds": round(seconds, 1), "pairs": len(pairs), "runs": results}


def fuzz_section(root: Path, model: Path, catalog: dict, size: int, seed: int) -> dict:
    mixed, clean, kinds = corrupt_catalog(root / "fuzz", catalog["test"], size, seed)
    for name in ("mixed", "clean"):
        path = root / "fuzz" / f"{name}.jsonl"
        status, _ = run(mxt("extract", "--model", str(model), "--input", str(path), "--output",
                            str(root / "fuzz" / f"{name}-out.jsonl"), "--attributes", "color,pattern",
                            "--overwrite", "--reader", "products", "--images", str(Path(catalog["test"]).parent)))
        assert status in EXTRACT_FINISHED, f"mxt extract failed on the {name} fuzz catalog (exit {status})"
    out = [json.loads(x) for x in (root / "fuzz" / "mixed-out.jsonl").read_text().splitlines()]
    good = {(r["product_id"], r["attribute"]): r
            for r in map(json.loads, (root / "fuzz" / "clean-out.jsonl").read_text().splitlines())}
    same = [r for r in out if (r["product_id"], r["attribute"]) in good]
    answers_equal = sum(r == good[(r["product_id"], r["attribute"])] for r in same)
    values_equal = sum(r["value"] == good[(r["product_id"], r["attribute"])]["value"] for r in same)
    return {"records": mixed, "good_records": clean, "kinds": kinds, "rows": len(out), "expected_rows": 2 * mixed,
            "error_rows": sum(r["error"] is not None for r in out), "good_rows": len(same),
            "good_rows_identical": answers_equal, "good_values_equal": values_equal}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=10, help="killed runs of mxt train and of mxt extract")
    parser.add_argument("--pretrain-runs", type=int, default=5)
    parser.add_argument("--fuzz", type=int, default=1000, help="records in the corruption fuzz")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="2 kills each, 200 fuzz records")
    parser.add_argument("--sections", default="train,ssrf,extract,fuzz,pretrain")
    parser.add_argument("--train-reference-seconds", type=float,
                        help="reuse <output>/train-reference from an earlier invocation, which took this long")
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.pretrain_runs, args.fuzz = 2, 1, 200
    root = args.output
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    catalog = write_catalog(root / "catalog", train_size=40, test_size=120, image_size=48, seed=args.seed)
    sections = args.sections.split(",")
    results: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    started = time.perf_counter()
    if "train" in sections or not (root / "train-reference").is_dir():
        print("train:", flush=True)
        results["train"] = train_section(root, catalog, args.runs, rng, args.train_reference_seconds)
    model = root / "train-reference"
    for name in sections:
        if name == "ssrf":
            print("ssrf:", flush=True)
            results["ssrf"] = ssrf_probe(root / "ssrf", model, mxt)
            print("  ", json.dumps(results["ssrf"]), flush=True)
        elif name == "pretrain":
            print("pretrain:", flush=True)
            results["pretrain"] = pretrain_section(root, catalog, args.pretrain_runs, rng)
        elif name == "extract":
            print("extract:", flush=True)
            results["extract"] = extract_section(root, model, catalog["test"], args.runs, rng)
        elif name == "fuzz":
            print("fuzz:", flush=True)
            results["fuzz"] = fuzz_section(root, model, catalog, args.fuzz, args.seed)
            print("  ", json.dumps({k: v for k, v in results["fuzz"].items() if k != "kinds"}), flush=True)
    results["seconds"] = round(time.perf_counter() - started, 1)
    (root / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    for name in ("train", "pretrain", "extract"):
        if name in results:
            runs = results[name]["runs"]
            print(f"{name}: {sum(r['identical'] for r in runs)} of {len(runs)} identical to the uninterrupted "
                  f"run; leftovers in {sum(bool(r.get('leftovers')) for r in runs)}")


if __name__ == "__main__":
    main()
