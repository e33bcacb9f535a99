"""The data side of a training run, in bounded memory: staged products (:mod:`mxt_sdk.training.staging`)
-> label cleaning in passes that keep only counts -> cached example shards (labels, no prompts;
:mod:`mxt_sdk.training.example_cache`) -> the tokenizer (trained here when
the generator has none) -> the generation bound, from the distinct answers; the catalog metadata is
counted when the model is saved (its own pass, cached). Every pass reads the
staged files one chunk at a time; the examples get their prompts and are tokenized batch by batch as
training draws them, not here.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from mxt_sdk.config import TrainingConfig
from mxt_sdk.data.cleaning import plan_cleaning
from mxt_sdk.data.examples import ExampleEncoder
from mxt_sdk.data.scrambles import ValueScrambler
from mxt_sdk.data.subwords import subword_splitter
from mxt_sdk.plugins import manager
from mxt_sdk.training.example_cache import (DRAWN_COLUMNS, ExampleShards, InOrderPrompts, build_examples, cache_key,
                                            catalog_metadata, distinct_values, open_examples, remove_token_caches)
from mxt_sdk.training.staging import ProductTable, read_batches

__all__ = ["prepare_data", "tokenizer_corpus", "CLEANING_FILE", "TOKENIZER_EXAMPLES"]

log = logging.getLogger("mxt_sdk.training")

CLEANING_FILE = "cleaning.json"
#: The tokenizer is trained on the prompts and answers of at most this many training examples, evenly
#: spaced over the catalog (all of them when there are fewer), so its trainer's memory and time stop
#: growing with the catalog; a sample this size holds every frequent piece.
TOKENIZER_EXAMPLES = 100_000


def tokenizer_corpus(shards: ExampleShards, limit: int | None = None) -> Iterator[str]:
    """Prompt, answer, prompt, ... of the training examples, or of ``limit`` (default
    :data:`TOKENIZER_EXAMPLES`) of them evenly spaced, in order (the prompts built as training
    builds them; the products read forward, :class:`InOrderPrompts`)."""
    limit, start, prompts = limit or TOKENIZER_EXAMPLES, 0, InOrderPrompts(shards.products)
    for batch in read_batches(shards.paths):
        # row i is taken where the sample's running count i * limit // rows steps up
        taken = [i for i in range(batch.num_rows)
                 if (start + i + 1) * limit // shards.rows > (start + i) * limit // shards.rows]
        start += batch.num_rows
        rows = batch.select(DRAWN_COLUMNS).take(taken).to_pydict()
        for prompt, answer in zip(prompts(rows), rows["answer"]):
            yield prompt
            yield answer


def prepare_data(extractor, config: TrainingConfig, run_dir: Path, accelerator, train: ProductTable,
                 val: ProductTable | None) -> dict[str, Any]:
    """Everything the training loop needs from the data: ``train`` / ``val`` (memory-mapped example
    datasets that tokenize each batch as it is drawn, :class:`ExampleEncoder`), ``images`` (the example
    shards, for image references), ``metadata`` (a call that returns the catalog metadata,
    :func:`catalog_metadata`: counted when called, for the saved model), ``max_answer_tokens`` (the
    generation bound: the longest training answer in tokens, from the distinct answers), ``cleaning``
    (the summary) and the fitted
    ``normalizers``. The main process builds the example cache first; the other processes then read it."""
    model_config, main = extractor.config.model, accelerator.is_main_process
    normalizers = [manager.create("normalizers", s.name, s.options) for s in config.normalizers]
    train_labels = train.label_counts()
    plans = {"train": plan_cleaning(train_labels, normalizers)}
    summary = plans["train"].summary
    log.info("Label cleaning (%s): %d stated labels -> %d; details in %s",
             ", ".join(n.name for n in normalizers) or "none", summary["labels_before"],
             summary["labels_after"], CLEANING_FILE)
    if val is not None:
        plans["val"] = plan_cleaning(val.label_counts(), normalizers, fit=False)
    tables = {"train": train, "val": val}
    scrambler = (ValueScrambler(config.scramble_copied_values, config.seed, config.scramble_decoys)
                 if config.scramble_copied_values > 0 else None)
    key = cache_key([t.fingerprint for t in tables.values() if t is not None],
                    [s.model_dump(mode="json") for s in config.normalizers], model_config.none_answer,
                    *([f"scrambled-{config.scramble_copied_values}-{config.seed}"
                       + ("-decoys" if config.scramble_decoys else "")] if scrambler else []))
    with accelerator.main_process_first():
        examples = build_examples(
            run_dir, key, {split: (tables[split], plan) for split, plan in plans.items()}, model_config.none_answer,
            write=main, scrambler=scrambler)
    generator = extractor.model.generator
    if generator.needs_tokenizer_training:
        generator.train_tokenizer(tokenizer_corpus(examples["train"]))
        log.info("Trained a %d-token tokenizer on the training text", len(generator.tokenizer))
    tokenizer, limit = generator.tokenizer, model_config.max_input_tokens
    per_product = model_config.context_encoding == "per_product"
    encoders = {"train": ExampleEncoder(tokenizer, limit, subword_splitter(tokenizer, config.subword_regularization,
                                                                          config.seed), per_product),
                "val": ExampleEncoder(tokenizer, limit, per_product=per_product)}
    if main:
        remove_token_caches(run_dir)
    longest = encoders["train"].longest_answer(distinct_values(examples["train"], "answer"))
    return {"train": open_examples(examples["train"], encoders["train"]),
            "val": open_examples(examples["val"], encoders["val"]) if "val" in examples else None,
            "images": examples, "metadata": partial(catalog_metadata, run_dir, key, train, plans["train"], train_labels, write=main),
            "max_answer_tokens": max(longest, 1), "cleaning": summary, "normalizers": normalizers}
