"""The extraction engine: records -> requests -> image features (once per product) -> length-sorted
batches -> greedy answers -> :class:`Prediction` rows, one per requested (product, attribute).

Every requested pair yields exactly one row; a bad record or image yields rows whose ``error`` says
why, and never stops the job.
"""
from __future__ import annotations

import logging
import math
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mxt_sdk.data.metadata import CatalogMetadata
from mxt_sdk.data.prompt import build_prompt, fit_prompts
from mxt_sdk.devices import decode_threads
from mxt_sdk.errors import RecordError
from mxt_sdk.evaluation.metrics import written_in
from mxt_sdk.evaluation.thresholds import CallThresholds, Thresholds, accepts_answer
from mxt_sdk.images.batching import ImageLoader, pad_batch, truncate
from mxt_sdk.images.fetch import UrlPolicy
from mxt_sdk.inference.image_prior import ImageValuePrior, prior_applies
from mxt_sdk.inference.span_prior import SpanPrior
from mxt_sdk.inference.text_prior import TextValuePrior
from mxt_sdk.inference.known_values import KnownValueChooser
from mxt_sdk.model.mxt import ImageFeatures, ImagePixels, MXTModel
from mxt_sdk.model.numerics import autocast, channels_last_pixels
from mxt_sdk.plugins.components import Canonicalizer
from mxt_sdk.types import Prediction, Product, generated_id, product_from_record

ALL_ATTRIBUTES = "*"
#: decoded text, confidence, cut at the generation bound (no EOS), the path that decided it (DecidedBy)
Answer = tuple[str, float, bool, str]


logger = logging.getLogger(__name__)


@dataclass
class Request:
    """One input record and the attributes asked of it (or why it cannot be answered)."""

    where: str
    product_id: str
    product: Product | None
    attributes: list[str]
    error: str | None = None
    image_error: str | None = None
    image_data: bytes | None = None  #: the image's file bytes (e.g. uploaded), read instead of ``product.image``


#: a free answer the text states, on a pair with few enough known values for ``choose_among_known``, is kept
#: although no known value only where the pair's values are written in the text at least this often
STATED_PAIR_SHARE = 0.5


@dataclass
class EngineSettings:
    """What one extraction run needs besides the model."""

    batch_size: int
    max_new_tokens: int
    max_input_tokens: int
    none_answer: str
    thresholds: Thresholds | CallThresholds
    image_root: Path | None
    max_image_pixels: int
    on_image_error: str = "error"
    urls: UrlPolicy | None = None  #: image URL rules (None: URLs refused)
    dtype: str = "fp32"  #: a resolved mode of :mod:`mxt_sdk.model.numerics`
    choose_among_known: int = 0  #: pairs with at most this many known values answer the likeliest (0: off)
    #: pairs whose Good-Turing share of new values is above this are open: no known-value choice (None: none open)
    open_pair_new_share: float | None = None
    #: pairs whose training values were written in the text at least this often answer a span of it (None: off)
    choose_text_span: float | None = None
    #: weight of the image prior in choose_among_known's scores (0: unused)
    image_prior_weight: float = 1.0
    #: weight of the text prior in choose_among_known's scores (0: unused)
    text_prior_weight: float = 1.0
    #: pairs whose training values were written in the text at least this often answer the span prior's
    #: likeliest span where it is one (None: off)
    span_prior_share: float | None = None
    #: prompts encoded together within a generation batch (length-sorted groups, each cut to its own
    #: longest prompt); the decoder still runs ``batch_size`` at a time (see ``MXTModel.generate``)
    encode_rows: int = 32
    stats: dict[str, int] = field(default_factory=lambda: {"truncated_inputs": 0})


