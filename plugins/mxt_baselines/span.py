"""``span``: the extractive baseline (NER / machine-reading style). It can only answer with a span of
the product text, so a value that is not written there (value-absent) is out of its reach.

A start/end pointer head over the fused T5 encoder output scores every context token; the first
input token (part of ``question:``) is the null slot, SQuAD-2.0 style: pointing both ends at it
means "no span", decoded as the empty answer (``value=None``)::

    p_start = softmax(w_s . h_n)   p_end = softmax(w_e . h_n)   over {null slot} + context tokens
    answer  = argmax over spans i <= j, j - i < max_new_tokens - 1, of p_start(i) p_end(j),
              unless p_start(null) p_end(null) is larger
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from mxt_sdk import GreedyOutput, SharedStates
from mxt_t5.generator import T5Options
from mxt_t5.words import WordTables

from mxt_baselines.encoder import EncoderOnly
from mxt_baselines.tokens import answer_sequences, answers_output, find_subsequence, find_text_span

NULL = 0  #: the text position whose start/end scores stand for "no span"


class SpanGenerator(EncoderOnly):
    """T5 encoder + start/end pointers into the context part of the input.

    Training target: the first occurrence of the label's ids (EOS, padding and -100 dropped) as a
    run of context tokens, else of the label's text up to case (catalog labels are often lower-case
    where the title capitalises); a label not found there (the none answer included, unless the context
    happens to contain that very word) targets the null slot. Loss: NLL of the start plus NLL of
    the end position, each a mean over the batch. ``greedy`` returns the span's input ids + EOS
    with ``log p_start + log p_end`` on the first token, so the confidence is the span's probability.
    """

    name = "span"

    def __init__(self, options: T5Options, *, saved: Mapping[str, Any] | None = None):
        super().__init__(options, saved=saved)
        self.pointer = torch.nn.Linear(self.d_model, 2)  # start and end score of each position
        self._word_tables = WordTables()

    # ----------------------------------------------------------------- where answers may lie
    def _context_bounds(self, input_ids: torch.Tensor) -> list[tuple[int, int]]:
        """Per row, ``[start, stop)`` of the context tokens: from :meth:`context_starts` up to EOS or padding."""
        bounds = []
        for ids, start in zip(input_ids.tolist(), self.context_starts(input_ids).tolist()):
            stop = next((n for n, i in enumerate(ids) if i in (self.eos_id, self.pad_id)), len(ids))
            bounds.append((min(start, stop), stop))
        return bounds

    def _pointer_logprobs(self, encoder_hidden: torch.Tensor, attention_mask: torch.Tensor,
                          input_ids: torch.Tensor, bounds: list[tuple[int, int]]) -> torch.Tensor:
        """``[B, N, 2]`` log-probabilities of each input position being the start / end: a
        softmax over the null slot and the context tokens (every other position gets -inf)."""
        offset = self.text_offset(encoder_hidden, input_ids)
        logits = self.pointer(encoder_hidden[:, offset:]).float()
        allowed = torch.zeros(input_ids.shape, dtype=torch.bool, device=input_ids.device)
        for row, (start, stop) in enumerate(bounds):
            allowed[row, start:stop] = True
        allowed &= attention_mask[:, offset:].bool()
        allowed[:, NULL] = True
        return logits.masked_fill(~allowed[..., None], float("-inf")).log_softmax(dim=1)

    def _targets(self, labels: torch.Tensor, input_ids: torch.Tensor,
                 bounds: list[tuple[int, int]]) -> torch.Tensor:
        """``[B, 2]`` start and end position of each row's answer in its context, or the null slot twice."""
        targets = []
        for ids, answer, (start, stop) in zip(input_ids.tolist(), answer_sequences(labels, self.eos_id, self.pad_id),
                                              bounds):
            found = find_subsequence(ids, answer, start, stop)
            if found >= 0:
                targets.append((found, found + len(answer) - 1))
                continue
            span = None
            if answer and self.tokenizer is not None:  # same words, other spelling: match the text
                span = find_text_span(self.tokenizer.convert_ids_to_tokens(ids), self.tokenizer.decode(
                    list(answer), skip_special_tokens=True), start, stop)
            targets.append(span or (NULL, NULL))
        return torch.tensor(targets, dtype=torch.long, device=input_ids.device)

    def _whole_word_ends(self, input_ids: torch.Tensor, start: torch.Tensor,
                         end: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Start and end scores with the positions that would cut a word removed: no span starts on a
        piece that continues a word, none ends on a piece the next one continues (``whole_words``)."""
        tables = self._word_tables.update(self.tokenizer)
        continues = WordTables.lookup(tables.continues, input_ids)
        ends_alnum = WordTables.lookup(tables.ends_alnum, input_ids)
        cuts = ends_alnum & torch.nn.functional.pad(continues[:, 1:], (0, 1))
        keep_null = torch.zeros_like(continues)
        keep_null[:, NULL] = True
        return (start.masked_fill(continues & ~keep_null, float("-inf")),
                end.masked_fill(cuts & ~keep_null, float("-inf")))

    # ----------------------------------------------------------------- Generator contract
    def loss(self, encoder_hidden: torch.Tensor, attention_mask: torch.Tensor,
             labels: torch.Tensor, *, input_ids: torch.Tensor) -> torch.Tensor:
        bounds = self._context_bounds(input_ids)
        logprobs = self._pointer_logprobs(encoder_hidden, attention_mask, input_ids, bounds)
        targets = self._targets(labels, input_ids, bounds)
        return (torch.nn.functional.nll_loss(logprobs[..., 0], targets[:, 0])
                + torch.nn.functional.nll_loss(logprobs[..., 1], targets[:, 1]))

    def greedy(self, encoder_hidden: torch.Tensor, attention_mask: torch.Tensor,
               max_new_tokens: int, *, input_ids: torch.Tensor, shared: SharedStates | None = None) -> GreedyOutput:
        bounds = self._context_bounds(input_ids)
        logprobs = self._pointer_logprobs(encoder_hidden, attention_mask, input_ids, bounds)
        start, end = logprobs[..., 0], logprobs[..., 1]
        null = start[:, NULL] + end[:, NULL]
        if self.options.whole_words and self.tokenizer is not None:
            start, end = self._whole_word_ends(input_ids, start, end)
        positions = torch.arange(input_ids.size(1), device=input_ids.device)
        width = positions[None, :] - positions[:, None]           # [i, j] -> j - i
        band = (width >= 0) & (width < max_new_tokens - 1)        # the span and its EOS fit the budget
        band[NULL, :] = band[:, NULL] = False
        scores = (start[:, :, None] + end[:, None, :]).masked_fill(~band, float("-inf"))
        best, flat = scores.flatten(1).max(dim=1)
        answers, chosen = [], []
        for row, ids in enumerate(input_ids.tolist()):
            if best[row] > null[row]:
                i, j = divmod(int(flat[row]), input_ids.size(1))
                answers.append(ids[i:j + 1])
                chosen.append(best[row])
            else:
                answers.append([])
                chosen.append(null[row])
        return answers_output(answers, torch.stack(chosen), self.eos_id, self.pad_id)
