"""Where each prompt token sits: learned embeddings of its part and of its word's number within the part.

T5 has no absolute positions: its attention sees only relative distances between tokens. A catalog title
is laid out by habit (the brand first, the size last, the colour after a comma), and an encoder trained
from scratch on a few thousand titles learns such habits slowly from relative distances to the
``context:`` marker, which move with the question's and the product type's lengths. It learns the
identities of the training values instead, and a value never seen in training is then not found where the
title puts it (benchmarks/HISTORY.md, "Copying on real catalogs"). With ``prompt_layout: W`` the encoder's
input embedding of each token gets two learned vectors added (both start at zero, so a new model starts as
one without them)::

    e_n = E[w_n] + P[part_n] + Q[min(word_n, W - 1)]

* ``part_n``: 0 for the question (before the context marker), then 1 for the product type, 2 for the title,
  3 for the description, one more after every separator (`` | ``) of the context, at most
  ``MAX_PARTS - 1``;
* ``word_n``: the number of the word the token belongs to within its part, from 1 (0 outside the context
  and for separators); a word is counted by :func:`~mxt_t5.words.word_pieces`.
"""
from __future__ import annotations

from typing import Any

import torch

from mxt_sdk.data.prompt import SEPARATOR
from mxt_t5.words import WordTables, word_pieces

__all__ = ["PromptLayout", "prompt_layout", "MAX_PARTS"]

MAX_PARTS = 8  #: question, product type, title, description and up to four bullets; later parts share the last


def prompt_layout(tables: WordTables, tokenizer: Any, input_ids: torch.Tensor, context_start: torch.Tensor,
                  pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(parts, words)`` ``[B, N]`` of prompts ``input_ids`` whose context starts at ``context_start`` ``[B]``
    (see the module docstring; the separator is the last piece of ``SEPARATOR`` as the tokenizer spells it)."""
    positions = torch.arange(input_ids.size(1), device=input_ids.device)
    in_context = (input_ids != pad_id) & (positions[None, :] >= context_start[:, None])
    separator = tokenizer(SEPARATOR.strip(), add_special_tokens=False)["input_ids"][-1:]
    is_separator = in_context & (input_ids == (separator[0] if separator else -1))
    parts = torch.where(in_context, 1 + is_separator.long().cumsum(1), 0).clamp(max=MAX_PARTS - 1)
    _, starts = word_pieces(tables, input_ids, in_context & ~is_separator)
    count = starts.long().cumsum(1)
    at_part_start = torch.where(is_separator, count, torch.zeros_like(count)).cummax(1).values
    words = torch.where(in_context & ~is_separator, count - at_part_start, torch.zeros_like(count))
    return parts, words


class PromptLayout(torch.nn.Module):
    """``P[part] + Q[min(word, W - 1)]`` for ``W = max_words`` (both tables start at zero)."""

    def __init__(self, d_model: int, max_words: int):
        super().__init__()
        self.max_words = max_words
        self.parts = torch.nn.Embedding(MAX_PARTS, d_model)
        self.words = torch.nn.Embedding(max_words, d_model)
        torch.nn.init.zeros_(self.parts.weight)
        torch.nn.init.zeros_(self.words.weight)

    def forward(self, parts: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
        return self.parts(parts) + self.words(words.clamp(max=self.max_words - 1))
