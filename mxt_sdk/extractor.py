"""``Extractor``: the one class users import. Build or load a model, extract values, save it."""
from __future__ import annotations

import copy
import tempfile
from itertools import islice
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from mxt_sdk.config import ComponentSpec, MXTConfig, TrainingConfig, load_config
from mxt_sdk.data.metadata import CatalogMetadata
from mxt_sdk.devices import resolve_device
from mxt_sdk.data.readers import REJECTED_FILE, load_products
from mxt_sdk.errors import ConfigError, DataFileError, NotFittedError
from mxt_sdk.evaluation import prior_weight
from mxt_sdk.evaluation.metrics import group_by_pair
from mxt_sdk.evaluation.prior_weight import PRIOR_WEIGHTS
from mxt_sdk.evaluation.report import build_report, group_by_path, score, scored, write_report
from mxt_sdk.images.fetch import UrlPolicy
from mxt_sdk.evaluation.thresholds import (DEFAULT_MIN_SUPPORT, CallThresholds, ThresholdOverride, Thresholds,
                                           calibrate, calibration_summary)
from mxt_sdk.inference.engine import Engine, EngineSettings, make_requests
from mxt_sdk.inference.image_prior import ImageValuePrior, prior_applies
from mxt_sdk.inference.span_prior import SpanPrior
from mxt_sdk.inference.text_prior import TextValuePrior
from mxt_sdk.model.card import (MeasuredFacts, ModelCard, TrainingFacts, calibration_figures, data_ref,
                                evaluation_figures, write_card)
from mxt_sdk.model.folder import SavedModel, load_folder, save_folder
from mxt_sdk.model.hub import ModelSource, push_folder, resolve_model
from mxt_sdk.model.mxt import MXTModel
from mxt_sdk.model.numerics import inference_model, resolve_dtype
from mxt_sdk.plugins import manager
from mxt_sdk.plugins.components import Canonicalizer, Normalizer
from mxt_sdk.training.layout import default_run_dir
from mxt_sdk.training.run_guard import DATA_SCHEME, check_resume, config_fingerprint
from mxt_sdk.training.trainer import Trainer, TrainingResult
from mxt_sdk.types import Prediction, Product


