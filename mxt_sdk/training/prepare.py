"""The data side of a training run, in bounded memory: staged products (:mod:`mxt_sdk.training.staging`)
-> label cleaning in passes that keep only counts -> catalog metadata -> cached example shards ->
the tokenizer (trained here when the generator has none) -> cached token shards
(:mod:`mxt_sdk.training.example_cache`). Every pass reads the staged files one chunk at a time.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mxt_sdk.config import TrainingConfig
from mxt_sdk.data.cleaning import plan_cleaning
from mxt_sdk.data.examples import example_tokenizer, metadata_from_labels
from mxt_sdk.data.scrambles import ValueScrambler
from mxt_sdk.data.subwords import subword_splitter
from mxt_sdk.plugins import manager
from mxt_sdk.training.example_cache import (ExampleShards, build_examples, cache_key, token_stats,
                                            tokenize_shards, tokenizer_identity)
from mxt_sdk.training.staging import ProductTable, read_arrow

__all__ = ["prepare_data", "tokenizer_corpus", "CLEANING_FILE", "TOKENIZER_EXAMPLES"]

log = logging.getLogger("mxt_sdk.training")

CLEANING_FILE = "cleaning.json"
#: The tokenizer is trained on the prompts and answers of at most this many training examples, evenly
#: spaced over the catalog (all of them when there are fewer), so its trainer's memory and time stop
#: growing with the catalog; a sample this size holds every frequent piece.
TOKENIZER_EXAMPLES = 100_000


def tokenizer_corpus(shards: ExampleShards, limit: int | None = None) -> Iterator[str]:
    """Prompt, answer, prompt, ... of the training examples, or of ``limit`` (default
    :data:`TOKENIZER_EXAMPLES`) of them evenly spaced, in order."""
    limit, index = limit or TOKENIZER_EXAMPLES, 0
    for batch in read_arrow(shards.paths, ["prompt", "answer"]):
        for prompt, answer in zip(batch["prompt"], batch["answer"]):
            if (index + 1) * limit // shards.rows > index * limit // shards.rows:
                yield prompt
                yield answer
            index += 1


def prepare_data(extractor, config: TrainingConfig, run_dir: Path, accelerator, train: ProductTable,
                 val: ProductTable | None) -> dict[str, Any]:
    """Everything the training loop needs from the data: ``train`` / ``val`` (memory-mapped
    tokenized datasets), ``images`` (the token shards, for image references), ``metadata``,
    ``cleaning`` (the summary), ``truncated`` (prompts cut) and the fitted ``normalizers``. The main
    process builds the caches first; the other processes then read them."""
    model_config, main = extractor.config.model, accelerator.is_main_process
    normalizers = [manager.create("normalizers", s.name, s.options) for s in config.normalizers]
    plans = {"train": plan_cleaning(train.label_rows(), normalizers)}
    summary = plans["train"].summary
    log.info("Label cleaning (%s): %d stated labels -> %d; details in %s",
             ", ".join(n.name for n in normalizers) or "none", summary["labels_before"],
             summary["labels_after"], CLEANING_FILE)
    if val is not None:
        plans["val"] = plan_cleaning(val.label_rows(), normalizers, fit=False)
    metadata = metadata_from_labels((pt, plans["train"].relabel(pt, attrs)) for pt, attrs in train.label_rows())
    tables = {"train": train, "val": val}
    scrambler = (ValueScrambler(config.scramble_copied_values, config.seed)
                 if config.scramble_copied_values > 0 else None)
    key = cache_key([t.fingerprint for t in tables.values() if t is not None],
                    [s.model_dump(mode="json") for s in config.normalizers], model_config.none_answer,
                    *(["text-free-copies"] if config.text_free_copies else []),
                    *([f"scrambled-{config.scramble_copied_values}-{config.seed}"] if scrambler else []))
    with accelerator.main_process_first():
        examples = build_examples(run_dir, key, {split: (tables[split], plan) for split, plan in plans.items()},
                                  model_config.none_answer, write=main, text_free_copies=config.text_free_copies,
                                  scrambler=scrambler)
    generator = extractor.model.generator
    if generator.needs_tokenizer_training:
        generator.train_tokenizer(tokenizer_corpus(examples["train"]))
        log.info("Trained a %d-token tokenizer on the training text", len(generator.tokenizer))
    tokenizer, limit = generator.tokenizer, model_config.max_input_tokens
    splitter = subword_splitter(tokenizer, config.subword_regularization, config.seed)
    maps = {"train": example_tokenizer(tokenizer, limit, splitter), "val": example_tokenizer(tokenizer, limit)}
    token_key = cache_key(key, tokenizer_identity(tokenizer), limit, config.subword_regularization,
                          config.seed if splitter is not None else None)
    with accelerator.main_process_first():
        tokens = tokenize_shards(run_dir, token_key, examples, maps, write=main)
    longest, truncated = token_stats(tokens["train"][1])
    metadata.max_answer_tokens = max(longest, 1) if examples["train"].rows else 1
    return {"train": tokens["train"][0], "val": tokens["val"][0] if "val" in tokens else None,
            "images": {split: shards for split, (_, shards) in tokens.items()}, "metadata": metadata,
            "cleaning": summary, "truncated": truncated, "normalizers": normalizers}
