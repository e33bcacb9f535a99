"""A span prior: which run of the product's text is the value, judged by where it sits.

A generator trained from scratch on a few thousand titles learns which *pieces* are values, not *where* a
title puts them; for a value it never saw it copies the wrong words (OA-Mine: "Sanuk Men's Vagabond Slip
On" -> brand ``vagabond slip``; benchmarks/HISTORY.md, "Copying on real catalogs"). The span prior is a
linear model of the other kind, fitted after training on the same products: for each question it scores
every candidate span of the text (:mod:`mxt_sdk.inference.span_features`) and a "none" candidate (the
value is not written), and the softmax over them is the probability that each is the answer.

**Fitting.** Only pairs whose training values are written in their text at least ``min_written_share`` of
the time are fitted and answered (extractive pairs: brands, model names, sizes, colours named in the
title). Every labelled attribute of the training products counts, values seen once included (the cleaning
rules that drop them for the generator would drop exactly the new values the prior must learn to find).
A question's target is every candidate whose letters and digits equal its value's (or "none" where no
candidate does, or the label is null); the loss is the negative log of their total probability, minimised by Adam over
seeded mini-batches from zero weights. The "is a training value" features of a training question leave its
own label out, so the prior learns what a new value looks like as well as a known one.

**Use.** :meth:`SpanPrior.best` gives the likeliest candidate of a question (None for "none") and its
probability; the extraction engine answers it on pairs with ``extraction.span_prior_share`` (path
``span_prior``).

Everything is a function of the training products, their order and the options: the same data gives the
same file.
"""
from __future__ import annotations

import json
import random
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from mxt_sdk import progress
from mxt_sdk.config import SpanPriorConfig
from mxt_sdk.data.metadata import pair_key
from mxt_sdk.evaluation.metrics import written_in
from mxt_sdk.inference.span_features import (NONE_FEATURE, FeatureHasher, candidate_spans, match_key, span_features,
                                             tokens, word_key)
from mxt_sdk.storage import write_json
from mxt_sdk.types import Product

__all__ = ["SpanPrior", "WEIGHTS_FILE", "INDEX_FILE"]

WEIGHTS_FILE = "span_prior.safetensors"
INDEX_FILE = "span_prior.json"
VERSION = 1


class _Question:
    """One question's hashed candidates, packed: bucket ids end to end, each candidate's count, targets."""

    __slots__ = ("ids", "counts", "targets")

    def __init__(self, ids: array, counts: array, targets: list[int]):
        self.ids, self.counts, self.targets = ids, counts, targets