class Extractor:
    """A multimodal attribute-value extractor: one model for every (product type, attribute) pair.

    >>> extractor = Extractor.from_pretrained("org/name")                    # doctest: +SKIP
    >>> extractor([{"product_type": "dress", "title": "Red midi dress"}], attributes=["color"])  # doctest: +SKIP

    ``card`` holds the model card's facts (:mod:`mxt_sdk.model.card`), ``source`` where a loaded model came
    from (a folder, or a Hub repository and commit).
    """

    def __init__(self, config: MXTConfig, model: MXTModel, metadata: CatalogMetadata | None = None,
                 normalizers: list[Normalizer] | None = None, thresholds: Thresholds | None = None,
                 canonicalizer: Canonicalizer | None = None, image_prior: ImageValuePrior | None = None,
                 card: ModelCard | None = None, text_prior: TextValuePrior | None = None,
                 span_prior: SpanPrior | None = None):
        self.config = config
        self.card = card or ModelCard()
        self.source: ModelSource | None = None
        self.model = model.eval()
        self.metadata = metadata
        self.normalizers = normalizers or []
        self.thresholds = thresholds or Thresholds()
        self.canonicalizer = canonicalizer
        self.image_prior = image_prior
        self.text_prior, self.span_prior = text_prior, span_prior
        self.last_run_stats: dict[str, int] = {}
        self._inference_models: dict[str, MXTModel] = {}  # per dtype; cleared when weights change

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_config(cls, config: str | Path | dict[str, Any] | MXTConfig, *,
                    device: str | None = None) -> "Extractor":
        """Build a fresh model from a YAML path, dict or :class:`MXTConfig` (pretrained parts are
        fetched only where the config asks for them). Randomly initialised weights are drawn from
        ``training.seed``, so the same config always gives the same model."""
        config = load_config(config)
        with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
            torch.manual_seed(config.training.seed)  # the same config gives the same initial weights
            model = MXTModel(config.model)
        return cls(config, model.to(resolve_device(device or config.extraction.device)))

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, revision: str | None = None,
                        cache_dir: str | Path | None = None, local_files_only: bool | None = None,
                        token: str | bool | None = None, device: str | None = None) -> "Extractor":
        """Load a model: a folder written by :meth:`save_pretrained`, or a Hugging Face Hub ID
        (``"org/name"``) whose files are fetched into the standard Hub cache (``cache_dir`` to use
        another) at ``revision`` (branch, tag or commit; default ``main``), or found there when offline
        (``HF_HUB_OFFLINE=1``, or ``local_files_only=True``). Only model-folder files are fetched
        (safetensors, JSON, tokenizer files; never pickles), and their SHA-256 are checked against the
        model's ``checksums.json``. A local folder is read as it is and nothing is downloaded.
        See :func:`mxt_sdk.model.hub.resolve_model` for the errors."""
        source = resolve_model(name_or_path, revision=revision, cache_dir=cache_dir,
                               local_files_only=local_files_only, token=token)
        saved = load_folder(source.folder)
        extractor = cls(saved.config, saved.model.to(resolve_device(device or saved.config.extraction.device)),
                        saved.metadata, saved.normalizers, saved.thresholds, saved.canonicalizer, saved.image_prior,
                        saved.card, saved.text_prior, saved.span_prior)
        extractor.source = source
        return extractor

    def save_pretrained(self, directory: str | Path) -> None:
        """Write config, weights (safetensors), tokenizer, metadata, ``checksums.json`` and the model card
        (``README.md``, ``card.json``) to ``directory`` atomically."""
        save_folder(Path(directory), SavedModel(self.config, self.model, self.metadata, self.normalizers,
                                                self.thresholds, self.canonicalizer, self.image_prior, self.card,
                                                self.text_prior, self.span_prior))

    def save_model_card(self, directory: str | Path) -> None:
        """Rewrite only the model card (``README.md``, ``card.json``) of the model folder ``directory``,
        e.g. after :meth:`evaluate`; the model's own files are left as they are."""
        directory = Path(directory)
        if not (directory / "config.json").is_file():
            raise ConfigError(f"{str(directory)!r} is not a saved mxt_sdk model folder: it has no config.json.")
        write_card(directory, self.card, self.config, self.metadata)

    def push_to_hub(self, repo_id: str, *, private: bool | None = None, revision: str | None = None,
                    commit_message: str | None = None, token: str | bool | None = None) -> str:
        """Save this model and upload it to the Hugging Face Hub model repository ``repo_id``
        (``"org/name"``; created if missing, ``private`` on creation) on branch ``revision`` (default
        ``main``; created if missing), replacing the files of an earlier push. Needs network access and
        a write token (``hf auth login`` or ``token=``). Returns the commit's URL; load it back with
        ``Extractor.from_pretrained(repo_id, revision=...)``."""
        with tempfile.TemporaryDirectory(prefix="mxt-push-") as folder:
            self.save_pretrained(folder)
            return push_folder(Path(folder), repo_id, private=private, revision=revision,
                               commit_message=commit_message, token=token)

    def set_canonicalizer(self, name: str | None = "faiss", **options: Any) -> None:
        """Use canonicalizer ``name`` with ``options`` (e.g. ``vocabulary_file="values.jsonl"``),
        fitted on the training vocabulary (if any) plus whatever its options add; ``None`` turns
        canonicalization off. Saved with :meth:`save_pretrained`."""
        spec = None if name is None else ComponentSpec(name=name, options=options)
        extraction = self.config.extraction.model_copy(update={"canonicalizer": spec})
        self.config = self.config.model_copy(update={"extraction": extraction})
        self.canonicalizer = None
        if spec is not None:
            self.canonicalizer = manager.create("canonicalizers", spec.name, spec.options)
            known = self.metadata.values if self.metadata else {}
            self.canonicalizer.fit({tuple(key.split("\t", 1)): values for key, values in known.items()})

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ----------------------------------------------------------------- training
    def fit(self, train: str | Path | Iterable[Product | dict[str, Any]],
            val: str | Path | Iterable[Product | dict[str, Any]] | None = None, *,
            output_dir: str | Path | None = None, image_root: str | Path | None = None,
            reader: str | None = None, run_dir: str | Path | None = None, force_resume: bool = False,
            **training_options: Any) -> TrainingResult:
        """Fine-tune on catalog labels (distant supervision) and save the model to ``output_dir``.

        ``train``/``val`` are data files (any registered reader format, ``reader`` to force one) or
        iterables of products. ``training_options`` override fields of the config's ``training``
        section (e.g. ``max_steps=300``). Re-running with the same ``output_dir`` resumes from its
        last complete checkpoint, if it was made with the same config and data (else
        :class:`~mxt_sdk.training.run_guard.ResumeMismatchError`; ``force_resume=True`` resumes anyway). ``output_dir`` receives only the model files; checkpoints, caches,
        logs, ``cleaning.json`` and ``rejected.jsonl`` (the bad records, which are skipped and counted in
        the log) go to ``run_dir``, by default ``<output_dir>.run`` beside it
        (:mod:`mxt_sdk.training.layout`). Without ``output_dir`` a temporary folder is used.
        """
        settings = TrainingConfig.model_validate({**self.config.training.model_dump(), **training_options})
        self.config = self.config.model_copy(update={"training": settings})
        output = Path(output_dir) if output_dir is not None else Path(tempfile.mkdtemp(prefix="mxt-train-"))
        run = Path(run_dir) if run_dir is not None else default_run_dir(output)
        output.mkdir(parents=True, exist_ok=True)
        run.mkdir(parents=True, exist_ok=True)
        rejected = run / REJECTED_FILE  # rewritten whenever the data is read again (see stage_data)
        root = image_root if image_root is not None else self.config.extraction.image_root
        if root is None and isinstance(train, (str, Path)):
            root = Path(train).parent  # relative image paths are relative to the data file
        trainer = Trainer(self, settings, output, Path(root) if root is not None else None, run)
        staged = trainer.stage(train, val, reader, rejected)  # read once, in chunks, into <run>/cache/data
        check_resume(run, {"config": config_fingerprint(self.config), "data": staged.data_fingerprint,
                          "data_scheme": DATA_SCHEME}, force_resume,
                     record=trainer.accelerator.is_main_process)  # one writer: the main process's recovery runs next
        self._inference_models.clear()  # a bf16 or int8 copy made from the old weights would be stale
        self.card = ModelCard()  # figures measured on the earlier weights no longer apply
        result = trainer.fit(staged.train, staged.val)
        self.model.eval()
        self.card = ModelCard(training=TrainingFacts(
            steps=result.steps, seed=settings.seed, train=data_ref(train, staged.train.count),
            val=data_ref(val, staged.val.count) if staged.val is not None else None,
            data_fingerprint=staged.data_fingerprint, best_val_loss=result.best_val_loss))
        if trainer.accelerator.is_main_process:
            self.save_model_card(output)
        return result

    # ----------------------------------------------------------------- extraction
    def iter_extract(self, products: Iterable[Product | dict[str, Any]] | Product | dict[str, Any],
                     attributes: Sequence[str] | Callable[[Product], list[str]] | None = None, *,
                     batch_size: int | None = None, image_root: str | Path | None = None,
                     on_image_error: str = "error", dtype: str | None = None,
                     skip_records: int = 0, threshold: ThresholdOverride | None = None) -> Iterator[Prediction]:
        """Stream predictions, one per requested (product, attribute), in input order.

        ``products``: :class:`Product` objects or plain dicts with the same fields (a single one is
        taken as a list of one); a dict without an ``id`` gets ``"record-N"``, N its position in
        ``products`` (counted from 0).
        ``threshold``: for this call only, accept answers whose confidence reaches this number (0 to 1)
        instead of the calibrated thresholds, or a mapping from attribute name, ``(product_type,
        attribute)`` or ``"product_type\tattribute"`` to a threshold (pairs it does not name keep the
        calibrated ones); such rows say ``threshold_source="call"``.
        ``attributes=None`` asks each product for the attributes training saw for its product type;
        a function ``product -> [attribute, ...]`` chooses per product.
        ``image_root`` is where relative image paths are resolved (and which they may not escape).
        ``on_image_error``: ``"error"`` (rows of a product whose image cannot be read carry the error
        and no value) or ``"text_only"`` (answer from the text, keep the error as a note).
        ``dtype``: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"int8"`` (default: the config's
        ``extraction.dtype``; see :mod:`mxt_sdk.model.numerics`).
        ``skip_records``: leave out the first records (validated, not answered): how a resumed
        extraction goes on after the products it already wrote, with their record numbers unchanged.
        """
        engine = self.engine(batch_size=batch_size, image_root=image_root, on_image_error=on_image_error,
                             dtype=dtype, threshold=threshold)
        if isinstance(products, (Product, dict)):
            products = [products]
        self.last_run_stats = engine.settings.stats  # filled while the run streams (e.g. truncated_inputs)
        yield from engine.run(islice(make_requests(products, attributes, self.metadata), skip_records, None))

    def engine(self, *, batch_size: int | None = None, image_root: str | Path | None = None,
               on_image_error: str = "error", dtype: str | None = None, own_tokenizer: bool = False,
               threshold: ThresholdOverride | None = None) -> Engine:
        """The :class:`~mxt_sdk.inference.engine.Engine` that :meth:`iter_extract` runs, with the same
        options, for callers that feed it :class:`~mxt_sdk.inference.engine.Request` lists themselves
        (the server's micro-batcher). With ``own_tokenizer`` the engine tokenizes with a copy of the
        tokenizer of its own, so that engines sharing this model can run in parallel threads (a fast
        tokenizer must not be called from two threads at once; the generator's own lookups in the
        model's tokenizer only read it); the model's weights stay shared."""
        if on_image_error not in ("error", "text_only"):
            raise ValueError(f"on_image_error must be 'error' or 'text_only', not {on_image_error!r}")
        tokenizer = self.model.generator.tokenizer
        if tokenizer is None:
            raise NotFittedError(
                "This model has no tokenizer yet: its generator trains one from the training text. "
                "Call fit() first, or configure a byte-level or pretrained tokenizer."
            )
        settings = self._settings(batch_size, image_root, on_image_error, dtype)
        if threshold is not None:
            settings.thresholds = CallThresholds.over(self.thresholds, threshold)
        if own_tokenizer:
            tokenizer = copy.deepcopy(tokenizer)
        return Engine(self._inference_model(settings.dtype), tokenizer, self.metadata, settings,
                      self.canonicalizer, self.image_prior, self.text_prior, self.span_prior)

    def evaluate(self, data: str | Path | Iterable[Product | dict[str, Any]], *, precision: float = 0.9,
                 output: str | Path | None = None, image_root: str | Path | None = None,
                 reader: str | None = None, batch_size: int | None = None) -> dict[str, Any]:
        """Score the model on labelled products (their ``attributes`` are the gold values).

        Returns the report (per-pair P/R/F1 at the stored thresholds, recall@``precision``, micro and
        macro averages, zero-shot / value-absent / image slices; see :mod:`mxt_sdk.evaluation.metrics`). With
        ``output`` (a ``.json`` path) also writes the predictions file, a Markdown summary,
        precision-recall plots and a self-contained HTML page with a gallery of the products beside it.
        """
        products, root = self._labelled_products(data, image_root, reader)
        rows = self._score_products(products, root, batch_size)
        report = build_report(rows, self.thresholds, precision)
        self.card.evaluation = MeasuredFacts(data=data_ref(data, len(products)), target_precision=precision,
                                             figures=evaluation_figures(report))
        if output is not None:
            write_report(report, rows, Path(output), image_root=Path(root) if root is not None else None)
        return report

    def calibrate(self, data: str | Path | Iterable[Product | dict[str, Any]], *, precision: float = 0.9,
                  image_root: str | Path | None = None, reader: str | None = None,
                  batch_size: int | None = None, min_support: int = DEFAULT_MIN_SUPPORT,
                  prior_weights: Sequence[float] | None = PRIOR_WEIGHTS) -> Thresholds:
        """Set each (product type, attribute) threshold to reach ``precision`` on labelled ``data``
        (highest recall among thresholds that do). A pair with fewer than ``min_support`` labelled
        rows, and a pair missing from ``data``, gets the threshold of its attribute's pooled rows, or
        of all rows; each decision path (``Prediction.decided_by``) gets its own threshold per pair where
        it has ``min_support`` rows, and pooled over the pairs as a floor elsewhere (see
        :mod:`mxt_sdk.evaluation.thresholds`). Pairs that cannot reach the target
        accept nothing; they are listed with ``None`` in the result. Saved with :meth:`save_pretrained`.

        When the model's image prior is in use, the prior's weight is chosen first among
        ``prior_weights`` (:meth:`choose_image_prior_weight`), then, when its text prior is in use, that
        prior's weight the same way, and the thresholds are those of the chosen weights' answers;
        ``prior_weights=None`` keeps the configured weights. Each weight is one pass of extraction over
        ``data``."""
        products, root = self._labelled_products(data, image_root, reader)
        rows = None
        if prior_weights:
            for setting in self._prior_weight_settings():
                _, rows = prior_weight.weigh(self, setting, products, root, batch_size, prior_weights)
        if rows is None:
            rows = self._score_products(products, root, batch_size)
        by_pair = group_by_pair((r["product_type"], r["attribute"], scored(r)) for r in rows)
        by_path = group_by_path(rows)
        self.thresholds = calibrate(by_pair, precision, default=self.thresholds.default, min_support=min_support,
                                    rows_by_path=by_path)
        self.card.calibration = MeasuredFacts(data=data_ref(data, len(products)), target_precision=precision,
                                              figures=calibration_figures(self.calibration_summary()))
        return self.thresholds

    def calibration_summary(self) -> dict[str, Any]:
        """What the thresholds reach (:func:`~mxt_sdk.evaluation.thresholds.calibration_summary`) and, when
        the image or text prior is in use, its weight."""
        summary = calibration_summary(self.thresholds)
        for setting in self._prior_weight_settings():
            summary[setting] = getattr(self.config.extraction, setting)
        return summary

    @property
    def image_prior_in_use(self) -> bool:
        """Whether extraction joins an image prior to ``choose_among_known``'s scores, at the weight
        ``extraction.image_prior_weight`` (which may be 0): the model has a fitted prior and an image path,
        ``choose_among_known`` is on and the generator scores given answers."""
        return self.config.extraction.choose_among_known > 0 and prior_applies(self.model, self.image_prior)

    @property
    def text_prior_in_use(self) -> bool:
        """Whether extraction joins a text prior to ``choose_among_known``'s scores, at the weight
        ``extraction.text_prior_weight`` (which may be 0): the model has a fitted text prior,
        ``choose_among_known`` is on and the generator scores given answers."""
        return (self.config.extraction.choose_among_known > 0 and self.text_prior is not None
                and self.model.generator.scores_answers)

    def _prior_weight_settings(self) -> list[str]:
        """The ``extraction`` weight settings of the priors in use, image first."""
        return [setting for setting, used in (("image_prior_weight", self.image_prior_in_use),
                                              ("text_prior_weight", self.text_prior_in_use)) if used]

    def choose_image_prior_weight(self, data: str | Path | Iterable[Product | dict[str, Any]],
                                  weights: Sequence[float] = PRIOR_WEIGHTS, *, image_root: str | Path | None = None,
                                  reader: str | None = None, batch_size: int | None = None) -> dict[float, float]:
        """Set ``extraction.image_prior_weight`` to the weight of ``weights`` whose answers are most often
        correct on labelled ``data`` if it is clearly better than the configured weight on the same rows
        (a sign test; see :mod:`mxt_sdk.evaluation.prior_weight`), and return the accuracy of each weight
        tried (the configured one included). Saved with :meth:`save_pretrained`. ``data`` must be held out
        from training: the generator and the prior both recall the labels of their training products, so
        scores on those say nothing about new products."""
        if not self.image_prior_in_use:
            raise ValueError("this model's extraction uses no image prior (it needs a fitted prior, an image "
                             "encoder, extraction.choose_among_known > 0 and a generator that scores answers)")
        products, root = self._labelled_products(data, image_root, reader)
        accuracy_by_weight, _ = prior_weight.weigh(self, "image_prior_weight", products, root, batch_size, weights)
        return accuracy_by_weight


    def _labelled_products(self, data, image_root, reader) -> tuple[list[Product], Any]:
        """The products of ``data`` that have attribute values, and the image root to read them under."""
        products = load_products(data, "evaluation", reader)
        labelled = [p for p in products if p.attributes]
        if not labelled:
            raise DataFileError("No product in the evaluation data has attribute values to compare with.")
        root = image_root if image_root is not None else self.config.extraction.image_root
        if root is None and isinstance(data, (str, Path)):
            root = Path(data).parent  # relative image paths are relative to the data file, as in fit()
        return labelled, root

    def _score_products(self, labelled: list[Product], root, batch_size: int | None) -> list[dict[str, Any]]:
        """The scored rows (:func:`~mxt_sdk.evaluation.report.score`) of ``labelled`` products."""
        predictions = list(self.iter_extract(labelled, lambda product: list(product.attributes),
                                             image_root=root, batch_size=batch_size))
        return score(labelled, predictions, self.metadata, self.normalizers)

    def extract(self, products: Iterable[Product | dict[str, Any]] | Product | dict[str, Any],
                attributes: Sequence[str] | None = None, **options: Any) -> list[Prediction]:
        """All predictions of :meth:`iter_extract` as a list (the same options, ``threshold=`` included)."""
        return list(self.iter_extract(products, attributes, **options))

    __call__ = extract

    def _inference_model(self, dtype: str) -> MXTModel:
        """The module that runs extraction at a resolved ``dtype`` (built once, then reused)."""
        if dtype not in self._inference_models:
            self._inference_models[dtype] = inference_model(self.model.eval(), dtype)
        return self._inference_models[dtype].eval()

    def _settings(self, batch_size: int | None, image_root: str | Path | None,
                  on_image_error: str, dtype: str | None = None) -> EngineSettings:
        model_config, extraction = self.config.model, self.config.extraction
        longest = self.metadata.max_answer_tokens if self.metadata else None
        max_new_tokens = (longest + model_config.answer_margin_tokens) if longest else model_config.max_answer_tokens
        root = image_root if image_root is not None else extraction.image_root
        return EngineSettings(
            batch_size=batch_size or extraction.batch_size, max_new_tokens=max_new_tokens,
            max_input_tokens=model_config.max_input_tokens, none_answer=model_config.none_answer,
            thresholds=self.thresholds, image_root=Path(root) if root is not None else None,
            max_image_pixels=extraction.max_image_pixels, on_image_error=on_image_error,
            urls=UrlPolicy.from_extraction(extraction),
            dtype=resolve_dtype(dtype or extraction.dtype, self.device),
            choose_among_known=extraction.choose_among_known, choose_text_span=extraction.choose_text_span,
            open_pair_new_share=extraction.open_pair_new_share,
            image_prior_weight=extraction.image_prior_weight,
            text_prior_weight=extraction.text_prior_weight, span_prior_share=extraction.span_prior_share,
        )
