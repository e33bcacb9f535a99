"""Run configuration: which components make the model and with what options; YAML in, JSON out.

Every section forbids unknown keys, so a typo is an error rather than a silently ignored setting.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mxt_sdk.devices import DEVICE_FORMS, check_device_name
from mxt_sdk.errors import ConfigError, describe_validation_errors

__all__ = ["ComponentSpec", "ModelConfig", "TrainingConfig", "ExtractionConfig", "MXTConfig", "load_config",
           "NOT_STATED"]

#: The reserved answer a model is trained to generate for "not stated" (``ModelConfig.none_answer``):
#: no catalog writes it as a value, so a genuine value "none" is not taken for "not stated". It uses
#: only characters every tokenizer has (T5's SentencePiece vocabulary lacks ``<``). Models saved
#: before it carry ``none_answer: "none"`` in their config and keep it.
NOT_STATED = "n/a-not-stated"

log = logging.getLogger(__name__)


class _Section(BaseModel):
    """A config section: unknown fields refused, and every field checked on assignment too (so
    ``config.extraction.choose_among_known = -5`` raises a ``ValidationError`` naming the field)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), validate_assignment=True)

    #: settings removed after measurements showed no gain: name -> (the value that behaves as the SDK now
    #: does, where it was measured). A saved config that still names one loads; it is dropped, with a
    #: warning where its value asked for the removed behaviour.
    retired: ClassVar[dict[str, tuple[Any, str]]] = {}

    @model_validator(mode="before")
    @classmethod
    def _drop_retired(cls, value: Any) -> Any:
        if not cls.retired or not isinstance(value, dict) or not cls.retired.keys() & value.keys():
            return value
        value = dict(value)
        for name, (current, evidence) in cls.retired.items():
            if name in value and (old := value.pop(name)) != current:
                log.warning("%s = %r is no longer a setting and is ignored (removed: no measured gain, %s); "
                            "the run goes on as with %r", name, old, evidence, current)
        return value


class ComponentSpec(_Section):
    """A registered component by name, with its options (validated by the component itself)."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


class ModelConfig(_Section):
    """The model: a generator, up to two image encoders, and the fusions that connect them.

    ``global_encoder`` feeds fusions whose ``image_input`` is ``"global"`` (MAG, concat);
    ``regional_encoder`` feeds those that take ``"regional"`` maps (cross-attention). No encoders and
    no fusions is the text-only model; with no fusions, a ``global_encoder`` alone is allowed: the
    generator reads text only and the pooled vector serves the image prior (``training.image_prior``).
    """

    generator: ComponentSpec
    global_encoder: ComponentSpec | None = None
    regional_encoder: ComponentSpec | None = None
    fusions: list[ComponentSpec] = Field(default_factory=list)
    max_input_tokens: int = Field(default=256, ge=8)
    max_answer_tokens: int = Field(default=24, ge=1, description="generation bound before training data sets one")
    answer_margin_tokens: int = Field(default=4, ge=0, description="added to the longest training answer")
    none_answer: str = Field(default=NOT_STATED, description="the reserved answer that means 'not stated'")
    context_encoding: Literal["per_question", "per_product"] = Field(
        default="per_question", description="'per_question': the paper's layout, the encoder reads the question "
        "and the product together, once per (product, attribute); 'per_product': the product's context (type, "
        "texts, image fusions) is encoded once for all its questions and each question apart, and the decoder "
        "reads both (docs/architecture.md#context-encoded-once-per-product)")


def _default_normalizers() -> list[ComponentSpec]:
    return [ComponentSpec(name=n) for n in ("text", "units", "merge", "min_count")]


class ImagePriorConfig(_Section):
    """The image prior fitted after training (mxt_sdk.inference.image_prior): softmax regressions over
    the frozen global image vector, used by ``extraction.choose_among_known``."""

    retired = {"share": ("pair", "one regression per attribute name: ImplicitAVE 0.453 -> 0.460 and 0.470 -> 0.459, "
                                 "benchmarks/HISTORY.md, sixth pass")}

    dims: int = Field(default=256, ge=1, description="principal directions of the image vectors kept")
    l2: float = Field(default=0.01, ge=0, description="L2 penalty of each regression")
    max_iter: int = Field(default=100, ge=1, description="L-BFGS iterations per regression")


class TextPriorConfig(_Section):
    """The text prior fitted after training (mxt_sdk.inference.text_prior): per-pair softmax regressions
    over the TF-IDF vector of the product's words, used by ``extraction.choose_among_known``."""

    l2: float = Field(default=1e-4, ge=0, description="L2 penalty of each regression")
    max_words: int = Field(default=50_000, ge=1, description="largest vocabulary (the most frequent words)")
    max_iter: int = Field(default=100, ge=1, description="L-BFGS iterations per regression")


