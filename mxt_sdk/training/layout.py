"""Where a training run writes: the model folder (what extraction needs) and the run folder (the rest).

The model folder holds only ``config.json``, ``model.safetensors``, ``tokenizer/``, ``metadata.json``,
``normalizers.json``, ``thresholds.json`` and ``canonicalizer/``: the folder to ship. The run folder
holds the checkpoints (``checkpoints/``), the data caches (``cache/``), ``metrics.jsonl``,
``train.log``, ``summary.json``, ``cleaning.json`` and ``rejected.jsonl``; a re-run with the same
run folder resumes.
By default it sits beside the model folder, named after it: ``my-model`` -> ``my-model.run``.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RUN_SUFFIX = ".run"
METRICS_FILE, LOG_FILE, SUMMARY_FILE = "metrics.jsonl", "train.log", "summary.json"


def default_run_dir(model_dir: str | Path) -> Path:
    """The run folder of ``model_dir`` when none is given: its sibling ``<name>.run``."""
    model_dir = Path(model_dir).resolve()
    return model_dir.with_name(model_dir.name + RUN_SUFFIX)


@contextmanager
def run_log(run_dir: Path, is_main: bool) -> Iterator[None]:
    """Log mxt_sdk's INFO records to ``<run_dir>/train.log`` (only where ``is_main``) for the ``with``
    block; mxt_sdk's logger level is lowered to INFO only meanwhile, for the file, and restored after."""
    logger = logging.getLogger("mxt_sdk")
    previous, handler = logger.level, None
    if is_main:
        handler = logging.FileHandler(Path(run_dir) / LOG_FILE, encoding="utf-8")
        handler.setLevel(logging.INFO)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.setLevel(previous)
        if handler is not None:
            logger.removeHandler(handler)
            handler.close()
