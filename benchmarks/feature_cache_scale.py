"""Feature cache at catalog scale: images/s and bytes per image of the cache build.

Builds the training feature cache (``mxt_sdk.training.feature_cache``) of the first ``--images``
distinct photos of a catalog in SDK product JSONL (default: the Myntra catalog) with mxt-cpu's
encoder (EfficientNet-Lite0, 224 px, frozen, one pass for both fusions), once per variant, into a
fresh folder each time, and prints one table:

* ``folded`` (mxt-cpu now: batch norms folded into the convolutions, ``mxt_timm.folding``) against
  ``unfolded`` (the network as trained), batch 32, the two taking turns twice;
* ``old layout``: the whole 7x7 map (mxt-cpu before ``grid: 3``): what the cache held before
  (float32 then: 256,001 bytes per image; float16 now);
* mxt-cpu now with 1 torch thread;
* where the time goes: decoding + resizing alone (``ImageLoader.load``, 1 and 2 threads) and the
  network alone (``encode_images`` on decoded pixels, fp32 channels-last folded and unfolded, and bf16
  autocast with its largest difference to fp32).

    python benchmarks/feature_cache_scale.py --images 300   # about 4 minutes on 2 busy cores
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from mxt_sdk import Extractor
from mxt_sdk.config import load_config
from mxt_sdk.images.batching import ImageLoader
from mxt_sdk.model.mxt import MXTModel
from mxt_sdk.model.numerics import channels_last, channels_last_pixels
from mxt_sdk.training.feature_cache import build_feature_cache

sys.path.insert(0, str(Path(__file__).parent))
from measure import machine, report  # noqa: E402

MYNTRA = Path(__file__).resolve().parents[2] / "shared" / "data" / "myntra"


def _references(data: Path, count: int) -> list[str]:
    """The first ``count`` distinct image references of ``data/train.jsonl``."""
    found: dict[str, None] = {}
    with open(data / "train.jsonl", encoding="utf-8") as handle:
        for line in handle:
            image = json.loads(line).get("image")
            if image:
                found[image] = None
            if len(found) >= count:
                break
    return list(found)


def _model(grid: int | None) -> MXTModel:
    """mxt-cpu's model, with its regional map pooled to ``grid`` (None: the whole map)."""
    config = copy.deepcopy(load_config("mxt-cpu"))
    options = config.model.regional_encoder.options
    if grid is None:
        options.pop("grid", None)
    else:
        options["grid"] = grid
    return Extractor(config, MXTModel(config.model)).model.eval()


def _fold(model: MXTModel, fold: bool) -> MXTModel:
    for encoder in model.encoders.values():
        encoder.fold_batch_norms = fold
    return model


def _timed(work: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def _build(model: MXTModel, loader: ImageLoader, references: list[str], batch_size: int,
           threads: int) -> dict[str, float]:
    """images/s and bytes per image of one cache build (``threads`` torch threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory() as folder:
            seconds, cache = _timed(lambda: build_feature_cache(model, references, loader, Path(folder),
                                                                batch_size=batch_size))
            return {"images_per_s": round(len(references) / seconds, 1), "bytes_per_image": round(cache.bytes_per_image)}
    finally:
        torch.set_num_threads(before)


def _decode_rate(loader: ImageLoader, references: list[str], threads: int, batch: int = 32) -> float:
    """images/s of decoding and preprocessing alone, on ``threads`` threads."""
    loader = copy.copy(loader)
    loader.decode_threads = threads
    seconds, _ = _timed(lambda: [loader.load(references[i:i + batch]) for i in range(0, len(references), batch)])
    return round(len(references) / seconds, 1)


@torch.no_grad()
def _network(model: MXTModel, loader: ImageLoader, references: list[str], batch: int = 32) -> dict[str, float]:
    """images/s of the network alone (fp32 channels-last, as the cache build runs it, unfolded and
    folded, and bf16 autocast) on pixels decoded beforehand, and bf16's largest difference to fp32
    relative to the largest fp32 feature."""
    channels_last(model)
    batches = [channels_last_pixels(loader.load(references[i:i + batch])[0]) for i in range(0, len(references), batch)]
    unfolded_seconds, _ = _timed(lambda: [_fold(model, False).encode_images(b).features for b in batches])
    fp32_seconds, fp32 = _timed(lambda: [_fold(model, True).encode_images(b).features for b in batches])

    def bf16():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return [model.encode_images(b).features for b in batches[:2]]
    bf16_seconds, low = _timed(bf16)
    worst = max(float((l[kind].float() - f[kind]).abs().max() / f[kind].abs().max())
                for l, f in zip(low, fp32) for kind in f)
    return {"fp32_unfolded_images_per_s": round(len(references) / unfolded_seconds, 1),
            "fp32_images_per_s": round(len(references) / fp32_seconds, 1),
            "bf16_images_per_s": round(sum(len(b.has_image) for b in batches[:2]) / bf16_seconds, 1),
            "bf16_largest_relative_difference": round(worst, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=MYNTRA, help="folder with train.jsonl and its images")
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--output", type=Path, help="also write the JSON result here")
    args = parser.parse_args()
    references = _references(args.data, args.images)
    threads = torch.get_num_threads()
    old, new = _model(None), _model(3)
    loader = ImageLoader(new.preprocessing(), args.data, 50_000_000)
    _build(new, loader, references[:32], 32, threads)  # warm-up: first calls, the files into the page cache
    rows = {}
    for turn in (1, 2):
        rows[f"grid 3, unfolded, turn {turn}"] = _build(_fold(new, False), loader, references, 32, threads)
        rows[f"grid 3, folded (mxt-cpu), turn {turn}"] = _build(_fold(new, True), loader, references, 32, threads)
    rows["old layout (7x7 map), folded"] = _build(old, loader, references, 32, threads)
    rows["grid 3, folded, 1 torch thread"] = _build(new, loader, references, 32, 1)
    for name, row in rows.items():
        print(f"{name:<36} {row['images_per_s']:>7} images/s {row['bytes_per_image']:>8} bytes/image")
    speedups = [rows[f"grid 3, folded (mxt-cpu), turn {t}"]["images_per_s"] / rows[f"grid 3, unfolded, turn {t}"]["images_per_s"]
                for t in (1, 2)]
    print("folded / unfolded cache build, per turn:", ", ".join(f"{r:.2f}x" for r in speedups))
    split = {"decode_images_per_s_1_thread": _decode_rate(loader, references, 1),
             "decode_images_per_s_2_threads": _decode_rate(loader, references, 2),
             **_network(new, loader, references[:128])}
    print("where the time goes:", json.dumps(split))
    report({"machine": machine(), "images": len(references), "builds": rows,
            "folded_speedup_per_turn": [round(r, 3) for r in speedups], "split": split}, args.output)


if __name__ == "__main__":
    main()