class SpanPriorConfig(_Section):
    """The span prior fitted after training (mxt_sdk.inference.span_prior): a hashed linear model over the
    candidate spans of the product's text, used by ``extraction.span_prior_share``."""

    min_written_share: float = Field(default=0.3, ge=0, le=1,
                                     description="fit the pairs whose training values are written in their text at "
                                                 "least this share of the time")
    max_tokens: int = Field(default=48, ge=1, description="tokens of the product's text (title first) read")
    max_span_tokens: int = Field(default=10, ge=1, description="longest candidate, in tokens")
    hash_bits: int = Field(default=20, ge=8, le=26, description="2**hash_bits weights")
    epochs: int = Field(default=6, ge=1)
    learning_rate: float = Field(default=0.005, gt=0, description="Adam's step; 0.005 chosen on the validation splits "
                                 "of OA-Mine and AE-110k (benchmarks/HISTORY.md, eleventh session)")
    batch_size: int = Field(default=64, ge=1, description="questions per Adam step")
    max_questions: int = Field(default=50_000, ge=1, description="questions fitted at most (a seeded sample)")


class TrainingConfig(_Section):
    """Fine-tuning settings. Defaults follow the paper: AdamW, lr 5e-5, warmup ratio 0.1, linear decay,
    20 epochs, best checkpoint by validation loss."""

    retired = {"text_free_copies": (False, "texts left out of copies of the photo's examples: Myntra 0.874 -> 0.861, "
                                           "benchmarks/HISTORY.md, fifth session")}

    learning_rate: float = Field(default=5e-5, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    image_learning_rate: float | None = Field(
        default=None, gt=0, description="learning rate of trained image-encoder weights (e.g. the blocks an "
                                        "encoder's train_last_blocks trains); default: learning_rate")
    warmup_ratio: float = Field(default=0.1, ge=0, le=1)
    epochs: float = Field(default=20, gt=0)
    max_steps: int | None = Field(default=None, ge=1, description="overrides epochs when set")
    max_train_seconds: float | None = Field(default=None, gt=0, description="stop (and save) after this much training time")
    batch_size: int = Field(default=16, ge=1, description="examples per step per process")
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    max_grad_norm: float | None = Field(default=1.0, gt=0)
    eval_every: int = Field(default=500, ge=1, description="steps between validation-loss evaluations")
    keep_checkpoints: int = Field(default=2, ge=1, description="most recent complete checkpoints kept")
    checkpoint_every: int | None = Field(default=None, ge=1, description="steps between checkpoints besides "
                                                                          "those at each evaluation")
    checkpoint_every_minutes: float | None = Field(default=10.0, gt=0, description="also checkpoint when this "
                                                   "much wall-clock time passed since the last one")
    early_stopping_patience: int | None = Field(default=None, ge=1, description="evaluations without improvement")
    seed: int = 42
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        default="auto", description="autocast on CUDA; auto: bf16 where the GPU supports it; never on CPU")
    device: str = Field(default="auto", description=f"where a single-process run trains ({DEVICE_FORMS}; auto: CUDA "
                                                    "when available); launched processes take their local GPU")
    freeze_image_encoders: bool = False
    cache_image_features: bool = Field(
        default=True, description="with frozen image encoders, encode each distinct image once and reuse its "
                                  "features for every example and epoch (cache in <run>/cache/image-features)")
    image_cache_ray_actors: int = Field(
        default=0, ge=0, description="encode the feature cache's missing chunks with this many Ray Data actors "
                                     "(mxt_sdk.training.feature_cache_ray; every worker reads the images and "
                                     "writes the run folder); 0: in the training process")
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        default="auto", description="data-loading worker processes; auto: 0 on CPU (workers would compete with "
                                    "the model for the cores), on CUDA up to 4 when batches decode images")
    subword_regularization: float = Field(
        default=0.0, ge=0, lt=1, description="share of training pieces split into smaller ones, alike in prompt "
                                             "and answer: teaches a copying generator multi-piece values "
                                             "(mxt_sdk.data.subwords)")
    scramble_copied_values: float = Field(
        default=0.0, ge=0, le=1, description="share of training examples whose value is written in their "
                                             "text that get the value's letters shuffled in the answer and "
                                             "the text alike: teaches copying new values over recalling "
                                             "training ones (mxt_sdk.data.scrambles)")
    scramble_decoys: bool = Field(
        default=False, description="with scramble_copied_values: shuffle as many other words of the text as the "
                                   "value has too, so that an odd-looking word is not the value by its looks alone")
    image_prior: ImagePriorConfig | None = Field(
        default=None, description="after training, fit a per-pair image prior over the known values on the "
                                  "frozen global image vectors (needs frozen encoders); null: none")
    text_prior: TextPriorConfig | None = Field(
        default=None, description="after training, fit a per-pair text prior over the known values on the "
                                  "training products' words (TF-IDF); null: none")
    span_prior: SpanPriorConfig | None = Field(
        default=None, description="after training, fit a span prior over the candidate spans of the training "
                                  "products' texts (every labelled value, values seen once included); null: none")
    length_pool_batches: int = Field(
        default=0, ge=0, description="draw batches of prompts of about the same length: the shuffled examples "
                                      "in pools of this many batches, each pool sorted by tokens and cut into "
                                      "batches taken in a seeded order (less padding); 0: batches straight "
                                      "from the shuffle")
    log_every: int = Field(default=10, ge=1)
    normalizers: list[ComponentSpec] = Field(default_factory=_default_normalizers)

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        return check_device_name(value, "training.device")


