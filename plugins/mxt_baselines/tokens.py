"""Token-sequence helpers of the baselines: answers out of ``labels``, sub-sequence search, and
writing chosen answers as a :class:`~mxt_sdk.GreedyOutput`."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from mxt_sdk import GreedyOutput

IGNORE_INDEX = -100


def answer_sequences(labels: torch.Tensor, eos_id: int, pad_id: int) -> list[tuple[int, ...]]:
    """Each row's answer ids: ``-100`` and padding dropped, cut at the first EOS (``()`` if empty)."""
    answers = []
    for row in labels.tolist():
        ids = [i for i in row if i not in (IGNORE_INDEX, pad_id)]
        answers.append(tuple(ids[: ids.index(eos_id)] if eos_id in ids else ids))
    return answers


def find_subsequence(sequence: Sequence[int], pattern: Sequence[int], start: int = 0,
                     stop: int | None = None) -> int:
    """First index ``i`` in ``[start, stop)`` with ``sequence[i:i+len(pattern)] == pattern`` lying
    wholly before ``stop``; -1 if none (or ``pattern`` is empty)."""
    stop = len(sequence) if stop is None else stop
    width = len(pattern)
    if width == 0:
        return -1
    pattern = list(pattern)
    for i in range(start, stop - width + 1):
        if list(sequence[i:i + width]) == pattern:
            return i
    return -1


def answers_output(answers: Sequence[Sequence[int]], logprobs: torch.Tensor, eos_id: int, pad_id: int
                   ) -> GreedyOutput:
    """Answers as generated ids (each followed by EOS, then padding) with the whole answer's
    log-probability ``logprobs [B]`` on its first token and 0.0 on the others."""
    width = max(len(answer) for answer in answers) + 1
    ids = torch.full((len(answers), width), pad_id, dtype=torch.long, device=logprobs.device)
    for row, answer in enumerate(answers):
        ids[row, : len(answer)] = torch.as_tensor(list(answer), dtype=torch.long)
        ids[row, len(answer)] = eos_id
    token_logprobs = torch.zeros((len(answers), width), dtype=torch.float32, device=logprobs.device)
    token_logprobs[:, 0] = logprobs.float()
    return GreedyOutput(ids, token_logprobs)
