"""The resume guard: a training folder remembers what it was trained with, so that re-running
``mxt train`` with another config or other data never silently continues the old run.

``<run folder>/run.json`` (:mod:`mxt_sdk.training.layout`) holds a SHA-256 of the config (model section, and the training settings that
shape the weights) and of the training and validation products. A run that finds checkpoints
compares them and stops with :class:`ResumeMismatchError` on a difference, unless forced.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mxt_sdk.errors import MXTError
from mxt_sdk.storage import read_json, write_json
from mxt_sdk.training import checkpoints
from mxt_sdk.types import Product

log = logging.getLogger("mxt_sdk.training")

RUN_FILE = "run.json"
#: training settings a resumed run may change: when to log, evaluate, save or stop (a longer
#: ``max_steps`` / ``epochs`` is how a finished run is trained further)
BOOKKEEPING = frozenset({"keep_checkpoints", "checkpoint_every", "checkpoint_every_minutes", "log_every",
                         "num_workers", "max_train_seconds", "max_steps", "epochs", "eval_every",
                         "early_stopping_patience", "device"})


class ResumeMismatchError(MXTError):
    """A training folder holds a run made with another config or other data."""


def _sha(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


class DataDigest:
    """The data half of :func:`fingerprint`, fed one product at a time (train first, then val), so a
    catalog can be fingerprinted while it streams past."""

    def __init__(self):
        self._digest = hashlib.sha256()

    def add(self, split: str, product: Product) -> bytes:
        """Feed one product; returns its entry, for :meth:`add_entry` of another digest (hashing a
        product is most of the cost of staging it, so it is done once)."""
        entry = f"{split}\t{_sha(product.model_dump(mode='json'))}\n".encode()
        self._digest.update(entry)
        return entry

    def add_entry(self, entry: bytes) -> None:
        """Feed an entry that :meth:`add` returned."""
        self._digest.update(entry)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def config_fingerprint(config) -> str:
    """The config half of :func:`fingerprint`: the model section and the training settings that shape
    the weights (not :data:`BOOKKEEPING`)."""
    training = {k: v for k, v in config.training.model_dump(mode="json").items() if k not in BOOKKEEPING}
    return _sha({"model": config.model.model_dump(mode="json"), "training": training})


def fingerprint(config, train: Iterable[Product], val: Iterable[Product] | None) -> dict[str, str]:
    """``{"config": sha256, "data": sha256}`` of what shapes the trained weights."""
    digest = DataDigest()
    for split, products in (("train", train), ("val", val or [])):
        for product in products:
            digest.add(split, product)
    return {"config": config_fingerprint(config), "data": digest.hexdigest()}


def check_resume(output: Path, current: dict[str, str], force: bool = False, record: bool = True) -> None:
    """Record ``current`` in ``output/run.json`` (``output``: the run folder; ``record=False``: only check, as
    every process but the main one of a distributed run does); if the folder already holds checkpoints of a
    run with another fingerprint, raise :class:`ResumeMismatchError` (or, with ``force``, warn and go on)."""
    output, path = Path(output), Path(output) / RUN_FILE
    if checkpoints.latest_checkpoint(output) is not None and path.is_file():
        try:
            recorded = read_json(path)["fingerprint"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ResumeMismatchError(f"{path} is unreadable ({exc}); move the folder away or pass "
                                      "--force-resume") from None
        differs = [part for part in ("config", "data") if recorded.get(part) != current[part]]
        if differs:
            what = " and ".join({"config": "another config", "data": "other training data"}[d] for d in differs)
            message = (f"{output} holds a training run made with {what} (fingerprints in {path}); resuming "
                       "it would mix two runs. Train into a new --output (or --run-dir) folder, or pass --force-resume "
                       "(Python: fit(..., force_resume=True)) to continue it anyway.")
            if not force:
                raise ResumeMismatchError(message)
            log.warning("Forced resume: %s", message)
    if record:
        write_json(path, {"fingerprint": current})