def make_requests(records: Iterable[Product | dict[str, Any] | RecordError],
                  attributes: Sequence[str] | Callable[[Product], list[str]] | None,
                  metadata: CatalogMetadata | None) -> Iterator[Request]:
    """Validate each record and decide which attributes to ask of it: the given list, a function of
    the product (e.g. its labelled attributes, for evaluation), or (None) those training saw for
    the product's type."""
    for position, record in enumerate(records):
        where = f"record {position}"
        try:
            if isinstance(record, RecordError):  # a reader's bad record: answered with error rows
                raise record
            product = (record if isinstance(record, Product)
                       else product_from_record(record, where, default_id=generated_id(position)))
        except RecordError as exc:
            raw_id = exc.record_id if exc.record_id not in (None, "") else (
                record.get("id") if isinstance(record, dict) else None)
            where = exc.record if isinstance(record, RecordError) else where
            asked = list(attributes) if isinstance(attributes, Sequence) else [ALL_ATTRIBUTES]
            yield Request(where, str(raw_id) if raw_id not in (None, "") else where, None,
                          asked, error=str(exc))
            continue
        if callable(attributes):
            yield Request(where, product.id, product, list(attributes(product)))
            continue
        if attributes is not None:
            yield Request(where, product.id, product, list(attributes))
            continue
        known = metadata.attributes_for(product.product_type) if metadata else []
        if known:
            yield Request(where, product.id, product, known)
        else:
            yield Request(where, product.id, product, [ALL_ATTRIBUTES],
                          error=f"{where} (id {product.id!r}): no attributes are known for product type "
                                f"{product.product_type!r}; pass attributes=[...]")


def load_pixels(requests: Sequence[Request], loader: ImageLoader) -> ImagePixels:
    """Decode each product's image once for every encoder (its ``image_data`` bytes when given, else the
    ``product.image`` reference); failures are noted on the request. A request that already has an
    ``image_error`` is not loaded again."""
    references = [None if r.product is None or r.error or r.image_error
                  else r.image_data if r.image_data is not None else r.product.image for r in requests]
    pixels, errors = loader.load(references)
    for request, error in zip(requests, errors):
        if error:
            request.image_error = f"{request.where} (id {request.product_id!r}), field 'image': {error}"
    return pixels


