"""An image prior over each pair's known values: late fusion for the values only the photo shows.

A generator trained from scratch on a few hundred photos per catalog learns less from frozen image
features than a linear classifier on the same features does (ImplicitAVE: benchmarks/README.md). The
prior is that classifier, kept beside the model: for each (product type, attribute) pair with at
most ``max_values`` known values, a softmax regression with an L2 penalty from the image's pooled
vector (the global encoder's, standardised on the training images and projected onto their first
``dims`` principal directions) to the pair's training values, fitted by L-BFGS after training.

When :class:`~mxt_sdk.inference.known_values.KnownValueChooser` scores a pair's known values for a
product with an image, it adds ``weight`` times the prior's log-probability (smoothed with a uniform
share ``SMOOTHING`` so that no candidate is ruled out) to each candidate's generator log-probability:
a product of experts over the candidate list. Products without an image, pairs without a prior and
free answers are untouched.

Everything here is a function of the training vectors and labels: pairs are fitted in sorted order
from zero weights with a deterministic optimiser, and the projection comes from an eigendecomposition
of the training covariance, so the same training data gives the same file.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors.torch import load_file, save_file

from mxt_sdk import progress
from mxt_sdk.storage import write_json

__all__ = ["ImageValuePrior", "ImagePriorExample", "SMOOTHING", "WEIGHTS_FILE", "INDEX_FILE"]

WEIGHTS_FILE = "image_prior.safetensors"
INDEX_FILE = "image_prior.json"
VERSION = 1
#: share of each candidate's prior probability that is uniform over the candidates
SMOOTHING = 0.1


class ImagePriorExample(NamedTuple):
    """One training example the prior learns from: its pair key, its (cleaned) answer, the row of its
    image's vector."""

    pair: str
    value: str
    row: int


class _Pair(NamedTuple):
    values: list[str]
    weight: torch.Tensor  # [dims, len(values)]
    bias: torch.Tensor  # [len(values)]


class ImageValuePrior:
    """Per-pair softmax regressions over projected image vectors; see the module docstring."""

    def __init__(self, mean: torch.Tensor, projection: torch.Tensor, pairs: dict[str, _Pair], l2: float):
        self.mean, self.projection, self.pairs, self.l2 = mean, projection, pairs, l2

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, vector_chunks: Callable[[], Iterable[torch.Tensor]], examples: Iterable[ImagePriorExample], *,
            max_values: int = 50, dims: int = 256, l2: float = 0.01, max_iter: int = 100) -> "ImageValuePrior":
        """Fit one regression per pair of ``examples`` whose distinct values number 2 to ``max_values``
        (a pair with one value gets it with certainty; larger pairs get none). ``examples`` is iterated
        once, after the vectors have been read.

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

        by_pair: dict[str, list[ImagePriorExample]] = defaultdict(list)
        for example in examples:
            by_pair[example.pair].append(example)
        pairs: dict[str, _Pair] = {}
        for key in progress.bar(iterable=sorted(by_pair), desc="Fitting the image prior", unit="pair"):
            members = by_pair[key]
            values = sorted({example.value for example in members})
            if len(values) > max_values:
                continue
            rows = torch.tensor([example.row for example in members])
            targets = torch.tensor([values.index(example.value) for example in members])
            pairs[key] = _Pair(values, *_softmax_regression(projected[rows], targets, len(values), l2, max_iter))
        return cls(mean.float(), projection, pairs, l2)

    # ------------------------------------------------------------------ use
    def log_probs(self, pair: str, vector: torch.Tensor, candidates: Sequence[str]) -> list[float] | None:
        """Smoothed log-probability of each candidate for an image with pooled ``vector``; None when
        the pair has no prior. A candidate the pair never had gets only its uniform share."""
        fitted = self.pairs.get(pair)
        if fitted is None:
            return None
        logits = ((vector.float() - self.mean) @ self.projection) @ fitted.weight + fitted.bias
        probabilities = dict(zip(fitted.values, torch.softmax(logits, -1).tolist()))
        uniform = SMOOTHING / max(len(candidates), 1)
        return [math.log((1 - SMOOTHING) * probabilities.get(c, 0.0) + uniform) for c in candidates]

    # ------------------------------------------------------------------ files
    def save(self, directory: str | Path) -> None:
        """Write ``image_prior.safetensors`` (mean, projection, every pair's weights side by side) and
        ``image_prior.json`` (each pair's values and column offset) into ``directory``."""
        directory = Path(directory)
        index, weights, biases, offset = {}, [], [], 0
        for key in sorted(self.pairs):
            fitted = self.pairs[key]
            index[key] = {"offset": offset, "values": fitted.values}
            weights.append(fitted.weight)
            biases.append(fitted.bias)
            offset += len(fitted.values)
        dims = self.projection.size(1)
        tensors = {"mean": self.mean, "projection": self.projection.contiguous(),
                   "weight": torch.cat(weights, 1) if weights else torch.zeros(dims, 0),
                   "bias": torch.cat(biases) if biases else torch.zeros(0)}
        save_file({name: t.contiguous() for name, t in tensors.items()}, str(directory / WEIGHTS_FILE))
        write_json(directory / INDEX_FILE, {"version": VERSION, "l2": self.l2, "pairs": index})

    @classmethod
    def load(cls, directory: str | Path) -> "ImageValuePrior | None":
        """The prior saved in ``directory``, or None when there is none."""
        directory = Path(directory)
        if not (directory / INDEX_FILE).exists():
            return None
        index = json.loads((directory / INDEX_FILE).read_text(encoding="utf-8"))
        if index.get("version") != VERSION:
            raise ValueError(f"{directory / INDEX_FILE}: image prior version {index.get('version')!r}, "
                             f"this mxt_sdk reads version {VERSION}")
        tensors = load_file(str(directory / WEIGHTS_FILE))
        pairs = {}
        for key, entry in index["pairs"].items():
            start, end = entry["offset"], entry["offset"] + len(entry["values"])
            pairs[key] = _Pair(entry["values"], tensors["weight"][:, start:end], tensors["bias"][start:end])
        return cls(tensors["mean"], tensors["projection"], pairs, index["l2"])


def _softmax_regression(x: torch.Tensor, targets: torch.Tensor, classes: int, l2: float,
                        max_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights [dims, classes] and bias [classes] minimising mean cross-entropy + ``l2`` * |W|^2."""
    weight = torch.zeros(x.size(1), classes, requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    if classes > 1:
        optimizer = torch.optim.LBFGS([weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(x @ weight + bias, targets) + l2 * weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
    return weight.detach(), bias.detach()
