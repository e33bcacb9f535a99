"""Peak memory of ``mxt extract`` against input size: it must be bounded by the batch, not the file.

Run from the repository root (not a test; about 5 minutes on 2 CPU cores)::

    python benchmarks/extract_memory.py --output benchmarks/results/extract_memory.json

Writes product files of 1,000 and 10,000 records (JPEG/PNG images of varied sizes, texts of varied
lengths), trains the configuration users get by default (``--config``, default ``mxt-cpu``: its known-value
chooser, span binding and image prior need a trained model's metadata) for ``--train-steps`` steps on the
synthetic catalog, runs ``mxt extract`` on each file in a fresh process, and reports each process's
peak resident memory (``VmHWM``) and the ratio 10k / 1k.
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import SHIPPED_CONFIG, machine, train_on_synthetic  # noqa: E402

WORDS = "red blue cotton linen soft slim fit crew neck striped floral pump heel leather suede mug ceramic".split()


def write_inputs(folder: Path, sizes: list[int], images: int, seed: int) -> dict[int, Path]:
    """One JSONL file per size; products share a pool of ``images`` pictures of varied sizes."""
    rng = random.Random(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    names = [f"images/i{index}.{'jpg' if index % 2 else 'png'}" for index in range(images)]
    for name in names:
        size = (rng.randint(80, 900), rng.randint(80, 900))
        Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3))).save(folder / name)
    paths = {}
    for count in sizes:
        path = folder / f"products-{count}.jsonl"
        with open(path, "w", encoding="utf-8") as handle:
            for index in range(count):
                words = [rng.choice(WORDS) for _ in range(rng.randint(3, 120))]
                record = {"id": f"p{index}", "product_type": rng.choice(["t-shirt", "shoe", "mug"]),
                          "title": " ".join(words[:6]), "description": " ".join(words[6:]),
                          "image": rng.choice(names)}
                handle.write(json.dumps(record) + "\n")
        paths[count] = path
    return paths


def peak_of(command: list[str]) -> dict[str, float]:
    """Run ``command``; its peak resident memory (from /proc VmHWM, sampled until it exits) and time."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak_kib = 0
    while process.poll() is None:
        try:
            with open(f"/proc/{process.pid}/status", encoding="utf-8") as handle:
                peak_kib = max(peak_kib, next(int(line.split()[1]) for line in handle if line.startswith("VmHWM")))
        except (OSError, StopIteration):
            pass
        time.sleep(0.05)
    output = process.stdout.read()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {process.returncode}:\n{output}")
    summary = json.loads(output[output.index("{"):])
    return {"peak_rss_mib": peak_kib / 1024, "seconds": time.perf_counter() - started, "rows": summary["rows"],
            "errors": summary["errors"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--attributes", default="color,material")
    parser.add_argument("--images", type=int, default=300, help="size of the shared image pool")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default=SHIPPED_CONFIG, help="configuration trained and measured")
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = {"command": " ".join(sys.argv), "machine": machine(), "config": args.config, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="mxt-memory-") as tmp:
        folder = Path(tmp)
        inputs = write_inputs(folder / "data", sizes, args.images, args.seed)
        model, _ = train_on_synthetic(folder / "trained", args.config, steps=args.train_steps)
        print(f"measuring {args.config} trained {args.train_steps} steps on the synthetic catalog", flush=True)
        for count, path in inputs.items():
            command = [sys.executable, "-m", "mxt_sdk.cli", "extract", "--model", str(model), "--input", str(path),
                       "--output", str(folder / f"out-{count}.jsonl"), "--attributes", args.attributes]
            run = peak_of(command)
            results["runs"][count] = run
            print(f"{count:>7} products: {run['rows']} rows ({run['errors']} errors) in {run['seconds']:.0f} s, "
                  f"peak RSS {run['peak_rss_mib']:.0f} MiB", flush=True)
    small, large = results["runs"][min(sizes)], results["runs"][max(sizes)]
    results["peak_ratio"] = large["peak_rss_mib"] / small["peak_rss_mib"]
    print(f"peak RSS {max(sizes)} / {min(sizes)} products: {results['peak_ratio']:.3f}")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