class Engine:
    """Runs extraction for one model; see the module docstring for the flow."""

    def __init__(self, model: MXTModel, tokenizer: Any, metadata: CatalogMetadata | None,
                 settings: EngineSettings, canonicalizer: Canonicalizer | None = None,
                 image_prior: ImageValuePrior | None = None, text_prior: TextValuePrior | None = None,
                 span_prior: SpanPrior | None = None):
        self.model, self.tokenizer, self.metadata, self.settings = model, tokenizer, metadata, settings
        self.span_prior = span_prior if settings.span_prior_share is not None else None
        self.canonicalizer = canonicalizer
        device = next(model.parameters()).device
        self.images = ImageLoader(model.preprocessing(), settings.image_root, settings.max_image_pixels,
                                  settings.urls, decode_threads=decode_threads(device)) if model.uses_images else None
        self.known = None
        if settings.choose_among_known > 0 and metadata is not None:
            if model.generator.scores_answers:
                use_prior = settings.image_prior_weight > 0 and prior_applies(model, image_prior)
                self.known = KnownValueChooser(model, tokenizer, metadata, settings.none_answer,
                                               settings.choose_among_known, settings.open_pair_new_share,
                                               image_prior if use_prior else None, settings.image_prior_weight,
                                               text_prior if settings.text_prior_weight > 0 else None,
                                               settings.text_prior_weight)
            else:
                logger.warning("extraction.choose_among_known is ignored: generator %r cannot score given "
                               "answers (its free answers are kept)", model.generator.name)
        self.binds_text = (settings.choose_text_span is not None and metadata is not None
                           and model.generator.binds_answers_to_text)
        if settings.choose_text_span is not None and metadata is not None and not self.binds_text:
            logger.warning("extraction.choose_text_span is ignored: generator %r cannot bind its answers to the "
                           "text", model.generator.name)

    def run(self, requests: Iterable[Request]) -> Iterator[Prediction]:
        """Predictions for ``requests`` in input order, a chunk of ``batch_size`` products at a time.

        With an image model, the next chunk's images are decoded on a background thread (by the
        loader's own pool of ``decode_threads``) while the model answers the current chunk; the
        rows and their order are the same as without the overlap."""
        chunks = self._chunks(requests)
        if self.images is None:
            for chunk in chunks:
                yield from self._run_chunk(chunk, None)
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mxt-images") as prefetch:
            pending: tuple[list[Request], Future] | None = None
            for chunk in chunks:
                decoding = prefetch.submit(load_pixels, chunk, self.images)
                if pending is not None:
                    yield from self._run_chunk(*pending)
                pending = (chunk, decoding)
            if pending is not None:
                yield from self._run_chunk(*pending)

    def _chunks(self, requests: Iterable[Request]) -> Iterator[list[Request]]:
        iterator = iter(requests)
        while chunk := list(islice(iterator, self.settings.batch_size)):
            yield chunk

    @torch.inference_mode()
    def _run_chunk(self, chunk: list[Request], decoding: Future | None) -> Iterator[Prediction]:
        device = next(self.model.parameters()).device
        features = None
        if self.images is not None:
            pixels = channels_last_pixels(decoding.result().to(device))
            with autocast(self.settings.dtype, device):
                features = self.model.encode_images(pixels)
        examples = [
            (row, attribute) for row, request in enumerate(chunk)
            if request.error is None and not (request.image_error and self.settings.on_image_error == "error")
            for attribute in request.attributes
        ]
        with autocast(self.settings.dtype, device):
            answers = self._answer(chunk, examples, features, device)
        canonical = self._canonicalize(chunk, answers)
        for row, request in enumerate(chunk):
            for attribute in request.attributes:
                yield self._prediction(request, attribute, answers.get((row, attribute)),
                                       canonical.get((row, attribute)),
                                       bool(features is not None and features.has_image[row]))

    def _canonicalize(self, chunk: list[Request], answers: dict[tuple[int, str], Answer]
                      ) -> dict[tuple[int, str], tuple[str, bool]]:
        """Canonical value and novelty of each stated answer (one batched call per chunk). An answer written
        in the product's text moves only to a known value that differs from it in case, spacing or
        punctuation (``16oz`` -> ``16 oz``), never to another value (a new brand ``belkami`` in the title
        stays ``belkami``, not the training brand ``belkali``); otherwise it is left to ``_prediction``."""
        if self.canonicalizer is None:
            return {}
        keys = [key for key, answer in answers.items() if self._value(answer[0]) is not None]
        queries = [(self._value(answers[key][0]), chunk[key[0]].product.product_type, key[1]) for key in keys]
        canonical = {}
        for key, (value, _, _), found in zip(keys, queries, self.canonicalizer.canonicalize_many(queries)):
            if _letters(found[0]) == _letters(value) or not written_in(value, chunk[key[0]].product.text):
                canonical[key] = found
        return canonical

    def _value(self, raw: str) -> str | None:
        return None if not raw or raw.casefold() == self.settings.none_answer.casefold() else raw

    def _answer(self, chunk: list[Request], examples: list[tuple[int, str]],
                features: ImageFeatures | None, device: torch.device) -> dict[tuple[int, str], Answer]:
        if not examples:
            return {}
        full = [build_prompt(attribute, chunk[row].product) for row, attribute in examples]
        limit = self.settings.max_input_tokens
        per_product = self.model.per_product
        prompts, encoded = fit_prompts(self.tokenizer, limit, full, per_product)  # the same cutting rule as training
        self.settings.stats["truncated_inputs"] += sum(
            cut != whole or len(ids) > limit for cut, whole, ids in zip(prompts, full, encoded))
        encoded = [truncate(ids, limit) for ids in encoded]
        order = sorted(range(len(examples)), key=self._length_order(examples, encoded, per_product))
        answers = {}
        for start in range(0, len(order), self.settings.batch_size):
            batch = order[start:start + self.settings.batch_size]
            input_ids, attention_mask = pad_batch([encoded[i] for i in batch], self.tokenizer.pad_token_id)
            rows = torch.tensor([examples[i][0] for i in batch], device=device)
            input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
            for i, answer in zip(batch, self._decode(input_ids, attention_mask, features, rows)):
                answers[examples[i]] = (*answer, "generated")
            if self.known is not None:
                self._choose_known(chunk, [examples[i] for i in batch], answers, input_ids, attention_mask, features,
                                   rows)
            self._choose_span(chunk, [examples[i] for i in batch], answers)
            self._bind_to_text(chunk, [examples[i] for i in batch], answers, input_ids, attention_mask, features, rows)
        return answers

    @staticmethod
    def _length_order(examples: list[tuple[int, str]], encoded: list[list[int]],
                      per_product: bool) -> Callable[[int], tuple[int, int]]:
        """The sort key of the examples' batching: by prompt length; ``per_product``, by the product's longest
        prompt and then the product, so a product's questions share batches (and one encoding of its context)."""
        if not per_product:
            return lambda i: (len(encoded[i]), 0)
        longest: dict[int, int] = {}
        for (row, _), ids in zip(examples, encoded):
            longest[row] = max(longest.get(row, 0), len(ids))
        return lambda i: (longest[examples[i][0]], examples[i][0])

    def _decode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, features: ImageFeatures | None,
                rows: torch.Tensor, bound: bool = False) -> list[tuple[str, float, bool]]:
        """Greedy ``(answer, confidence, truncated)`` per row (``bound``: every row bound to its text)."""
        output = self.model.generate(input_ids, attention_mask, features, self.settings.max_new_tokens,
                                     image_index=rows, encode_rows=self.settings.encode_rows,
                                     **({"bound_rows": torch.ones(len(rows), dtype=torch.bool, device=rows.device),
                                         "none_answer": self.settings.none_answer} if bound else {}))
        texts = self.tokenizer.batch_decode(output.token_ids.tolist(), skip_special_tokens=True)
        confidences = output.token_logprobs.sum(dim=1).exp().clamp(0.0, 1.0).tolist()
        eos = getattr(self.tokenizer, "eos_token_id", None)
        ended = (output.token_ids == eos).any(dim=1).tolist() if eos is not None else [True] * len(texts)
        return [(" ".join(text.split()), confidence, not done) for text, confidence, done in zip(texts, confidences, ended)]

    def _choose_span(self, chunk: list[Request], batch: list[tuple[int, str]], answers: dict) -> None:
        """Answer the span prior's likeliest run of the text (path ``span_prior``, its probability the confidence)
        for the examples of ``batch`` whose pair the prior answers and wrote its training values in the text at
        least ``span_prior_share`` of the time (:meth:`SpanPrior.written_share`: every label, before cleaning
        rules drop or rewrite values), where that run is a span and not "not written"; the rest keep
        their answer. Runs after the known-value choice and before binding to the text, so a span it gives
        is stated and is not bound again."""
        if self.span_prior is None:
            return
        for row, attribute in batch:
            product = chunk[row].product
            share = self.span_prior.written_share(product.product_type, attribute)
            if share is None or share < self.settings.span_prior_share:
                continue
            best = self.span_prior.best(product, attribute)
            if best is not None and best[0] is not None:
                answers[(row, attribute)] = (best[0], best[1], False, "span_prior")

    def _bind_to_text(self, chunk: list[Request], batch: list[tuple[int, str]], answers: dict, input_ids: torch.Tensor,
                      attention_mask: torch.Tensor, features: ImageFeatures | None, rows: torch.Tensor) -> None:
        """Answer again, bound to the text (``choose_text_span``), the examples of ``batch`` whose pair states its
        values in the text and whose answer so far (free or known value) is neither the none answer nor stated by
        the product's text (a recalled training value or a fragment where the text has a new value); their path
        becomes ``span``. Runs after the known-value choice, which keeps the known values the text states."""
        none = self.settings.none_answer.casefold()
        again = [n for n, (row, attribute) in enumerate(batch)
                 if self._text_bound(chunk[row].product, attribute)
                 and (raw := answers[(row, attribute)][0]).casefold() != none
                 and not (raw and written_in(raw, chunk[row].product.text))]
        if not again:
            return
        keep = torch.tensor(again, device=input_ids.device)
        for n, answer in zip(again, self._decode(input_ids[keep], attention_mask[keep], features, rows[keep],
                                                 bound=True)):
            answers[batch[n]] = (*answer, "span")

    def _text_bound(self, product: Product, attribute: str) -> bool:
        """Whether this question's answer is bound to a run of the product's text: its pair's training values
        were written in their text at least ``choose_text_span`` of the time (brands, model names)."""
        if not self.binds_text:
            return False
        share = self.metadata.written_share(product.product_type, attribute)
        return share is not None and share >= self.settings.choose_text_span

    def _choose_known(self, chunk: list[Request], batch: list[tuple[int, str]], answers: dict,
                      input_ids: torch.Tensor, attention_mask: torch.Tensor, features: ImageFeatures | None,
                      rows: torch.Tensor) -> None:
        """Replace the free answers of ``batch`` by the likeliest known value of their pair, except the
        answers written in the product's text that may stand (:meth:`_may_be_new`: a stated value is kept, so
        values new to training stay possible)."""
        questions = []
        for row, attribute in batch:
            product, value = chunk[row].product, self._value(answers[(row, attribute)][0])
            kept = value is not None and written_in(value, product.text) and self._may_be_new(product, attribute, value)
            questions.append(None if kept else (product, attribute))
        chosen = self.known.choose(input_ids, attention_mask, features, rows, questions)
        for example, choice in zip(batch, chosen):
            if choice is not None:
                answers[example] = (choice[0], choice[1], False, choice[2])

    def _may_be_new(self, product: Product, attribute: str, value: str) -> bool:
        """Whether a free answer the text states may stand against the known values: it is one of them, or its
        pair states its values in the text at least ``STATED_PAIR_SHARE`` of the time (or the model has no
        counts), so a new value would be written there too. On a pair whose values are rarely written (a fit,
        a type), a stated answer that is no known value is another attribute's word ("cotton" as a fit)."""
        if self.metadata.knows_value(product.product_type, attribute, value):
            return True
        share = self.metadata.written_share(product.product_type, attribute)
        return share is None or share >= STATED_PAIR_SHARE

    def _prediction(self, request: Request, attribute: str, answer: Answer | None,
                    canonical: tuple[str, bool] | None, image_used: bool) -> Prediction:
        base = dict(product_id=request.product_id, attribute=attribute,
                    product_type=request.product.product_type if request.product else None)
        if request.error:
            return Prediction(**base, error=request.error)
        error = request.image_error
        if answer is None:
            return Prediction(**base, error=error or "not answered")
        raw, confidence, truncated, decided_by = answer
        confidence = confidence if math.isfinite(confidence) else 0.0
        threshold, source = self.settings.thresholds.lookup(request.product.product_type, attribute, decided_by)
        value, novel = self._value(raw), False
        if value is not None and canonical is not None:
            value, novel = canonical
        elif value is not None and self.metadata is not None:
            novel = self.metadata.knows_value(request.product.product_type, attribute, value) is False
        return Prediction(
            **base, value=value, raw_value=raw, confidence=confidence,
            accepted=accepts_answer(value, confidence, threshold),
            novel=novel, in_text=value is not None and written_in(value, request.product.text),
            image_used=image_used, error=error, truncated=truncated, threshold_source=source, decided_by=decided_by,
        )


def _letters(value: str) -> str:
    """``value`` case-folded without spaces or punctuation (what a canonical form may change)."""
    return "".join(ch for ch in value.casefold() if ch.isalnum())
