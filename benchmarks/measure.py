"""Measuring tools shared by the benchmarks: machine description, peak memory of a phase, matmul peak."""
from __future__ import annotations

import json
import os
import platform
import resource
import threading
import time
from pathlib import Path
from typing import Any

import torch


def machine() -> dict[str, Any]:
    """CPU model, core count, memory and library versions of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        import transformers
        import timm

        info.update(transformers=transformers.__version__, timm=timm.__version__)
    except ImportError:
        pass
    return info


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="utf-8") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the process-wide high-water mark is the best we have
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """Highest resident set size of this process while the ``with`` block runs (sampled every 5 ms)."""

    def __init__(self, interval: float = 0.005):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> "PeakMemory":
        self.peak = _rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())

    @property
    def gib(self) -> float:
        return self.peak / 2**30


def matmul_gflops(dtype: torch.dtype = torch.float32, size: int = 2048, repeats: int = 5) -> float:
    """Measured GFLOP/s of a square matmul on this machine's CPU (the practical compute ceiling)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def apply_decode_options(extractor, items: list[str]) -> None:
    """Apply ``OPTION=VALUE`` items (YAML values) to a built or loaded extractor, for evaluation: an
    ``extraction`` setting (``choose_among_known=50``) goes to its config, anything else must be a
    generator option (``whole_words=true``). Raises SystemExit naming an unknown option."""
    import yaml

    options = extractor.model.generator.options
    for item in items:
        name, _, value = item.partition("=")
        if name in type(extractor.config.extraction).model_fields:
            setattr(extractor.config.extraction, name, yaml.safe_load(value))
        elif name in type(options).model_fields:
            setattr(options, name, yaml.safe_load(value))
        else:
            raise SystemExit(f"--decode {item}: neither an extraction setting nor a generator option")


def refit_text_prior(extractor, run: Path, l2: float) -> None:
    """Fit a text prior (``training.text_prior`` at L2 weight ``l2``) on the training examples cached in the
    run folder ``run`` and give it to ``extractor`` (in memory). This is the prior a training run with
    ``training.text_prior`` would have fitted on the same examples: it is fitted after the last step, by the
    same function, and changes nothing before it."""
    from mxt_sdk.config import TextPriorConfig
    from mxt_sdk.training.example_cache import ExampleShards
    from mxt_sdk.training.text_prior_fit import fit_text_prior

    paths = tuple(sorted((run / "cache" / "data").glob("examples-*/train-*.arrow")))
    if not paths:
        raise SystemExit(f"--refit-text-prior: no training examples cached under {run}/cache/data")
    options = TextPriorConfig(l2=l2)
    extractor.text_prior = fit_text_prior(ExampleShards(paths, 0, run / "cache" / "data" / "products-train.arrow"),
                                          options, extractor.config.extraction.choose_among_known or 50)
    extractor.config.training.text_prior = options


def add_refit_span_prior_argument(parser) -> None:
    """``--refit-span-prior [OPTION=VALUE ...]`` of the benchmarks that can ``--reuse`` a trained model."""
    parser.add_argument("--refit-span-prior", nargs="*", metavar="OPTION=VALUE",
                        help="with --reuse: fit a span prior on <output>.run's staged training products first, at "
                             "training.span_prior's defaults or these options (e.g. learning_rate=0.05)")


def refit_span_prior(extractor, run: Path, options: list[str] | None = None) -> None:
    """Fit a span prior (``training.span_prior`` at its defaults, or ``options`` given as ``OPTION=VALUE``) on the
    training products staged in the run folder ``run`` and give it to ``extractor`` (in memory): the prior a
    training run with that ``training.span_prior`` would have fitted after its last step, by the same function."""
    from mxt_sdk.config import SpanPriorConfig
    from mxt_sdk.training.priors import fit_span_prior

    products = run / "cache" / "data" / "products-train.arrow"
    if not products.is_file():
        raise SystemExit(f"--refit-span-prior: no staged training products at {products}")
    pairs = [option.split("=", 1) for option in options or []]
    if any(len(pair) != 2 for pair in pairs):
        raise SystemExit(f"--refit-span-prior: options are OPTION=VALUE, got {options}")
    settings = SpanPriorConfig(**dict(pairs))
    extractor.span_prior = fit_span_prior(products, settings, extractor.config.training.seed)
    extractor.config.training.span_prior = settings


def report(result: dict[str, Any], output: Path | None) -> None:
    """Print ``result`` as JSON and, given ``output``, write it there too (folders made)."""
    print(json.dumps(result, indent=2))
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


#: the configuration users get by default (README: `mxt train --config mxt-cpu`)
SHIPPED_CONFIG = "mxt-cpu"


def train_on_synthetic(folder: Path, config: Any = SHIPPED_CONFIG, steps: int = 100, train_size: int = 600,
                       test_size: int = 64, seed: int = 0) -> tuple[Path, dict[str, Path]]:
    """Train ``config`` (a built-in name, YAML path or ``MXTConfig``) for ``steps`` steps on the synthetic catalog written under ``folder/catalog`` and
    save it to ``folder/model``, so extraction runs everything the config turns on: the known-value chooser
    and the span binding need the training metadata, the image prior its fit. Returns the model folder and
    the catalog's paths (``train``, ``test``; images beside them)."""
    from mxt_sdk import Extractor
    from mxt_sdk.experiments.synthetic import write_catalog

    catalog = write_catalog(folder / "catalog", train_size=train_size, test_size=test_size, seed=seed)
    Extractor.from_config(config).fit(catalog["train"], output_dir=folder / "model", run_dir=folder / "run",
                                      max_steps=steps)
    return folder / "model", catalog
