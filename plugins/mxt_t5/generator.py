"""The ``t5`` generator: T5 split into embed / encode / decode so fusions can plug in between.

:class:`T5Backbone` holds what every T5-based generator shares (options, tokenizer handling, the
embedding and encoder stack); the baselines of ``mxt_baselines`` build on it with an encoder only.
"""
from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import safetensors.torch
import torch
from pydantic import Field
from transformers import ByT5Tokenizer, PreTrainedModel, T5Config, T5ForConditionalGeneration
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.t5.modeling_t5 import T5Stack

from mxt_sdk import ComponentOptions, Generator, GreedyOutput, SharedStates
from mxt_sdk.data.prompt import context_marker_positions
from mxt_sdk.errors import ConfigError

from mxt_t5 import tokenizers
from mxt_t5.copy import CopyHead
from mxt_t5.layout import PromptLayout, prompt_layout
from mxt_t5.words import TextBoundGuard, WholeWordGuard, WordTables

COPY_HEAD_FILE = "copy_head.safetensors"  # beside the T5 weights in a folder written by ``mxt pretrain``
# transformers 5 renamed the decoder cache argument (and output field) ``past_key_values`` -> ``cache``.
_CACHE = "cache" if "cache" in inspect.signature(T5Stack.forward).parameters else "past_key_values"


class T5Options(ComponentOptions):
    """Either ``from_pretrained`` (hub name or local folder) or a size for a random-init model.

    ``tokenizer``: ``"auto"`` (the checkpoint's own; for random init a Unigram trained on the
    training text), ``"byte"`` (ByT5 bytes, nothing to train), ``"unigram"`` (trained on the
    training text at the first fit, at most ``tokenizer_vocab_size`` pieces; until then the byte
    tokenizer stands in), or a hub name / local folder of a tokenizer.
    """

    from_pretrained: str | None = None
    tokenizer: str = "auto"
    tokenizer_vocab_size: int = Field(default=8000, ge=16)
    tokenizer_split_digits: bool = Field(default=False, description="with tokenizer unigram: no piece holds two "
                                         "digits, so a number or code never seen in training is written with "
                                         "pieces every number trains (mxt_t5.tokenizers)")
    d_model: int = Field(default=512, ge=8)
    d_kv: int | None = Field(default=None, ge=4)
    d_ff: int = Field(default=2048, ge=8)
    num_layers: int = Field(default=6, ge=1)
    num_decoder_layers: int | None = Field(default=None, ge=1)
    num_heads: int = Field(default=8, ge=1)
    dropout_rate: float = Field(default=0.1, ge=0.0, lt=1.0)
    copy_mechanism: bool = Field(default=False, description="pointer-generator: the answer may copy the "
                                                            "prompt's tokens (mxt_t5.copy)")
    # Both help copy values of several pieces never seen in training (the demo's unseen brands); off unless asked
    # for. mxt-cpu turns copy_continuation on with tokenizer_split_digits (docs/training.md#the-trained-tokenizer).
    copy_switch_loss: float = Field(default=0.0, ge=0.0, description="with copy_mechanism: weight of the "
                                    "supervised switch loss (copy every answer token the prompt holds)")
    copy_continuation: bool = Field(default=False, description="with copy_mechanism: favour copying the prompt "
                                                               "token that follows the answer's last ones")
    prompt_layout: int = Field(default=0, ge=0, description="learned embeddings of where each prompt token sits "
                               "(its part: question, product type, title, description...; and its word's number "
                               "within the part, up to this many) added to the encoder's inputs; 0: none "
                               "(mxt_t5.layout)")
    whole_words: bool = Field(default=False, description="greedy decoding neither starts an answer with a piece "
                              "that continues a word nor ends it inside a word it copied (mxt_t5.words)")


