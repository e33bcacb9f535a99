"""The resume guard: a training folder remembers what it was trained with, so that re-running
``mxt train`` with another config or other data never silently continues the old run.

``<run folder>/run.json`` (:mod:`mxt_sdk.training.layout`) holds a SHA-256 of the config (model section, and the training settings that
shape the weights) and of the training and validation products (each product's canonical JSON, as
staged, hashed once: :class:`DataDigest`), with the scheme of the latter. A run that finds checkpoints
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
#: how the data fingerprint is taken: 2 hashes each product's canonical JSON once (1, before it, hashed
#: a SHA-256 of each product's key-sorted JSON); run folders record it beside the fingerprint
DATA_SCHEME = 2
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
    """The SHA-256 of one split's products, fed one at a time as their canonical JSON
    (``Product.model_dump_json()``, the text that staging writes anyway), so a catalog is fingerprinted
    while it streams past at the cost of hashing its bytes once. Any change to a product's fields,
    values, attribute order, or the products' order changes it."""

    def __init__(self):
        self._digest = hashlib.sha256()

    def add(self, product_json: str) -> None:
        self._digest.update(product_json.encode("utf-8"))
        self._digest.update(b"\n")  # JSON text holds no raw newline: one product per line

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def data_fingerprint(splits: dict[str, str | None]) -> str:
    """The data half of :func:`fingerprint` from each split's :class:`DataDigest` (``None``: no such split)."""
    return _sha({"scheme": DATA_SCHEME, "splits": splits})


def config_fingerprint(config) -> str:
    """The config half of :func:`fingerprint`: the model section and the training settings that shape
    the weights (not :data:`BOOKKEEPING`)."""
    training = {k: v for k, v in config.training.model_dump(mode="json").items() if k not in BOOKKEEPING}
    return _sha({"model": config.model.model_dump(mode="json"), "training": training})


def fingerprint(config, train: Iterable[Product], val: Iterable[Product] | None) -> dict[str, Any]:
    """``{"config": sha256, "data": sha256, "data_scheme": n}`` of what shapes the trained weights
    (what :func:`mxt_sdk.training.staging.stage_data` computes while staging)."""
    digests: dict[str, str | None] = {}
    for split, products in (("train", train), ("val", val)):
        if products is not None:
            digest = DataDigest()
            for product in products:
                digest.add(product.model_dump_json())
            digests[split] = digest.hexdigest()
        else:
            digests[split] = None
    return {"config": config_fingerprint(config), "data": data_fingerprint(digests), "data_scheme": DATA_SCHEME}


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
            data = "other training data"
            if "data" in differs and recorded.get("data_scheme") != current.get("data_scheme"):
                data = ("training data fingerprinted by an earlier version of mxt_sdk (the fingerprints cannot "
                        "be compared: if the data is unchanged, --force-resume is safe)")
            what = " and ".join({"config": "another config", "data": data}[d] for d in differs)
            message = (f"{output} holds a training run made with {what} (fingerprints in {path}); resuming "
                       "it would mix two runs. Train into a new --output (or --run-dir) folder, or pass --force-resume "
                       "(Python: fit(..., force_resume=True)) to continue it anyway.")
            if not force:
                raise ResumeMismatchError(message)
            log.warning("Forced resume: %s", message)
    if record:
        write_json(path, {"fingerprint": current})
