"""The backbone both baselines share: the ``t5`` generator's options and tokenizer, encoder only."""
from __future__ import annotations

from transformers import T5EncoderModel

from mxt_t5.generator import T5Backbone


class EncoderOnly(T5Backbone):
    """A ``T5EncoderModel`` (no decoder: ``num_decoder_layers`` is accepted and ignored, so a ``t5``
    config switches to a baseline by its generator name alone). Subclasses add a head."""

    model_class = T5EncoderModel

    @property
    def eos_id(self) -> int:
        return self.model.config.eos_token_id

    @property
    def pad_id(self) -> int:
        return self.model.config.pad_token_id