class ExtractionConfig(_Section):
    """Defaults for :meth:`mxt_sdk.Extractor.extract`."""

    batch_size: int = Field(default=32, ge=1)
    device: str = Field(default="auto", description=f"{DEVICE_FORMS}; auto: CUDA when available, else CPU")
    canonicalizer: ComponentSpec | None = Field(
        default_factory=lambda: ComponentSpec(name="faiss"),
        description="maps generations onto known values of their pair, flags the rest novel; null: off")
    image_root: str | None = None
    max_image_pixels: int = Field(default=50_000_000, ge=1)
    allow_urls: bool = Field(default=False, description="fetch http(s) image URLs (public addresses only)")
    url_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1, description="largest image download")
    url_timeout_seconds: float = Field(default=10.0, gt=0, description="time limit of one download attempt")
    url_retries: int = Field(default=2, ge=0, description="extra attempts after a connection error or 5xx")
    url_max_redirects: int = Field(default=3, ge=0)
    url_cache_dir: str | None = Field(default=None, description="keep downloaded images here, keyed by URL")
    url_allow_networks: list[str] = Field(default_factory=list,
                                          description="networks exempt from the public-address rule")
    choose_among_known: int = Field(
        default=0, ge=0, description="pairs with at most this many values seen in training answer the most likely "
                                     "of them or the none answer, unless the free answer is written in the "
                                     "product's text and is a known value or its pair usually writes its values "
                                     "there; 0: off, free generation")
    open_pair_new_share: float | None = Field(
        default=None, ge=0, le=1, description="choose_among_known leaves open pairs to the free answer: pairs "
                                              "whose Good-Turing share of new values (values seen once over "
                                              "training values) is above this, where "
                                              "a catalog keeps adding names and codes; null: every pair with "
                                              "few enough values is closed")
    choose_text_span: float | None = Field(
        default=None, ge=0, le=1, description="pairs whose training values were written in their product's text "
                                              "at least this share of the time answer a run of whole words of "
                                              "the text or the none answer: greedy decoding is bound to the "
                                              "text's words (mxt_t5.words.TextBoundGuard); null: off")
    image_prior_weight: float = Field(
        default=1.0, ge=0, description="weight of the image prior's log-probability (a model trained with "
                                       "training.image_prior) added to each known value's score by "
                                       "choose_among_known; 0: the prior is not used")
    text_prior_weight: float = Field(
        default=1.0, ge=0, description="weight of the text prior's log-probability (a model trained with "
                                       "training.text_prior) added to each known value's score by "
                                       "choose_among_known; 0: the prior is not used")
    span_prior_share: float | None = Field(
        default=None, ge=0, le=1, description="pairs whose training values were written in their text at least "
                                              "this share of the time answer the span prior's likeliest span "
                                              "(a model trained with training.span_prior) where it is one, "
                                              "replacing the answer so far; null: off")
    dtype: Literal["auto", "fp32", "bf16", "int8"] = Field(
        default="auto", description="numeric mode of extraction (see mxt_sdk.model.numerics); auto: bf16 on "
                                    "CUDA, fp32 on CPU")


class MXTConfig(_Section):
    """The whole run: model, training and extraction settings."""

    model: ModelConfig
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    extraction: ExtractionConfig = Field(default_factory=ExtractionConfig)

    @field_validator("model", mode="before")
    @classmethod
    def _model_required(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("a 'model' section is required")
        return value


def builtin_configs() -> dict[str, Path]:
    """Configs shipped with the package, by name (``"tiny-cpu"``, ``"mxt-base"``)."""
    folder = Path(__file__).parent / "configs"
    return {path.stem: path for path in sorted(folder.glob("*.yaml"))}


def load_config(source: str | Path | dict[str, Any] | MXTConfig) -> MXTConfig:
    """An :class:`MXTConfig` from a YAML/JSON file path, a built-in config name, a dict, or a config."""
    if isinstance(source, MXTConfig):
        return source
    where = "config"
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file() and str(source) in builtin_configs():
            path = builtin_configs()[str(source)]
        if not path.is_file():
            raise ConfigError(f"Config file not found: {str(path)!r}. Built-in configs: "
                              f"{', '.join(sorted(builtin_configs()))}.")
        where = str(path)
        try:
            source = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{where} is not valid YAML: {exc}") from None
    if not isinstance(source, dict):
        raise ConfigError(f"{where} must hold a mapping with a 'model' section, got {type(source).__name__}.")
    try:
        return MXTConfig.model_validate(source)
    except ValidationError as exc:
        raise ConfigError(f"Invalid {where}: {describe_validation_errors(exc)}") from None
