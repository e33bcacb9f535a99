"""An image prior over each pair's known values: late fusion for the values only the photo shows.

A generator trained from scratch on a few hundred photos per catalog learns less from frozen image
features than a linear classifier on the same features does (ImplicitAVE: benchmarks/README.md). The
prior is that classifier, kept beside the model: a softmax regression with an L2 penalty from the
image's pooled vector (the global encoder's, standardised on the training images and projected onto
their first ``dims`` principal directions) to training values, fitted by L-BFGS after training. Each
regression serves a *group* of pairs: one (product type, attribute) pair, or every pair of one
attribute name when the examples carry that group (``ImagePriorExample.group``: a neckline looks the
same on a dress and on a top, and a catalog has few photos per pair). A group with more than
``max_values`` distinct values falls back to one regression per pair, and a pair with more than that
gets none. For a pair, the group's probabilities are renormalised over the pair's candidates.

When :class:`~mxt_sdk.inference.known_values.KnownValueChooser` scores a pair's known values for a
product with an image, it adds ``weight`` times the prior's log-probability (smoothed with a uniform
share ``SMOOTHING`` so that no candidate is ruled out) to each candidate's generator log-probability:
a product of experts over the candidate list. Products without an image, pairs without a prior and
free answers are untouched.

Everything here is a function of the training vectors and labels: groups are fitted in sorted order
from zero weights with a deterministic optimiser, and the projection comes from an eigendecomposition
of the training covariance, so the same training data gives the same file.
"""
from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import torch
from safetensors.torch import load_file, save_file

from mxt_sdk import progress
from mxt_sdk.inference.value_regression import SMOOTHING, smoothed_log_probs, softmax_regression
from mxt_sdk.storage import write_json

if TYPE_CHECKING:
    from mxt_sdk.model.mxt import MXTModel

__all__ = ["ImageValuePrior", "ImagePriorExample", "prior_applies", "SMOOTHING", "WEIGHTS_FILE", "INDEX_FILE"]

WEIGHTS_FILE = "image_prior.safetensors"
INDEX_FILE = "image_prior.json"
VERSION = 2  #: version 1 files (one regression per pair, no groups) still load


class ImagePriorExample(NamedTuple):
    """One training example the prior learns from: its pair key, its (cleaned) answer, the row of its
    image's vector, and the group whose regression it joins (None: its pair's own)."""

    pair: str
    value: str
    row: int
    group: str | None = None


class _Regression(NamedTuple):
    values: list[str]
    weight: torch.Tensor  # [dims, len(values)]
    bias: torch.Tensor  # [len(values)]


