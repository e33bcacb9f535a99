"""Token-sequence helpers of the baselines: answers out of ``labels``, sub-sequence search, and
writing chosen answers as a :class:`~mxt_sdk.GreedyOutput`."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from mxt_sdk import GreedyOutput
from mxt_t5.tokenizers import find_subsequence  # noqa: F401  (the baselines' helpers, in one import)

IGNORE_INDEX = -100


def answer_sequences(labels: torch.Tensor, eos_id: int, pad_id: int) -> list[tuple[int, ...]]:
    """Each row's answer ids: ``-100`` and padding dropped, cut at the first EOS (``()`` if empty)."""
    answers = []
    for row in labels.tolist():
        ids = [i for i in row if i not in (IGNORE_INDEX, pad_id)]
        answers.append(tuple(ids[: ids.index(eos_id)] if eos_id in ids else ids))
    return answers


def find_text_span(pieces: Sequence[str], answer: str, start: int, stop: int) -> tuple[int, int] | None:
    """First token span ``(i, j)`` (inclusive) in ``[start, stop)`` whose text equals ``answer`` up to
    case and word-boundary marks (``▁``), starting and ending on token boundaries; None if none.

    Catalog labels are often spelled differently from the text ("light pink" for "Light Pink"), and
    their token ids then differ even though the words are the same.
    """
    target = " ".join(answer.casefold().split())
    if not target:
        return None
    text, owner, starts = "", [], set()
    for position in range(start, stop):
        piece = pieces[position].replace("\u2581", " ").casefold()
        starts.add(len(text) + (len(piece) - len(piece.lstrip(" "))))
        text += piece
        owner += [position] * len(piece)
    ends = {index + 1 for index in range(len(owner)) if index + 1 == len(owner) or owner[index + 1] != owner[index]}
    found = text.find(target)
    while found >= 0:
        if found in starts and found + len(target) in ends:
            return owner[found], owner[found + len(target) - 1]
        found = text.find(target, found + 1)
    return None


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