class T5Backbone(Generator):
    """A T5 model of class :attr:`model_class` built from :class:`T5Options`, with its tokenizer.

    Subclasses add the head (``loss`` / ``greedy``); the encoder stack is ``self.model.encoder``
    whatever the class (``T5ForConditionalGeneration`` or the encoder-only ``T5EncoderModel``).
    """

    Options = T5Options
    example_options = {"tokenizer": "byte", "d_model": 32, "d_ff": 64, "num_layers": 2, "num_heads": 4}
    model_class: ClassVar[type[PreTrainedModel]] = T5ForConditionalGeneration

    def __init__(self, options: T5Options, *, saved: Mapping[str, Any] | None = None):
        super().__init__(options, saved=saved)
        self._tokenizer_kind = self._resolve_tokenizer_kind(options)
        if options.tokenizer_split_digits and self._tokenizer_kind != "unigram":
            raise ConfigError(f"{self.name}: tokenizer_split_digits applies to a tokenizer trained on the data "
                              f"(tokenizer 'unigram'), not to the {self._tokenizer_kind} one; leave it false.")
        # A saved model brings its tokenizer files (load_tokenizer); nothing is fetched here then.
        self._tokenizer = None if saved is not None else self._initial_tokenizer(options)
        if saved is not None:
            self.model = self.model_class(T5Config.from_dict(saved["t5_config"]))
        elif options.from_pretrained:
            self.model = self.model_class.from_pretrained(options.from_pretrained)
        else:
            self.model = self.model_class(self._size_config(options))
        if self._tokenizer is not None and len(self._tokenizer) > self.model.config.vocab_size:
            self.model.resize_token_embeddings(len(self._tokenizer))
        self.d_model = self.model.config.d_model
        self._word_tables = WordTables()  # per-token word facts of the current tokenizer, rebuilt when it changes
        self.layout = PromptLayout(self.d_model, options.prompt_layout) if options.prompt_layout else None

    # ----------------------------------------------------------------- construction
    @classmethod
    def _resolve_tokenizer_kind(cls, options: T5Options) -> str:
        if options.from_pretrained and options.tokenizer in ("byte", "unigram"):
            raise ConfigError(
                f"{cls.name}: tokenizer {options.tokenizer!r} with from_pretrained={options.from_pretrained!r} would "
                "make the pretrained embeddings meaningless; use tokenizer 'auto' (the checkpoint's own)."
            )
        if options.tokenizer == "auto":
            return "pretrained" if options.from_pretrained else "unigram"
        if options.tokenizer in ("byte", "unigram"):
            return options.tokenizer
        return "pretrained"

    def _vocab_size(self, options: T5Options) -> int:
        if self._tokenizer_kind == "unigram":  # the trained tokenizer's ids will stay below this
            if options.tokenizer_vocab_size < len(self._tokenizer):
                raise ConfigError(
                    f"{self.name}: tokenizer_vocab_size={options.tokenizer_vocab_size} is too small; it must be at "
                    f"least {len(self._tokenizer)} (the byte-level stand-in used until training)."
                )
            return options.tokenizer_vocab_size
        return len(self._tokenizer)

    def _size_config(self, options: T5Options) -> T5Config:
        if options.d_model % options.num_heads and options.d_kv is None:
            raise ConfigError(
                f"{self.name}: d_model={options.d_model} is not divisible by num_heads={options.num_heads}; "
                "change one of them or set d_kv."
            )
        return T5Config(
            vocab_size=self._vocab_size(options), d_model=options.d_model,
            d_kv=options.d_kv or options.d_model // options.num_heads, d_ff=options.d_ff,
            num_layers=options.num_layers, num_decoder_layers=options.num_decoder_layers,
            num_heads=options.num_heads, dropout_rate=options.dropout_rate,
            pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, tie_word_embeddings=True,
        )

    def _initial_tokenizer(self, options: T5Options):
        if self._tokenizer_kind in ("byte", "unigram"):
            # For "unigram" the byte-level tokenizer stands in until train_tokenizer() runs on the
            # training text, so an untrained model can already be saved, loaded and run.
            return tokenizers.byte_tokenizer()
        return tokenizers.pretrained_tokenizer(
            options.from_pretrained if options.tokenizer == "auto" else options.tokenizer
        )

    # ----------------------------------------------------------------- tokenizer
    @property
    def tokenizer(self):
        return self._tokenizer

    @property
    def needs_tokenizer_training(self) -> bool:
        return self._tokenizer_kind == "unigram" and (
            self._tokenizer is None or isinstance(self._tokenizer, ByT5Tokenizer))

    def train_tokenizer(self, texts: Iterator[str]) -> None:
        if not self.needs_tokenizer_training:
            raise ConfigError(f"{self.name}: tokenizer {self.options.tokenizer!r} is not trained from data, or was "
                              "trained already (the weights depend on it).")
        limit = self.model.config.vocab_size
        self._tokenizer = tokenizers.train_unigram_tokenizer(texts, min(limit, self.options.tokenizer_vocab_size),
                                                             split_digits=self.options.tokenizer_split_digits)

    def save_tokenizer(self, directory: Path) -> None:
        self._tokenizer.save_pretrained(str(directory))

    def load_tokenizer(self, directory: Path) -> None:
        self._tokenizer = tokenizers.saved_tokenizer(directory)

    def add_special_tokens(self, tokens: list[str]) -> None:
        missing = [t for t in tokens if t not in self._tokenizer.get_vocab()]
        if missing:
            self._tokenizer.add_special_tokens({"additional_special_tokens": missing},
                                               replace_extra_special_tokens=False)
        if len(self._tokenizer) > self.model.config.vocab_size:
            self.model.resize_token_embeddings(len(self._tokenizer), mean_resizing=False)

    def context_starts(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``[B]``: per row, the position of the first context token, just after the prompt's first
        ``context:`` marker (position 1 where the tokenizer does not spell the marker as in the prompt)."""
        starts, width = context_marker_positions(self.tokenizer, input_ids.tolist())
        return torch.tensor([found + width if found >= 0 else 1 for found in starts],
                            dtype=torch.long, device=input_ids.device)

    def export_state(self) -> dict[str, Any]:
        return {"t5_config": self.model.config.to_dict(), "tokenizer_kind": self._tokenizer_kind}

    # ----------------------------------------------------------------- compute
    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(input_ids)

    def embed_prompt(self, input_ids: torch.Tensor) -> torch.Tensor:
        embeds = self.embed(input_ids)
        if self.layout is None or self._tokenizer is None:
            return embeds
        parts, words = prompt_layout(self._word_tables.update(self._tokenizer), self._tokenizer, input_ids,
                                     self.context_starts(input_ids), self.model.config.pad_token_id)
        return embeds + self.layout(parts, words).to(embeds.dtype)

    def encode(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.encoder(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state


class _Rows:
    """The per-row inputs of a greedy decode, narrowed together as rows finish."""

    def __init__(self, encoder_hidden: torch.Tensor, attention_mask: torch.Tensor, input_ids: torch.Tensor | None):
        self.encoder_hidden, self.attention_mask, self.input_ids = encoder_hidden, attention_mask, input_ids
        self.encoder_text: torch.Tensor | None = None
        self.copyable: torch.Tensor | None = None
        self.inside_word: torch.Tensor | None = None
        self.copy_keys: torch.Tensor | None = None

    def select(self, keep: torch.Tensor) -> None:
        """Keep rows ``keep`` (indices) of every tensor."""
        for name, value in vars(self).items():
            if value is not None:
                setattr(self, name, value[keep])


class T5Generator(T5Backbone):
    """``T5ForConditionalGeneration`` with a greedy decoder that reports per-token log-probs and,
    with ``copy_mechanism``, a pointer-generator head (:class:`~mxt_t5.copy.CopyHead`) that copies
    the prompt's tokens.

    Without copying the decoder reads the encoder side only and ``input_ids`` is unused.
    """

    name = "t5"

    def __init__(self, options: T5Options, *, saved: Mapping[str, Any] | None = None):
        super().__init__(options, saved=saved)
        self.copy_head = CopyHead(self.d_model, options.copy_continuation) if options.copy_mechanism else None
        if self.copy_head is not None and saved is None and options.from_pretrained:
            self._load_pretrained_copy_head(Path(options.from_pretrained))

    def _load_pretrained_copy_head(self, folder: Path) -> None:
        """The copy head ``mxt pretrain`` trained, when the ``from_pretrained`` folder has one."""
        if (folder / COPY_HEAD_FILE).is_file():
            safetensors.torch.load_model(self.copy_head, str(folder / COPY_HEAD_FILE), strict=True)

    def export_pretrained(self, directory: Path) -> None:
        """``save_pretrained`` of the T5 model and the tokenizer, plus the copy head if there is one."""
        self.model.save_pretrained(str(directory))
        self._tokenizer.save_pretrained(str(directory))
        if self.copy_head is not None:
            safetensors.torch.save_model(self.copy_head, str(Path(directory) / COPY_HEAD_FILE))

    def _copy_inputs(self, encoder_hidden: torch.Tensor, attention_mask: torch.Tensor,
                     input_ids: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder states of the prompt's tokens and which of them may be copied."""
        if input_ids is None:
            raise ValueError(f"{self.name} with copy_mechanism needs the input_ids the encoder states came from")
        offset = self.text_offset(encoder_hidden, input_ids)
        copyable = attention_mask[:, offset:].bool() & (input_ids != self.model.config.pad_token_id)
        return encoder_hidden[:, offset:], copyable

    def _inside_word(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Which prompt tokens continue a word: SentencePiece pieces without the word-start mark (none
        for a tokenizer without that mark, e.g. bytes)."""
        return WordTables.lookup(self._word_tables.update(self._tokenizer).inside, input_ids)

    def _whole_word_guard(self, input_ids: torch.Tensor | None,
                          attention_mask: torch.Tensor) -> WholeWordGuard | None:
        """The guard of ``whole_words`` over the prompt's tokens (None without a tokenizer or prompt ids)."""
        if input_ids is None or self._tokenizer is None:
            return None
        offset = attention_mask.size(1) - input_ids.size(1)
        valid = attention_mask[:, offset:].bool() & (input_ids != self.model.config.pad_token_id)
        return WholeWordGuard(self._word_tables.update(self._tokenizer), input_ids, valid)

    def _answer_so_far(self, decoder_input_ids: torch.Tensor) -> torch.Tensor:
        """The decoder inputs with one "none" (-1) before them, padding and the start token as "none"."""
        tokens = decoder_input_ids.masked_fill(decoder_input_ids == self.model.config.pad_token_id, -1)
        return torch.nn.functional.pad(tokens, (1, 0), value=-1)

    def _decode(self, encoder_hidden: torch.Tensor, attention_mask: torch.Tensor,
                decoder_input_ids: torch.Tensor, cache=None):
        """One decoder pass: (vocabulary logits ``[B, T, V]`` in fp32, final decoder states, cache)."""
        output = self.model(encoder_outputs=BaseModelOutput(last_hidden_state=encoder_hidden),
                            attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                            use_cache=cache is not None, output_hidden_states=self.copy_head is not None,
                            **({_CACHE: cache} if cache is not None else {}))
        hidden = output.decoder_hidden_states[-1] if self.copy_head is not None else None
        return output.logits.float(), hidden, getattr(output, _CACHE)

    def loss(self, encoder_hidden: torch.Tensor, attention_mask: torch.Tensor,
             labels: torch.Tensor, *, input_ids: torch.Tensor | None = None) -> torch.Tensor:
        if self.copy_head is None:
            output = self.model(encoder_outputs=BaseModelOutput(last_hidden_state=encoder_hidden),
                                attention_mask=attention_mask, labels=labels)
            return output.loss
        logprobs, log_switch, copyable = self._copy_token_logprobs(encoder_hidden, attention_mask, labels, input_ids)
        target = labels != -100
        loss = -(logprobs * target).sum() / target.sum().clamp_min(1)
        if self.options.copy_switch_loss > 0:
            loss = loss + self.options.copy_switch_loss * self._switch_loss(log_switch, input_ids, copyable, labels)
        return loss

    def answer_logprobs(self, encoder_hidden: torch.Tensor, attention_mask: torch.Tensor,
                        labels: torch.Tensor, *, input_ids: torch.Tensor | None = None,
                        shared: SharedStates | None = None) -> torch.Tensor:
        """See :meth:`Generator.answer_logprobs`; with ``shared`` the decoder's cross-attention keys and values
        and the copy head's keys are projected once per distinct state (:meth:`_prefill_cross_attention`)."""
        target = labels != -100
        cache = None
        if shared is not None:
            cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
            self._prefill_cross_attention(cache, shared)
        if self.copy_head is None:
            logits, _, _ = self._decode(encoder_hidden, attention_mask, self.model._shift_right(labels), cache)
            logprobs = torch.log_softmax(logits, dim=-1).gather(-1, labels.clamp_min(0)[..., None])[..., 0]
        else:
            logprobs, _, _ = self._copy_token_logprobs(encoder_hidden, attention_mask, labels, input_ids,
                                                       cache=cache, shared=shared)
        return (logprobs * target).sum(-1)

    def _copy_token_logprobs(self, encoder_hidden: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
                             input_ids: torch.Tensor | None, *, cache=None,
                             shared: SharedStates | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher-forced log-probability ``[B, T]`` of each label token under the copy mixture, the switch's
        log-probabilities and which prompt tokens may be copied (``cache`` / ``shared``: see
        :meth:`answer_logprobs`)."""
        encoder_text, copyable = self._copy_inputs(encoder_hidden, attention_mask, input_ids)
        decoder_input_ids = self.model._shift_right(labels)
        logits, hidden, _ = self._decode(encoder_hidden, attention_mask, decoder_input_ids, cache)
        vocab_logprobs = torch.log_softmax(logits, dim=-1)
        attention, log_switch = self.copy_head.attend(hidden, self.embed(decoder_input_ids), encoder_text, copyable,
                                                      input_ids, self._answer_so_far(decoder_input_ids),
                                                      self._inside_word(input_ids),
                                                      keys=self._copy_keys(encoder_text, shared))
        logprobs = CopyHead.token_logprobs(vocab_logprobs, attention, log_switch, input_ids, labels.clamp_min(0))
        return logprobs, log_switch, copyable

    def _switch_loss(self, log_switch: torch.Tensor, input_ids: torch.Tensor, copyable: torch.Tensor,
                     labels: torch.Tensor) -> torch.Tensor:
        """Supervised switch (Gulcehre et al., 2016, "Pointing the Unknown Words"): the negative
        log-likelihood of "copy" for each answer token the prompt holds (end of answer excepted) and
        of "generate" for the others, averaged over answer tokens."""
        target = labels != -100
        tokens = labels.clamp_min(0)
        in_prompt = ((input_ids[:, None, :] == tokens[..., None]) & copyable[:, None, :]).any(-1)
        in_prompt &= tokens != self.model.config.eos_token_id
        chosen = torch.where(in_prompt, log_switch[..., 1], log_switch[..., 0])
        return -(chosen * target).sum() / target.sum().clamp_min(1)

    @property
    def binds_answers_to_text(self) -> bool:
        return True

    def _text_bound_guard(self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor,
                          bound_rows: torch.Tensor | None, none_answer: str) -> TextBoundGuard | None:
        """The guard binding ``bound_rows`` to runs of their context's words (None when no row is bound)."""
        if bound_rows is None or not bool(bound_rows.any()) or input_ids is None or self._tokenizer is None:
            return None
        offset = attention_mask.size(1) - input_ids.size(1)
        valid = attention_mask[:, offset:].bool() & (input_ids != self.model.config.pad_token_id)
        none_ids = self._tokenizer(none_answer, add_special_tokens=False)["input_ids"]
        return TextBoundGuard(self._word_tables.update(self._tokenizer), input_ids, valid,
                              self.context_starts(input_ids), bound_rows.to(input_ids.device), none_ids)

    def _copy_keys(self, encoder_text: torch.Tensor, shared: SharedStates | None) -> torch.Tensor:
        """The copy head's keys of the prompt's states, projected once per distinct state when ``shared``."""
        if shared is None:
            return self.copy_head.key(encoder_text)
        offset = shared.rows.size(1) - encoder_text.size(1)
        return self.copy_head.key(shared.states)[shared.rows[:, offset:]]

    def _prefill_cross_attention(self, cache: EncoderDecoderCache, shared: SharedStates) -> None:
        """Fill ``cache``'s cross-attention keys and values of every decoder layer by projecting each distinct
        state once and gathering the rows (what the first decoder pass would compute row by row); the decoder
        then reuses them as it does after its first step. Left to the decoder where the cache has no
        ``is_updated`` flags (another transformers layout)."""
        flags = getattr(cache, "is_updated", None)
        if not isinstance(flags, dict):
            return
        for index, block in enumerate(self.model.decoder.block):
            attention = block.layer[1].EncDecAttention
            shape = (*shared.rows.shape, -1, attention.key_value_proj_dim)
            keys = attention.k(shared.states)[shared.rows].view(shape).transpose(1, 2)
            values = attention.v(shared.states)[shared.rows].view(shape).transpose(1, 2)
            cache.cross_attention_cache.update(keys, values, index)
            flags[index] = True

    def greedy(self, encoder_hidden: torch.Tensor, attention_mask: torch.Tensor,
               max_new_tokens: int, *, input_ids: torch.Tensor | None = None, bound_rows: torch.Tensor | None = None,
               none_answer: str = "none", shared: SharedStates | None = None) -> GreedyOutput:
        """Greedy answers. A row that has generated EOS leaves the batch (its inputs and cache rows are
        dropped), so a long answer costs the steps of its own row only, not of every row batched with
        it; a finished row reads padding and log-probability 0 after its EOS. ``bound_rows`` answer a run of
        their context's whole words or ``none_answer`` (:class:`~mxt_t5.words.TextBoundGuard`). With
        ``shared``, the cross-attention keys and values and the copy head's keys are projected once per
        distinct state and gathered (:meth:`_prefill_cross_attention`)."""
        config = self.model.config
        batch, device = encoder_hidden.size(0), encoder_hidden.device
        rows = _Rows(encoder_hidden, attention_mask, input_ids)
        if self.copy_head is not None:
            rows.encoder_text, rows.copyable = self._copy_inputs(encoder_hidden, attention_mask, input_ids)
            rows.inside_word = self._inside_word(input_ids)
            rows.copy_keys = self._copy_keys(rows.encoder_text, shared)  # once, not at every step
        next_input = torch.full((batch, 1), config.decoder_start_token_id, dtype=torch.long, device=device)
        active = torch.arange(batch, device=device)  # the rows still generating, as indices into the batch
        token_ids = torch.full((batch, max_new_tokens), config.pad_token_id, dtype=torch.long, device=device)
        token_logprobs = torch.zeros((batch, max_new_tokens), device=device)
        cache, steps = EncoderDecoderCache(DynamicCache(), DynamicCache()), 0
        if shared is not None:
            self._prefill_cross_attention(cache, shared)
        previous_input = torch.full_like(next_input, -1)  # y_{t-2} for the copy head's continuation features
        usable = len(self._tokenizer) if self._tokenizer is not None else config.vocab_size
        guard = self._whole_word_guard(input_ids, attention_mask) if self.options.whole_words else None
        bound = self._text_bound_guard(input_ids, attention_mask, bound_rows, none_answer)
        for step in range(max_new_tokens):
            logits, hidden, cache = self._decode(rows.encoder_hidden, rows.attention_mask, next_input, cache)
            logits = logits[:, -1]
            if usable < logits.size(-1):  # ids the tokenizer cannot decode are never generated
                logits[:, usable:] = float("-inf")
            step_logprobs = torch.log_softmax(logits, dim=-1)
            if self.copy_head is not None:
                attention, log_switch = self.copy_head.attend(
                    hidden[:, -1:], self.embed(next_input), rows.encoder_text, rows.copyable, rows.input_ids,
                    self._answer_so_far(torch.cat([previous_input, next_input], dim=1))[:, 1:], rows.inside_word,
                    keys=rows.copy_keys)
                copied_ids = guard.first_copy_ids() if guard is not None and step == 0 else rows.input_ids
                step_logprobs = CopyHead.mixture_logprobs(step_logprobs, attention[:, 0], log_switch[:, 0],
                                                          copied_ids)
            if guard is not None:
                step_logprobs = guard.constrain(step_logprobs, config.eos_token_id)
            unbound = step_logprobs
            if bound is not None:  # chooses among the allowed tokens; the answer keeps the model's own probability
                step_logprobs = bound.constrain(step_logprobs, config.eos_token_id)
            best_id = step_logprobs.argmax(dim=-1)
            token_ids[active, step] = best_id
            token_logprobs[active, step] = unbound.gather(1, best_id[:, None])[:, 0].float()
            steps = step + 1
            going = best_id != config.eos_token_id
            if not bool(going.any()):
                break
            if guard is not None:
                guard.advance(best_id)
            if bound is not None:
                bound.advance(best_id)
            if not bool(going.all()):  # drop the rows that just ended
                keep = going.nonzero().squeeze(1)
                active, best_id, next_input = active[keep], best_id[keep], next_input[keep]
                rows.select(keep)
                cache.reorder_cache(keep)
                if guard is not None:
                    guard.select(keep)
                if bound is not None:
                    bound.select(keep)
            previous_input, next_input = next_input, best_id[:, None]
        return GreedyOutput(token_ids[:, :steps], token_logprobs[:, :steps])