class SpanPrior:
    """Hashed linear scores over candidate spans, one softmax per question; see the module docstring."""

    def __init__(self, weight: torch.Tensor, pairs: dict[str, float], values: dict[str, dict[str, int]],
                 max_tokens: int, max_span_tokens: int):
        self.weight = weight.float().reshape(-1)
        self.pairs = dict(pairs)  # fitted pair -> share of its training labels written in their text
        self.values = values  # fitted pair -> {word_key(value): count} over every training label
        self.max_tokens, self.max_span_tokens = max_tokens, max_span_tokens
        self._words = {pair: _word_counts(counts) for pair, counts in values.items()}
        self._hasher = FeatureHasher(self.weight.numel())

    @property
    def buckets(self) -> int:
        return self.weight.numel()

    def applies(self, product_type: str | None, attribute: str) -> bool:
        """Whether the prior answers this pair (it was fitted on it)."""
        return pair_key(product_type or "", attribute) in self.pairs

    def written_share(self, product_type: str | None, attribute: str) -> float | None:
        """The share of the pair's training labels (all of them, before any cleaning) whose value is written in
        their product's text; None for a pair the prior was not fitted on."""
        return self.pairs.get(pair_key(product_type or "", attribute))

    # ------------------------------------------------------------------ features
    def _question(self, text: str, product_type: str, attribute: str, leave_out: str | None = None
                  ) -> tuple[list[str], _Question]:
        """The candidate texts of a question (``None`` for "none" last) and their hashed features;
        ``leave_out``: a training question's own value key, not counted as known."""
        pair = pair_key(product_type, attribute)
        counts, words = self.values.get(pair, {}), self._words.get(pair, Counter())
        own_words = Counter(leave_out.split()) if leave_out else Counter()

        def known(key: str) -> bool:
            return counts.get(key, 0) - (key == leave_out) > 0

        def known_words(word: str) -> bool:
            return words.get(word, 0) - own_words.get(word, 0) > 0

        found = tokens(text, self.max_tokens)
        spans = candidate_spans(text, found, self.max_span_tokens)
        keys = (f"A:{attribute.casefold()}", f"P:{pair}")
        ids, sizes = array("i"), array("i")
        for features in [*span_features(found, spans, known, known_words), [NONE_FEATURE]]:
            bucket_ids = self._hasher(features, keys)
            ids.extend(bucket_ids)
            sizes.append(len(bucket_ids))
        return [span.text for span in spans] + [None], _Question(ids, sizes, [])

    # ------------------------------------------------------------------ use
    def best(self, product: Product, attribute: str) -> tuple[str | None, float] | None:
        """The likeliest candidate of the question (the product's own characters; None: "not written") and
        its probability; None when the prior does not answer the pair."""
        if not self.applies(product.product_type, attribute):
            return None
        texts, question = self._question(product.text, product.product_type or "", attribute)
        probabilities = torch.softmax(_candidate_scores(self.weight.unsqueeze(1), [question]), 0)
        position = int(probabilities.argmax())
        return texts[position], float(probabilities[position])

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, products: Callable[[], Iterable[Product]], *, seed: int = 0, **options: Any) -> "SpanPrior":
        """Fit on the labelled attributes of ``products()`` (called twice: counting, then features); ``options``
        are :class:`~mxt_sdk.config.SpanPriorConfig`'s (its defaults for the rest); at most ``max_questions``
        questions, a seeded sample when there are more. A null or blank label counts as a value not written."""
        settings = SpanPriorConfig(**options)
        values: dict[str, Counter] = defaultdict(Counter)
        written, labels = Counter(), Counter()
        asked = []  # (product row, attribute, pair) of every label, in order
        for row, product in enumerate(products()):
            text = product.text
            for attribute, value in product.attributes.items():
                pair = pair_key(product.product_type or "", attribute)
                asked.append((row, attribute, pair))
                labels[pair] += 1
                if _stated(value):
                    values[pair][word_key(value)] += 1
                    written[pair] += written_in(value, text)
        if not values:
            raise ValueError("the span prior needs labelled training products")
        fitted = {pair: written[pair] / labels[pair] for pair in sorted(values)
                  if written[pair] / labels[pair] >= settings.min_written_share}
        prior = cls(torch.zeros(1 << settings.hash_bits), fitted,
                    {pair: dict(sorted(values[pair].items())) for pair in fitted}, settings.max_tokens,
                    settings.max_span_tokens)
        asked = [(row, attribute) for row, attribute, pair in asked if pair in fitted]
        keep = set(random.Random(seed).sample(range(len(asked)), settings.max_questions)) \
            if len(asked) > settings.max_questions else None
        questions = []
        wanted = defaultdict(list)
        for n, (row, attribute) in enumerate(asked):
            if keep is None or n in keep:
                wanted[row].append(attribute)
        for row, product in enumerate(progress.bar(iterable=products(), desc="Span prior: candidates",
                                                   unit="product")):
            for attribute in wanted.get(row, ()):
                value = product.attributes[attribute] if _stated(product.attributes[attribute]) else ""
                texts, question = prior._question(product.text, product.product_type or "", attribute,
                                                  word_key(value))
                target = match_key(value)
                question.targets = [i for i, t in enumerate(texts[:-1])
                                    if target and target.startswith(match_key(t[0])) and match_key(t) == target] or [
                    len(texts) - 1]
                questions.append(question)
        prior.weight = _train(questions, prior.buckets, settings.epochs, settings.learning_rate, settings.batch_size,
                              seed)
        return prior

    # ------------------------------------------------------------------ files
    def save(self, directory: str | Path) -> None:
        """Write ``span_prior.safetensors`` (the hashed weights) and ``span_prior.json`` (options, fitted pairs,
        each fitted pair's training value keys and counts) into ``directory``."""
        directory = Path(directory)
        save_file({"weight": self.weight.contiguous()}, str(directory / WEIGHTS_FILE))
        write_json(directory / INDEX_FILE, {"version": VERSION, "max_tokens": self.max_tokens,
                                            "max_span_tokens": self.max_span_tokens, "pairs": self.pairs,
                                            "values": self.values})

    @classmethod
    def load(cls, directory: str | Path) -> "SpanPrior | None":
        """The prior saved in ``directory``, or None when there is none."""
        directory = Path(directory)
        if not (directory / INDEX_FILE).exists():
            return None
        index = json.loads((directory / INDEX_FILE).read_text(encoding="utf-8"))
        if index.get("version") != VERSION:
            raise ValueError(f"{directory / INDEX_FILE}: span prior version {index.get('version')!r}, "
                             f"this mxt_sdk reads version {VERSION}")
        weight = load_file(str(directory / WEIGHTS_FILE))["weight"]
        return cls(weight, index["pairs"], index["values"], index["max_tokens"], index["max_span_tokens"])


