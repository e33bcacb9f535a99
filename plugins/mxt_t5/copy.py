"""Pointer-generator copying for the T5 decoder (See et al., 2017, "Get To The Point").

At decoder step ``t`` with final decoder state ``s_t``, decoder input embedding ``x_t`` and fused
encoder states ``h_i`` of the prompt's tokens ``w_i``::

    a_t    = softmax_i( (W_q s_t) . (W_k h_i) / sqrt(d) )        over the prompt's text tokens only
    c_t    = sum_i a_t,i h_i
    p_gen  = sigmoid( w . [s_t ; c_t ; x_t] + b )
    P(w)   = p_gen * P_vocab(w) + (1 - p_gen) * sum_{i : w_i = w} a_t,i

``P`` is a proper distribution, so the product of the chosen tokens' ``P`` is still the probability
of the whole answer.

**Continuation features** (our addition, in the spirit of CopyNet's "selective read", Gu et al.,
2016, which tells the decoder where the last copied token sat): a value is usually a run of adjacent
prompt tokens, so the copy scores of a position get a learned bonus when the tokens just before it
are the answer's last tokens::

    score_t,i += u_1 [w_{i-1} = y_{t-1}] + u_2 [w_{i-1} = y_{t-1} and w_{i-2} = y_{t-2}]

(``y`` the answer so far), and the switch leans towards copying, by a learned ``u_3``, when a prompt
position that continues the answer is itself inside a word (a piece without the word-start mark):
stopping mid-word is rarely right. Content attention alone must learn "the token after the one I copied"
from data, and a generator trained from scratch on single-piece values does not; with the features a
value of several pieces never seen in training is copied to its end. The copy attention is a separate single head (not one of T5's cross-attention
heads) so that it can be trained from scratch alongside a pretrained decoder.
"""
from __future__ import annotations

import math

import torch

__all__ = ["CopyHead"]

# log of the copy mass given to a token that is not in the prompt (exp(-69) ~ 1e-30): keeps the
# logarithm and its gradient finite without changing any probability that matters.
_TINY = 1e-30
CONTINUATION_PRIOR = 3.0  # initial u_1, u_2, u_3


