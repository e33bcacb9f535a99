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

__all__ = ["WordTables", "WholeWordGuard", "TextBoundGuard", "word_pieces"]

_WORD_START = "\u2581"


class WordTables:
    """Per-token booleans of a tokenizer, computed once per tokenizer (keyed by identity and size)."""

    def __init__(self) -> None:
        self._key: tuple[int, int] | None = None
        self.inside: torch.Tensor = torch.zeros(0, dtype=torch.bool)  # no word-start mark (special ids excepted)
        self.continues: torch.Tensor = torch.zeros(0, dtype=torch.bool)  # no mark, starts alphanumeric
        self.ends_alnum: torch.Tensor = torch.zeros(0, dtype=torch.bool)  # last character alphanumeric
        self.marked = False  # whether the tokenizer marks word starts (SentencePiece); else words are runs
        self.alnum_start: torch.Tensor = torch.zeros(0, dtype=torch.bool)  # first character alphanumeric
        self.alnum_end: torch.Tensor = torch.zeros(0, dtype=torch.bool)  # last character alphanumeric (any tokenizer)

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
        self.marked = marked
        self.alnum_start = torch.tensor([t.lstrip(_WORD_START)[:1].isalnum() for t in texts], dtype=torch.bool)
        self.alnum_end = torch.tensor([t[-1:].isalnum() for t in texts], dtype=torch.bool)
        self._key = key
        return self

    @staticmethod
    def lookup(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """``table[ids]``, False for ids outside the table (padding of -1, added model-only ids)."""
        table = table.to(ids.device)
        inside = (ids >= 0) & (ids < table.numel())
        return table[ids.clamp(0, max(table.numel() - 1, 0))] & inside


def word_pieces(tables: WordTables, ids: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(continues, starts)`` ``[B, N]`` for the valid tokens ``ids``: which pieces continue the word before
    them, and which start a word. A SentencePiece piece without the word-start mark continues its word;
    for a tokenizer without marks (bytes) a letter or digit right after one does. A word starts on a piece
    that does not continue one and either starts with a letter or digit or is continued (a lone word-start
    mark before the pieces of a word never seen whole); punctuation alone starts none."""
    alnum_start = WordTables.lookup(tables.alnum_start, ids)
    if tables.marked:
        continues = WordTables.lookup(tables.continues, ids)
    else:
        continues = alnum_start & torch.nn.functional.pad(WordTables.lookup(tables.alnum_end, ids)[:, :-1], (1, 0))
    continues = continues & valid
    next_continues = torch.nn.functional.pad(continues[:, 1:], (0, 1))
    return continues, valid & ~continues & (alnum_start | next_continues)


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


class TextBoundGuard:
    """Binds chosen rows' answers to the prompt's text: each such row answers a run of whole words of its
    context (the prompt after ``context_start[row]``), or the none answer.

    Where :class:`WholeWordGuard` only forbids cutting words, this guard allows, at each step of a bound
    row, only the tokens that extend the answer so far along one of its occurrences in the context (the
    first step: a token that starts a word there), plus end-of-answer where an occurrence ends a word;
    the none answer's tokens (``none_ids``) form one more allowed path. The step's distribution is
    renormalised over the allowed tokens, so the answer's probability is the model's probability given
    that the answer is one of those runs. Rows not bound (``bound[row]`` False) are left as they are.
    A bound row whose context has no word is released (its distribution is left unconstrained).
    """

    def __init__(self, tables: WordTables, prompt_ids: torch.Tensor, valid: torch.Tensor,
                 context_start: torch.Tensor, bound: torch.Tensor, none_ids: list[int]):
        positions = torch.arange(prompt_ids.size(1), device=prompt_ids.device)
        self.prompt_ids = prompt_ids
        self.valid = valid & (positions[None, :] >= context_start[:, None])
        continues, self.word_start = word_pieces(tables, prompt_ids, self.valid)
        self.cut_after = torch.nn.functional.pad(continues[:, 1:], (0, 1))  # ending here would cut a word
        self.bound = bound & self.word_start.any(-1)
        self.none_ids = list(none_ids)
        self.ends: torch.Tensor | None = None  # [B, N]: the answer so far occupies prompt[.. j]
        self.none_step = torch.zeros(prompt_ids.size(0), dtype=torch.long, device=prompt_ids.device)
        self.on_none = torch.ones(prompt_ids.size(0), dtype=torch.bool, device=prompt_ids.device)

    def _allowed(self, vocab: int, eos_id: int) -> torch.Tensor:
        """``[B, V]``: the tokens each row may take at this step."""
        rows = self.prompt_ids.size(0)
        where = self.word_start if self.ends is None else \
            torch.nn.functional.pad(self.ends[:, :-1], (1, 0)) & self.valid
        ids = self.prompt_ids.clamp(0, vocab - 1)
        counts = torch.zeros((rows, vocab), dtype=torch.long, device=self.prompt_ids.device)
        allowed = counts.scatter_add_(1, ids, (where & (self.prompt_ids < vocab)).long()) > 0
        if self.ends is not None:
            allowed[:, eos_id] |= (self.ends & ~self.cut_after).any(-1)
        for row in self.on_none.nonzero().squeeze(1).tolist():
            step = int(self.none_step[row])
            if step < len(self.none_ids):
                allowed[row, self.none_ids[step]] = True
            else:
                allowed[row, eos_id] = True
        return allowed

    def constrain(self, step_logprobs: torch.Tensor, eos_id: int) -> torch.Tensor:
        """``step_logprobs`` ``[B, V]`` with each bound row restricted to its allowed tokens, renormalised."""
        if not bool(self.bound.any()):
            return step_logprobs
        allowed = self._allowed(step_logprobs.size(-1), eos_id)
        rows = self.bound & allowed.any(-1)
        if not bool(rows.any()):
            return step_logprobs
        guarded = step_logprobs.clone()
        guarded[rows] = torch.log_softmax(guarded[rows].masked_fill(~allowed[rows], float("-inf")), dim=-1)
        return guarded

    def select(self, keep: torch.Tensor) -> None:
        """Keep rows ``keep`` (indices) only."""
        for name in ("prompt_ids", "valid", "cut_after", "word_start", "bound", "none_step", "on_none"):
            setattr(self, name, getattr(self, name)[keep])
        if self.ends is not None:
            self.ends = self.ends[keep]

    def advance(self, chosen: torch.Tensor) -> None:
        """Extend the occurrences and the none path by the tokens ``chosen`` ``[B]`` at this step."""
        hit = (self.prompt_ids == chosen[:, None]) & self.valid
        self.ends = (hit & self.word_start) if self.ends is None else \
            torch.nn.functional.pad(self.ends[:, :-1], (1, 0)) & hit
        step = self.none_step.clamp(max=max(len(self.none_ids) - 1, 0))
        expected = torch.tensor(self.none_ids or [-1], device=chosen.device)[step]
        self.on_none &= (self.none_step < len(self.none_ids)) & (chosen == expected)
        self.none_step += 1
