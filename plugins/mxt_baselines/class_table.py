"""The class table of the ``classify`` baseline: which answer (token ids) each head row stands for.

It is kept in two buffers, so it is saved and loaded with the weights wherever they go (model
folder, training checkpoints, best weights) and always matches the head rows it labels::

    tokens  [capacity, max_tokens]  int32, row r = ids of class r, then -1
    lengths [capacity]              int32, 0 = row unused (rows fill up in order)
"""
from __future__ import annotations

from collections.abc import Iterable

import torch


class ClassTable(torch.nn.Module):
    """A growing map ``answer ids (tuple) -> row``, at most ``capacity`` classes of at most
    ``max_tokens`` ids each."""

    def __init__(self, capacity: int, max_tokens: int):
        super().__init__()
        self.register_buffer("tokens", torch.full((capacity, max_tokens), -1, dtype=torch.int32))
        self.register_buffer("lengths", torch.zeros(capacity, dtype=torch.int32))
        self._rows: dict[tuple[int, ...], int] | None = None  # built from the buffers when first needed
        self.register_load_state_dict_post_hook(lambda module, _keys: module._forget_rows())

    def _forget_rows(self) -> None:
        self._rows = None

    @property
    def rows(self) -> dict[tuple[int, ...], int]:
        """Answer ids -> head row, for the classes stored so far."""
        if self._rows is None:
            tokens, lengths = self.tokens.tolist(), self.lengths.tolist()
            self._rows = {tuple(tokens[r][:n]): r for r, n in enumerate(lengths) if n > 0}
        return self._rows

    def __len__(self) -> int:
        return len(self.rows)

    def answer(self, row: int) -> tuple[int, ...]:
        return tuple(self.tokens[row, : int(self.lengths[row])].tolist())

    def add(self, answers: Iterable[tuple[int, ...]]) -> list[tuple[int, ...]]:
        """Store each new non-empty answer in the next free row; return those that did not fit
        (table full, or longer than ``max_tokens``)."""
        capacity, max_tokens = self.tokens.shape
        refused = []
        for answer in answers:
            if not answer or answer in self.rows:
                continue
            row = len(self.rows)
            if row >= capacity or len(answer) > max_tokens:
                refused.append(answer)
                continue
            self.tokens[row, : len(answer)] = torch.as_tensor(answer, dtype=torch.int32)
            self.lengths[row] = len(answer)
            self.rows[answer] = row
        return refused