def _stated(value: str | None) -> bool:
    """Whether a label gives a value (a null or blank one says the product has none: its target is "none")."""
    return bool(value and value.strip())


def _word_counts(counts: dict[str, int]) -> Counter:
    """How many training labels of a pair use each word (``counts`` maps :func:`word_key` s to counts)."""
    words: Counter = Counter()
    for key, count in counts.items():
        for word in key.split():
            words[word] += count
    return words


def _train(questions: list[_Question], buckets: int, epochs: int, learning_rate: float, batch_size: int,
           seed: int) -> torch.Tensor:
    """Adam over seeded mini-batches of questions from zero weights (see the module docstring)."""
    weight = torch.zeros(buckets, 1, requires_grad=True)
    optimizer = torch.optim.Adam([weight], lr=learning_rate)
    order = list(range(len(questions)))
    shuffle = random.Random(seed)
    steps = epochs * ((len(order) + batch_size - 1) // batch_size)
    with progress.bar(total=steps, desc="Span prior: fitting", unit="step") as bar:
        for _ in range(epochs):
            shuffle.shuffle(order)
            for start in range(0, len(order), batch_size):
                loss = _batch_loss(weight, [questions[i] for i in order[start:start + batch_size]])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                bar.update(1)
    return weight.detach().reshape(-1)


def _candidate_scores(weight: torch.Tensor, questions: list[_Question]) -> torch.Tensor:
    """Every candidate's score (the sum of its buckets' weights, ``weight`` being ``[buckets, 1]``), the questions'
    candidates end to end."""
    ids = torch.cat([torch.frombuffer(q.ids, dtype=torch.int32) for q in questions]).long()
    counts = torch.cat([torch.frombuffer(q.counts, dtype=torch.int32) for q in questions]).long()
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)[:-1]])
    return torch.nn.functional.embedding_bag(ids, weight, offsets, mode="sum").squeeze(1)


def _batch_loss(weight: torch.Tensor, batch: list[_Question]) -> torch.Tensor:
    scores = _candidate_scores(weight, batch)
    sizes = [len(q.counts) for q in batch]
    rows = torch.repeat_interleave(torch.arange(len(batch)), torch.tensor(sizes))
    columns = torch.cat([torch.arange(size) for size in sizes])
    padded = torch.full((len(batch), max(sizes)), float("-inf")).index_put((rows, columns), scores)
    target = torch.zeros_like(padded, dtype=torch.bool)
    for row, question in enumerate(batch):
        target[row, question.targets] = True
    log_probs = torch.log_softmax(padded, 1)
    return -torch.logsumexp(log_probs.masked_fill(~target, float("-inf")), 1).mean()