class ImageValuePrior:
    """Softmax regressions over projected image vectors, one per group of pairs; see the module docstring."""

    def __init__(self, mean: torch.Tensor, projection: torch.Tensor, groups: dict[str, _Regression],
                 pair_groups: dict[str, str], l2: float):
        self.mean, self.projection, self.l2 = mean, projection, l2
        self.groups = groups  #: group name -> its regression
        self.pair_groups = pair_groups  #: pair key -> the name of the group that answers it

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, vector_chunks: Callable[[], Iterable[torch.Tensor]], examples: Iterable[ImagePriorExample], *,
            max_values: int = 50, dims: int = 256, l2: float = 0.01, max_iter: int = 100) -> "ImageValuePrior":
        """Fit one regression per group of ``examples`` (see the module docstring) whose distinct values
        number at most ``max_values`` (one value: it with certainty). ``examples`` is iterated once,
        after the vectors have been read.

        ``vector_chunks()`` yields the image vectors in row order, a chunk at a time (``ImagePriorExample.row``
        indexes them); it is called twice: once for the statistics (mean, correlations: memory ``D^2``),
        once to project every vector onto the ``dims`` leading principal directions of the standardised
        vectors (memory ``dims`` floats per image). Each direction is then scaled to unit variance so one
        L2 weight suits all of them."""
        count, total, outer = 0, 0.0, 0.0
        for chunk in vector_chunks():
            chunk = chunk.double()
            count, total, outer = count + len(chunk), total + chunk.sum(0), outer + chunk.T @ chunk
        if count == 0:
            raise ValueError("the image prior needs at least one training image")
        mean = total / count
        covariance = (outer - count * torch.outer(mean, mean)) / max(count - 1, 1)
        std = covariance.diagonal().clamp_min(0).sqrt().clamp_min(1e-6)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance / torch.outer(std, std))  # ascending
        keep = eigenvectors[:, torch.argsort(eigenvalues, descending=True)[:min(dims, len(mean))]]
        keep = keep * torch.where(keep.sum(0) < 0, -1.0, 1.0)  # a fixed sign per direction
        projection = keep / std[:, None]  # (x - mean) @ projection: the standardised x on those directions
        projected = torch.cat([(chunk.double() - mean) @ projection for chunk in vector_chunks()])
        scale = projected.std(0).clamp_min(1e-6) if count > 1 else torch.ones(projected.size(1), dtype=torch.double)
        projection, projected = (projection / scale).float(), (projected / scale).float()

        groups: dict[str, _Regression] = {}
        pair_groups: dict[str, str] = {}
        units = _units(examples, max_values)
        for name in progress.bar(iterable=sorted(units), desc="Fitting the image prior", unit="group"):
            members = units[name]
            values = sorted({example.value for example in members})
            rows = torch.tensor([example.row for example in members])
            targets = torch.tensor([values.index(example.value) for example in members])
            groups[name] = _Regression(values, *softmax_regression(projected[rows], targets, len(values), l2, max_iter))
            pair_groups.update((example.pair, name) for example in members)
        return cls(mean.float(), projection, groups, pair_groups, l2)

    # ------------------------------------------------------------------ use
    def log_probs(self, pair: str, vector: torch.Tensor, candidates: Sequence[str]) -> list[float] | None:
        """Smoothed log-probability of each candidate for an image with pooled ``vector`` (the group's
        probabilities, :func:`~mxt_sdk.inference.value_regression.smoothed_log_probs`); None when the pair
        has no prior."""
        fitted = self.groups.get(self.pair_groups.get(pair, ""))
        if fitted is None:
            return None
        logits = ((vector.float() - self.mean) @ self.projection) @ fitted.weight + fitted.bias
        return smoothed_log_probs(dict(zip(fitted.values, torch.softmax(logits, -1).tolist())), candidates)

    # ------------------------------------------------------------------ files
    def save(self, directory: str | Path) -> None:
        """Write ``image_prior.safetensors`` (mean, projection, every group's weights side by side) and
        ``image_prior.json`` (each group's values and column offset, each pair's group) into ``directory``."""
        directory = Path(directory)
        index, weights, biases, offset = {}, [], [], 0
        for name in sorted(self.groups):
            fitted = self.groups[name]
            index[name] = {"offset": offset, "values": fitted.values}
            weights.append(fitted.weight)
            biases.append(fitted.bias)
            offset += len(fitted.values)
        dims = self.projection.size(1)
        tensors = {"mean": self.mean, "projection": self.projection.contiguous(),
                   "weight": torch.cat(weights, 1) if weights else torch.zeros(dims, 0),
                   "bias": torch.cat(biases) if biases else torch.zeros(0)}
        save_file({name: t.contiguous() for name, t in tensors.items()}, str(directory / WEIGHTS_FILE))
        write_json(directory / INDEX_FILE, {"version": VERSION, "l2": self.l2, "groups": index,
                                            "pairs": dict(sorted(self.pair_groups.items()))})

    @classmethod
    def load(cls, directory: str | Path) -> "ImageValuePrior | None":
        """The prior saved in ``directory`` (version 1 or 2), or None when there is none."""
        directory = Path(directory)
        if not (directory / INDEX_FILE).exists():
            return None
        index = json.loads((directory / INDEX_FILE).read_text(encoding="utf-8"))
        if index.get("version") not in (1, VERSION):
            raise ValueError(f"{directory / INDEX_FILE}: image prior version {index.get('version')!r}, "
                             f"this mxt_sdk reads versions 1 and {VERSION}")
        entries = index["pairs"] if index["version"] == 1 else index["groups"]  # version 1: one group per pair
        pair_groups = {key: key for key in entries} if index["version"] == 1 else index["pairs"]
        tensors = load_file(str(directory / WEIGHTS_FILE))
        groups = {}
        for name, entry in entries.items():
            start, end = entry["offset"], entry["offset"] + len(entry["values"])
            groups[name] = _Regression(entry["values"], tensors["weight"][:, start:end], tensors["bias"][start:end])
        return cls(tensors["mean"], tensors["projection"], groups, pair_groups, index["l2"])


def prior_applies(model: MXTModel, image_prior: ImageValuePrior | None) -> bool:
    """Whether extraction can join ``image_prior`` to the scores of known values (at whatever weight): there
    is a fitted prior, the model reads images and its generator scores given answers."""
    return image_prior is not None and model.uses_images and model.generator.scores_answers


def _units(examples: Iterable[ImagePriorExample], max_values: int) -> dict[str, list[ImagePriorExample]]:
    """The examples of each regression to fit, by its name: a group's (``group:<name>``) when it has at
    most ``max_values`` values, else each of its pairs' (``pair:<key>``) that has at most that many."""
    def small(members: list[ImagePriorExample]) -> bool:
        return len({example.value for example in members}) <= max_values

    units: dict[str, list[ImagePriorExample]] = {}
    for name, members in _grouped(examples, lambda e: f"pair:{e.pair}" if e.group is None else f"group:{e.group}"):
        if small(members):
            units[name] = members
        elif name.startswith("group:"):
            units.update((key, pair_members) for key, pair_members in _grouped(members, lambda e: f"pair:{e.pair}")
                         if small(pair_members))
    return units


def _grouped(examples: Iterable[ImagePriorExample], key: Callable[[ImagePriorExample], str]
             ) -> Iterable[tuple[str, list[ImagePriorExample]]]:
    """``examples`` by ``key``, in first-seen order."""
    by_key: dict[str, list[ImagePriorExample]] = defaultdict(list)
    for example in examples:
        by_key[key(example)].append(example)
    return by_key.items()
