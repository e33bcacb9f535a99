"""What the value priors share: the softmax regression they fit and the smoothing of what they say.

Both priors (:mod:`mxt_sdk.inference.image_prior` on the photo's pooled vector, :mod:`mxt_sdk.inference.text_prior`
on the product's words) are softmax regressions over a pair's training values, and both hand the known-value
chooser a log-probability per candidate that never rules a candidate out.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

__all__ = ["SMOOTHING", "smoothed_log_probs", "softmax_regression"]

#: share of each candidate's prior probability that is uniform over the candidates
SMOOTHING = 0.1


def smoothed_log_probs(probabilities: Mapping[str, float], candidates: Sequence[str]) -> list[float]:
    """Log-probability of each candidate: the regression's ``probabilities`` (value -> probability)
    renormalised over the candidates it knows, mixed with a uniform share :data:`SMOOTHING`. A candidate
    the regression never had gets only its uniform share."""
    known = [probabilities.get(c, 0.0) for c in candidates]
    total = sum(known)
    uniform = 1 / max(len(candidates), 1)
    return [math.log((1 - SMOOTHING) * (p / total if total > 0 else uniform) + SMOOTHING * uniform) for p in known]


def softmax_regression(x: torch.Tensor, targets: torch.Tensor, classes: int, l2: float,
                       max_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights [dims, classes] and bias [classes] minimising mean cross-entropy + ``l2`` * |W|^2, by L-BFGS
    from zeros (one class: zeros, the class with certainty)."""
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
