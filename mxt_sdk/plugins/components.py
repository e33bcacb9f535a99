"""Base classes that every plugin component implements, one per kind.

A component class is registered (never instantiated) by a plugin; the SDK instantiates it from a
config entry ``{name: ..., options: {...}}``. Each class declares:

* ``name`` (and optional ``aliases``): how configs refer to it;
* ``Options``: a pydantic model of its options (``extra="forbid"``), validated before construction.

Neural components (:class:`ImageEncoder`, :class:`Fusion`, :class:`Generator`) are ``torch.nn.Module``
subclasses. Constructing one builds its layers; pretrained weights are fetched only when its options
ask for them *and* no ``saved`` state is passed (loading a saved model never downloads anything).
"""
from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, ValidationError

from mxt_sdk.errors import ConfigError, RecordError, describe_validation_errors
from mxt_sdk.types import Product

__all__ = [
    "ComponentOptions", "Component", "ImageEncoder", "Fusion", "FusionOutput", "Generator",
    "GreedyOutput", "Normalizer", "Canonicalizer", "Reader",
]


class ComponentOptions(BaseModel):
    """Base of every component's ``Options``: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class Component:
    """What every registered class has: a name, optional aliases, and typed options."""

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    Options: ClassVar[type[ComponentOptions]] = ComponentOptions
    #: Small, offline options the conformance tests build this component with (timm's pattern:
    #: every registered component is tested without anyone writing a test for it).
    example_options: ClassVar[dict[str, Any]] = {}

    @classmethod
    def parse_options(cls, options: Mapping[str, Any] | BaseModel | None) -> ComponentOptions:
        """Validate ``options`` against :attr:`Options`; raise :class:`ConfigError` naming the bad keys."""
        if isinstance(options, cls.Options):
            return options
        if isinstance(options, BaseModel):
            options = options.model_dump()
        try:
            return cls.Options.model_validate(dict(options or {}))
        except ValidationError as exc:
            allowed = ", ".join(cls.Options.model_fields) or "(none)"
            reasons = describe_validation_errors(exc, top_level="options")
            raise ConfigError(
                f"Invalid options for {cls.name!r}: {reasons}. Allowed options: {allowed}."
            ) from None


# --------------------------------------------------------------------------- neural components

ImageOutput = Literal["global", "regional"]


class ImageEncoder(Component, torch.nn.Module, abc.ABC):
    """Turns a batch of preprocessed images into features.

    * ``output == "global"``: ``forward(pixels[B,3,H,W]) -> [B, out_dim]`` (one vector per image);
    * ``output == "regional"``: ``forward(pixels) -> [B, R, out_dim]`` (R regions, un-pooled map).

    :meth:`preprocessing` says how a PIL image becomes ``pixels`` (see
    :class:`mxt_sdk.images.io.Preprocessing`); it is saved with the model and reused at load.
    ``saved`` is what :meth:`export_state` returned when the model was saved.

    A regional encoder whose :attr:`shares_pass` is True also gives the pooled vector of the same
    pass (:meth:`encode_both`, ``pooled_dim`` wide): when a model's global and regional slots name the
    same network, the model then runs it once for both fusions.
    """

    output: ImageOutput
    out_dim: int
    pooled_dim: int = 0

    @property
    def shares_pass(self) -> bool:
        return False

    def encode_both(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pooled [B, pooled_dim], regions [B, R, out_dim])`` from one pass (when :attr:`shares_pass`)."""
        raise TypeError(f"image encoder {self.name!r} cannot give pooled and regional features in one pass")

    # An encoder that trains only its last layers over fixed pretrained ones splits its pass in two:
    # ``encode_trunk`` (fixed: what a training feature cache can hold) then ``finish`` / ``finish_both``
    # (trained), so that ``forward(pixels) == finish(encode_trunk(pixels))``.
    @property
    def trains_tail(self) -> bool:
        """Whether the pass splits into a fixed trunk and a trained tail (the methods below)."""
        return False

    def encode_trunk(self, pixels: torch.Tensor) -> torch.Tensor:
        """The fixed trunk's output for ``pixels`` (no gradient), when :attr:`trains_tail`."""
        raise TypeError(f"image encoder {self.name!r} has no trained tail")

    def finish(self, trunk: torch.Tensor) -> torch.Tensor:
        """What :meth:`forward` gives, from :meth:`encode_trunk`'s output."""
        raise TypeError(f"image encoder {self.name!r} has no trained tail")

    def finish_both(self, trunk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What :meth:`encode_both` gives, from :meth:`encode_trunk`'s output."""
        raise TypeError(f"image encoder {self.name!r} has no trained tail")

    def fixed_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights the fixed part of the pass depends on (all of them unless :attr:`trains_tail`), as
        parameters where they are (``requires_grad`` says whether training changes them)."""
        return self.state_dict(keep_vars=True)

    def __init__(self, options: ComponentOptions, *, saved: Mapping[str, Any] | None = None):
        torch.nn.Module.__init__(self)
        self.options = options

    @abc.abstractmethod
    def preprocessing(self) -> dict[str, Any]:
        """The image preprocessing as a JSON-able dict of :class:`mxt_sdk.images.io.Preprocessing` fields."""

    def export_state(self) -> dict[str, Any]:
        """JSON-able state needed to rebuild this encoder without downloading anything."""
        return {"preprocessing": self.preprocessing()}


@dataclass
class FusionOutput:
    """Text-side hidden states after fusion and the attention mask that goes with them."""

    hidden: torch.Tensor
    attention_mask: torch.Tensor


class Fusion(Component, torch.nn.Module, abc.ABC):
    """Mixes image features into the text stream of the generator.

    ``stage`` says where: ``"embeddings"`` (on the generator's input embeddings, before its encoder)
    or ``"encoder_output"`` (on the encoder's output, before the decoder). ``image_input`` says which
    image features it consumes: the ``"global"`` vector ``[B, image_dim]`` or the ``"regional"`` map
    ``[B, R, image_dim]``. For rows whose ``has_image`` is False the image must contribute nothing
    (the documented no-image fallback: their image features are zeros and must not leak in). A
    fusion may add positions *in front of* the text (never after it, so text token ``n`` moves to
    ``n`` plus the number added); it then returns the extended attention mask.
    """

    stage: ClassVar[Literal["embeddings", "encoder_output"]]
    image_input: ClassVar[ImageOutput]

    def __init__(self, options: ComponentOptions, *, text_dim: int, image_dim: int):
        torch.nn.Module.__init__(self)
        self.options = options
        self.text_dim, self.image_dim = text_dim, image_dim

    @abc.abstractmethod
    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor, image: torch.Tensor,
                has_image: torch.Tensor) -> FusionOutput:
        """``hidden [B,N,text_dim]``, ``attention_mask [B,N]``, ``image`` as above, ``has_image [B]`` bool."""


@dataclass
class GreedyOutput:
    """Greedy decoding result: generated ids (EOS and padding included) and per-token log-probs.

    ``token_logprobs[b, t]`` is the log-probability of ``token_ids[b, t]``; positions after the
    sequence's EOS hold 0.0, so ``token_logprobs.sum(-1)`` is the log-probability of the whole answer.
    """

    token_ids: torch.Tensor
    token_logprobs: torch.Tensor


@dataclass
class SharedStates:
    """Encoder states that rows share (``model.context_encoding: per_product``): row ``b``'s states are
    ``states[rows[b]]`` (``states [N, D]``, ``rows [B, L]``), so a generator may project each distinct state
    once (e.g. the decoder's cross-attention keys and values) and gather, instead of once per row."""

    states: torch.Tensor
    rows: torch.Tensor


class Generator(Component, torch.nn.Module, abc.ABC):
    """A text encoder-decoder that generates the value, split at the points where fusions plug in.

    ``embed -> (fusions at "embeddings") -> encode -> (fusions at "encoder_output") -> loss / greedy``.
    The generator owns its tokenizer (a ``transformers`` tokenizer). When it has none yet
    (:attr:`needs_tokenizer_training`), :meth:`train_tokenizer` builds one from training text.

    :meth:`loss` and :meth:`greedy` also get the ``input_ids [B, N]`` the hidden states came from
    (extractive heads point into them). Fusions may have put positions in front of the text, so
    ``encoder_hidden`` can be longer than ``N``: :meth:`text_offset` says by how much.
    """

    d_model: int

    def __init__(self, options: ComponentOptions, *, saved: Mapping[str, Any] | None = None):
        torch.nn.Module.__init__(self)
        self.options = options

    @property
    @abc.abstractmethod
    def tokenizer(self) -> Any:
        """The tokenizer, or None until :meth:`train_tokenizer` has run."""

    @property
    def needs_tokenizer_training(self) -> bool:
        return self.tokenizer is None

    def train_tokenizer(self, texts: Iterator[str]) -> None:
        """Build a tokenizer from ``texts``; only generators that may lack one implement it."""
        raise ConfigError(f"Generator {self.name!r} cannot train a tokenizer.")

    @abc.abstractmethod
    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Input embeddings ``[B, N, d_model]`` of token ids ``[B, N]``."""

    def embed_prompt(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The encoder's input embeddings of prompts ``[B, N]``: :meth:`embed`, plus whatever the generator
        adds from the prompt's layout (the ``t5`` generator's ``prompt_layout``)."""
        return self.embed(input_ids)

    @abc.abstractmethod
    def encode(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Encoder output ``[B, N, d_model]``."""

    @abc.abstractmethod
    def loss(self, encoder_hidden: torch.Tensor, attention_mask: torch.Tensor,
             labels: torch.Tensor, *, input_ids: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood of the answers ``labels [B, T]`` (-100 = ignored), given the
        fused encoder side and the ``input_ids [B, N]`` it was computed from."""

    @abc.abstractmethod
    def greedy(self, encoder_hidden: torch.Tensor, attention_mask: torch.Tensor,
               max_new_tokens: int, *, input_ids: torch.Tensor, bound_rows: torch.Tensor | None = None,
               none_answer: str = "none", shared: SharedStates | None = None) -> GreedyOutput:
        """Greedy answers of at most ``max_new_tokens`` tokens (EOS included) per row.

        ``shared``, where given, says how ``encoder_hidden`` was gathered from distinct states
        (:class:`SharedStates`); a generator may use it to save work and must answer as without it.

        ``bound_rows`` ``[B]`` (bool), where given, marks the rows whose answer must be a run of whole words
        of the prompt's context or ``none_answer`` (``extraction.choose_text_span``); a generator whose
        :attr:`binds_answers_to_text` is False ignores it (the engine warns)."""

    @property
    def binds_answers_to_text(self) -> bool:
        """Whether :meth:`greedy` honours ``bound_rows``."""
        return False

    def answer_logprobs(self, encoder_hidden: torch.Tensor, attention_mask: torch.Tensor,
                        labels: torch.Tensor, *, input_ids: torch.Tensor,
                        shared: SharedStates | None = None) -> torch.Tensor:
        """Log-probability ``[B]`` of each whole answer ``labels [B, T]`` (-100 = padding), as :meth:`greedy`
        scores its own answers. Used to choose among known values (``extraction.choose_among_known``);
        a generator that cannot score given answers keeps this default and refuses that setting.
        ``shared`` (as in :meth:`greedy`): the rows' states gathered from fewer distinct states (the
        candidates of one question share its prompt's), so per-state projections can run once."""
        raise ConfigError(f"generator {self.name!r} cannot score given answers: set "
                          "extraction.choose_among_known to 0 with it")

    @property
    def scores_answers(self) -> bool:
        """Whether this generator implements :meth:`answer_logprobs`."""
        return type(self).answer_logprobs is not Generator.answer_logprobs

    @staticmethod
    def text_offset(encoder_hidden: torch.Tensor, input_ids: torch.Tensor) -> int:
        """How many positions fusions put in front of the text: input token ``n`` is at
        ``encoder_hidden[:, n + offset]`` (and so is its ``attention_mask`` entry)."""
        offset = encoder_hidden.size(1) - input_ids.size(1)
        if offset < 0:
            raise ValueError(f"encoder_hidden has {encoder_hidden.size(1)} positions, fewer than the "
                             f"{input_ids.size(1)} input tokens: a fusion dropped positions")
        return offset

    @abc.abstractmethod
    def export_state(self) -> dict[str, Any]:
        """JSON-able state (architecture) needed to rebuild this generator offline."""

    @abc.abstractmethod
    def save_tokenizer(self, directory: Path) -> None:
        """Write the tokenizer files into ``directory``."""

    @abc.abstractmethod
    def load_tokenizer(self, directory: Path) -> None:
        """Read the tokenizer written by :meth:`save_tokenizer`."""

    # Pretraining (``mxt pretrain``) needs the two methods below; other generators need not have them.
    def add_special_tokens(self, tokens: list[str]) -> None:
        """Make ``tokens`` (e.g. pretraining's sentinels) special tokens of the tokenizer, never split,
        growing the embeddings when the vocabulary outgrows them; tokens it has already are kept."""
        raise ConfigError(f"Generator {self.name!r} cannot be pretrained (it cannot add special tokens).")

    def export_pretrained(self, directory: Path) -> None:
        """Write weights and tokenizer as a folder that this generator's ``from_pretrained`` option
        loads (the output of ``mxt pretrain``)."""
        raise ConfigError(f"Generator {self.name!r} cannot be pretrained (it cannot export its weights).")


# --------------------------------------------------------------------------- data components

class Normalizer(Component, abc.ABC):
    """Cleans attribute values: training labels (fitted on them) and, in evaluation, gold and
    predicted values before they are compared.

    ``__call__`` returns the normalized value, or ``None`` to drop it. Normalizers that learn from
    the corpus (merging near-duplicates, dropping rare values) override :meth:`fit`; their learned
    state round-trips through :meth:`get_state` / :meth:`set_state` as JSON.
    """

    def __init__(self, options: ComponentOptions):
        self.options = options

    def fit(self, counts: Mapping[tuple[str, str, str], int]) -> None:
        """Learn from value counts keyed by (product type, attribute, value). Default: nothing."""

    @abc.abstractmethod
    def __call__(self, value: str, *, product_type: str, attribute: str) -> str | None:
        """The normalized value, or None when the value should be dropped."""

    def get_state(self) -> dict[str, Any]:
        return {}

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`get_state` returned."""


class Canonicalizer(Component, abc.ABC):
    """Maps a generated value onto a known canonical value of its pair, or flags it as novel."""

    def __init__(self, options: ComponentOptions):
        self.options = options

    @abc.abstractmethod
    def fit(self, vocabulary: Mapping[tuple[str, str], Mapping[str, int]]) -> None:
        """Index the known values (with counts) of each (product type, attribute) pair."""

    @abc.abstractmethod
    def canonicalize(self, value: str, *, product_type: str, attribute: str) -> tuple[str, bool]:
        """Return ``(value_to_report, novel)``."""

    def canonicalize_many(self, queries: Sequence[tuple[str, str, str]]) -> list[tuple[str, bool]]:
        """:meth:`canonicalize` for many ``(value, product_type, attribute)`` at once (same results;
        override to batch the work)."""
        return [self.canonicalize(v, product_type=t, attribute=a) for v, t, a in queries]

    @abc.abstractmethod
    def save(self, directory: Path) -> None:
        """Write the index into ``directory`` (no pickle)."""

    @abc.abstractmethod
    def load(self, directory: Path) -> None:
        """Read what :meth:`save` wrote."""


class Reader(Component, abc.ABC):
    """Reads a file of products in one format.

    :meth:`read` yields, in file order, one item per record: a validated :class:`Product`, or a
    :class:`RecordError` naming the record and field when the record is bad (never raised, so one bad
    line never stops a job).
    """

    def __init__(self, options: ComponentOptions):
        self.options = options

    @classmethod
    @abc.abstractmethod
    def can_read(cls, path: Path) -> bool:
        """Whether this reader recognises the file (by suffix and a peek at its start)."""

    @abc.abstractmethod
    def read(self, path: Path) -> Iterator[Product | RecordError]:
        """Yield one Product or RecordError per record of ``path``."""
