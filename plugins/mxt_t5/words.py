"""Whole-word answers: greedy decoding never starts or ends an answer in the middle of a word.

A value written in the text is a run of whole words: ``kavennox`` in "Kavennox leather boots", never
``kaven`` or ``nox``. A generator that has only seen a few multi-piece values in training often copies
the first pieces of a new one and then ends the answer (the demo's unseen brands: ``kavennox`` ->
``kaven``), or starts copying from a later piece (``kavennox`` -> ``nox``). :class:`WholeWordGuard`
applies two rules during greedy decoding, each by removing tokens from the step's distribution and
renormalising it over the others:

* the first token of an answer may not be a piece that continues a word. A SentencePiece tokenizer
  never starts a text with one (it marks the start of the first word), so no training answer did.
  With a copy head, the copy attention a first step puts on such a piece goes to the piece that starts
  its word instead (:meth:`WholeWordGuard.first_copy_ids`): pointing into a word means that word;
* it follows where the answer so far occurs in the prompt as a run of adjacent tokens; while *every*
  such occurrence stops inside a word, end-of-answer is forbidden. (Forcing the next token to be the
  word's next piece was tried and cost the demo's image-only attributes 15 points: a value generated
  from the vocabulary often starts with a short piece that also starts a prompt word, "s" of
  "sleeve", and was dragged into that word.)

"Inside a word" is decided on the SentencePiece pieces: the prompt token after the occurrence has no
word-start mark and starts with a letter or digit, and the occurrence's last piece ends with one. So
``cotton`` in ``cotton/polyester`` or ``8`` in ``8.5`` may still end an answer; a tokenizer without
word-start marks (bytes) never triggers the guard. Answers that are not a run of prompt tokens
(generated from the vocabulary, or read from the image) are never touched.
"""
from __future__ import annotations

import torch

__all__ = ["WordTables", "WholeWordGuard"]

_WORD_START = "\u2581"


class WordTables:
    """Per-token booleans of a tokenizer, computed once per tokenizer (keyed by identity and size)."""

    def __init__(self) -> None:
        self._key: tuple[int, int] | None = None
        self.inside: torch.Tensor = torch.zeros(0, dtype=torch.bool)  # no word-start mark (special ids excepted)
        self.continues: torch.Tensor = torch.zeros(0, dtype=torch.bool)  # no mark, starts alphanumeric
        self.ends_alnum: torch.Tensor = torch.zeros(0, dtype=torch.bool)  # last character alphanumeric

    def update(self, tokenizer) -> "WordTables":
        key = (id(tokenizer), len(tokenizer))
        if key == self._key:
            return self
        pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        marked = any(isinstance(p, str) and p.startswith(_WORD_START) for p in pieces)
        special = set(tokenizer.all_special_ids)

        def text(i: int, piece) -> str:
            return "" if i in special or not isinstance(piece, str) else piece

        texts = [text(i, p) for i, p in enumerate(pieces)]
        self.inside = torch.tensor([marked and bool(t) and not t.startswith(_WORD_START) for t in texts],
                                   dtype=torch.bool)
        self.continues = torch.tensor([marked and t[:1].isalnum() for t in texts], dtype=torch.bool)
        self.ends_alnum = torch.tensor([marked and t[-1:].isalnum() for t in texts], dtype=torch.bool)
        self._key = key
        return self

    @staticmethod
    def lookup(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """``table[ids]``, False for ids outside the table (padding of -1, added model-only ids)."""
        table = table.to(ids.device)
        inside = (ids >= 0) & (ids < table.numel())
        return table[ids.clamp(0, max(table.numel() - 1, 0))] & inside


class WholeWordGuard:
    """Tracks, for one greedy batch, where the answer so far ends in the prompt.

    ``prompt_ids`` ``[B, N]`` are the prompt's token ids, ``valid`` ``[B, N]`` which of them are real
    tokens (not padding). Call :meth:`constrain` before choosing step ``t``'s token and :meth:`advance`
    with the chosen tokens after.
    """

    def __init__(self, tables: WordTables, prompt_ids: torch.Tensor, valid: torch.Tensor):
        self.prompt_ids, self.valid = prompt_ids, valid
        ends_word = WordTables.lookup(tables.ends_alnum, prompt_ids)
        self.continues_at = WordTables.lookup(tables.continues, prompt_ids) & valid  # [B, N]
        next_continues = torch.nn.functional.pad(self.continues_at[:, 1:], (0, 1))
        next_continues &= torch.nn.functional.pad(valid[:, 1:], (0, 1))
        self.cut_after = ends_word & next_continues  # stopping after position j splits a word
        self.continues = tables.continues.to(prompt_ids.device)
        self.ends: torch.Tensor | None = None  # [B, N]: the answer so far occupies prompt[.. j]

    def first_copy_ids(self) -> torch.Tensor:
        """The prompt's ids with each piece that continues a word replaced by the id of the piece that starts
        that word: what a first step's copy attention on that position copies."""
        starts = ~self.continues_at
        positions = torch.arange(self.prompt_ids.size(1), device=self.prompt_ids.device).expand_as(self.prompt_ids)
        word_start = torch.where(starts, positions, torch.zeros_like(positions)).cummax(dim=1).values
        return self.prompt_ids.gather(1, word_start)

    def constrain(self, step_logprobs: torch.Tensor, eos_id: int) -> torch.Tensor:
        """``step_logprobs`` ``[B, V]`` without the tokens the rules forbid at this step, renormalised: at
        the first step the pieces that continue a word; later, end-of-answer in the rows whose every
        occurrence in the prompt stops inside a word."""
        if self.ends is None:
            forbidden = torch.zeros(step_logprobs.size(-1), dtype=torch.bool, device=step_logprobs.device)
            usable = min(self.continues.numel(), forbidden.numel())
            forbidden[:usable] = self.continues[:usable]
            if not bool(forbidden.any()):
                return step_logprobs
            return torch.log_softmax(step_logprobs.masked_fill(forbidden, float("-inf")), dim=-1)
        blocked = self.ends.any(-1) & ~(self.ends & ~self.cut_after).any(-1)
        if not bool(blocked.any()):
            return step_logprobs
        guarded = step_logprobs.clone()
        guarded[blocked, eos_id] = float("-inf")
        guarded[blocked] = torch.log_softmax(guarded[blocked], dim=-1)
        return guarded

    def select(self, keep: torch.Tensor) -> None:
        """Keep rows ``keep`` (indices) only: for a decoding loop that drops the rows that finished."""
        for name in ("prompt_ids", "valid", "cut_after", "continues_at"):
            setattr(self, name, getattr(self, name)[keep])
        if self.ends is not None:
            self.ends = self.ends[keep]

    def advance(self, chosen: torch.Tensor) -> None:
        """Extend the occurrences by the tokens ``chosen`` ``[B]`` at this step."""
        hit = (self.prompt_ids == chosen[:, None]) & self.valid
        if self.ends is None:
            self.ends = hit
        else:
            self.ends = torch.nn.functional.pad(self.ends[:, :-1], (1, 0)) & hit
