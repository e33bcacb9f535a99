"""Where a training run writes: the model folder (what extraction needs) and the run folder (the rest).

The model folder holds only ``config.json``, ``model.safetensors``, ``tokenizer/``, ``metadata.json``,
``normalizers.json``, ``thresholds.json`` and ``canonicalizer/``: the folder to ship. The run folder
holds the checkpoints (``checkpoints/``), the data caches (``cache/``), ``metrics.jsonl``,
``train.log``, ``cleaning.json`` and ``rejected.jsonl``; a re-run with the same run folder resumes.
By default it sits beside the model folder, named after it: ``my-model`` -> ``my-model.run``.
"""
from __future__ import annotations

from pathlib import Path

RUN_SUFFIX = ".run"


def default_run_dir(model_dir: str | Path) -> Path:
    """The run folder of ``model_dir`` when none is given: its sibling ``<name>.run``."""
    model_dir = Path(model_dir).resolve()
    return model_dir.with_name(model_dir.name + RUN_SUFFIX)