class CopyHead(torch.nn.Module):
    """Copy attention and the generate/copy switch of a pointer-generator."""

    def __init__(self, d_model: int, continuation: bool = True):
        super().__init__()
        self.query = torch.nn.Linear(d_model, d_model, bias=False)
        self.key = torch.nn.Linear(d_model, d_model, bias=False)
        self.switch = torch.nn.Linear(3 * d_model, 1)
        self.scale = 1.0 / math.sqrt(d_model)
        # u_1, u_2 of the continuation features and u_3 of the switch's; None: content attention only.
        # They start as a strong prior (a bonus of 3 is larger than most content scores early in training):
        # single scalars move slowly under Adam, and from 1 they had barely moved after 600 steps.
        self.continuation = torch.nn.Parameter(torch.full((3,), CONTINUATION_PRIOR)) if continuation else None

    def attend(self, decoder_hidden: torch.Tensor, decoder_embeds: torch.Tensor, encoder_text: torch.Tensor,
               copyable: torch.Tensor, input_ids: torch.Tensor | None = None,
               answer_so_far: torch.Tensor | None = None,
               inside_word: torch.Tensor | None = None,
               keys: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Copy attention ``[B, T, N]`` over the prompt's tokens and ``log p_gen`` / ``log(1 - p_gen)``
        as ``[B, T, 2]``. ``encoder_text [B, N, d]`` are the encoder states of the input tokens,
        ``copyable [B, N]`` marks the tokens that may be copied (not padding). With continuation
        features, ``input_ids [B, N]`` are the prompt's tokens and ``answer_so_far [B, T + 1]`` the
        decoder inputs with one more token before them (``[y_{t-2}, y_{t-1}]`` at step ``t``; any id
        below 0 for "none"), and ``inside_word [B, N]`` marks the prompt tokens that continue a word
        (all False when the tokenizer does not say). ``keys`` is ``self.key(encoder_text)`` when the
        caller has it already (a decoding loop computes it once, not at every step)."""
        keys = self.key(encoder_text) if keys is None else keys
        scores = torch.einsum("btd,bnd->btn", self.query(decoder_hidden), keys) * self.scale
        scores = scores.float()
        follows = None
        if self.continuation is not None:
            if input_ids is None or answer_so_far is None or inside_word is None:
                raise ValueError("the copy head's continuation features need input_ids, answer_so_far and inside_word")
            follows, bonus = self._continuation_bonus(input_ids, answer_so_far)
            scores = scores + bonus
        scores = scores.masked_fill(~copyable[:, None, :], float("-inf"))
        attention = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # a row with nothing copyable: all zeros
        context = torch.einsum("btn,bnd->btd", attention.to(encoder_text.dtype), encoder_text)
        switch = self.switch(torch.cat([decoder_hidden, context, decoder_embeds], dim=-1)).float()
        if follows is not None:  # the answer stops inside a word of the prompt: lean towards copying on
            mid_word = (follows & (inside_word & copyable)[:, None, :]).any(-1, keepdim=True)
            switch = switch - self.continuation[2].float() * mid_word.float()
        log_switch = torch.cat([torch.nn.functional.logsigmoid(switch), torch.nn.functional.logsigmoid(-switch)], -1)
        return attention, log_switch

    def _continuation_bonus(self, input_ids: torch.Tensor,
                            answer_so_far: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[w_{i-1} = y_{t-1}]`` and the bonus ``u_1 [w_{i-1} = y_{t-1}] + u_2 [w_{i-1} = y_{t-1},
        w_{i-2} = y_{t-2}]``, both ``[B, T, N]``."""
        before_1 = torch.nn.functional.pad(input_ids[:, :-1], (1, 0), value=-1)[:, None, :]   # w_{i-1}
        before_2 = torch.nn.functional.pad(input_ids[:, :-2], (2, 0), value=-1)[:, None, :]   # w_{i-2}
        last, second_last = answer_so_far[:, 1:, None], answer_so_far[:, :-1, None]           # y_{t-1}, y_{t-2}
        follows = (before_1 == last) & (last >= 0)
        follows_two = follows & (before_2 == second_last) & (second_last >= 0)
        weights = self.continuation.float()
        return follows, weights[0] * follows.float() + weights[1] * follows_two.float()

    @staticmethod
    def token_logprobs(vocab_logprobs: torch.Tensor, attention: torch.Tensor, log_switch: torch.Tensor,
                       input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``log P(targets)`` ``[B, T]`` under the mixture, without building the full distribution.
        ``vocab_logprobs [B, T, V]``, ``targets [B, T]`` (any value where ignored; clamp before)."""
        generate = vocab_logprobs.gather(-1, targets[..., None]).squeeze(-1)
        copied = (attention * (input_ids[:, None, :] == targets[..., None])).sum(-1)
        return torch.logaddexp(log_switch[..., 0] + generate, log_switch[..., 1] + copied.clamp_min(_TINY).log())

    @staticmethod
    def mixture_logprobs(vocab_logprobs: torch.Tensor, attention: torch.Tensor, log_switch: torch.Tensor,
                         input_ids: torch.Tensor) -> torch.Tensor:
        """The full mixed log-distribution ``[B, V]`` of one decoder step (``attention [B, N]``,
        ``vocab_logprobs [B, V]``, ``log_switch [B, 2]``)."""
        copied = torch.zeros_like(vocab_logprobs).scatter_add_(-1, input_ids, attention)
        return torch.logaddexp(log_switch[:, :1] + vocab_logprobs, log_switch[:, 1:] + copied.clamp_min(_TINY).log())
