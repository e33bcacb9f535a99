"""Unlabeled catalog text, for pretraining and tokenizers: product files of any reader format, or
plain text files with one text (e.g. a title) per line.

A product gives one text laid out as the context part of the prompt (product type, title,
description, bullets; :func:`mxt_sdk.data.prompt.build_context`), so pretraining reads what
fine-tuning will read. Its labels are ignored. Exact repeats are dropped, first occurrence kept.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mxt_sdk.data.prompt import build_context
from mxt_sdk.data.readers import read_products
from mxt_sdk.errors import DataFileError, DataFileNotFoundError, RecordError

__all__ = ["TEXT_SUFFIXES", "TextCorpus", "read_texts", "pieces_per_word", "check_tokenizer"]

log = logging.getLogger("mxt_sdk.data")

#: files read as plain text, one text per non-blank line (unless a reader is named)
TEXT_SUFFIXES = (".txt",)
#: more pieces per word than this on the training text means the tokenizer mostly spells words out
MAX_PIECES_PER_WORD = 3.0


@dataclass
class TextCorpus:
    """The distinct texts read, and per file how many records gave a text, were bad or repeated."""

    texts: list[str] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)


def _file_texts(path: Path, reader: str | None, counts: dict[str, Any]) -> Iterable[str]:
    if reader is None and path.suffix.lower() in TEXT_SUFFIXES:
        with open(path, encoding="utf-8", errors="replace") as handle:
            yield from (line.strip() for line in handle if line.strip())
        return
    for item in read_products(path, reader):
        if isinstance(item, RecordError):
            counts["rejected"] += 1
            if counts["rejected"] == 1:
                log.warning("%s: skipping bad records, e.g. %s", path.name, item)
        else:
            yield build_context(item)


def read_texts(paths: Sequence[str | Path], reader: str | None = None) -> TextCorpus:
    """The distinct texts of ``paths`` in file order. ``reader`` forces one reader for every file;
    by default each file's reader is detected, and ``.txt`` files are read line by line. Raises
    :class:`~mxt_sdk.errors.DataFileError` when no file gives any text."""
    corpus, seen = TextCorpus(), set()
    for path in map(Path, paths):
        if not path.is_file():
            raise DataFileNotFoundError(f"No such data file: {str(path)!r}.")
        counts = {"file": str(path), "texts": 0, "rejected": 0, "repeated": 0}
        for text in _file_texts(path, reader, counts):
            if text in seen:
                counts["repeated"] += 1
                continue
            seen.add(text)
            corpus.texts.append(text)
            counts["texts"] += 1
        log.info("%s: %d texts (%d repeated, %d bad records skipped)", path.name, counts["texts"],
                 counts["repeated"], counts["rejected"])
        corpus.files.append(counts)
    if not corpus.texts:
        raise DataFileError(f"No text in {', '.join(map(str, paths))}: every record was bad or empty.")
    return corpus


def pieces_per_word(tokenizer, texts: Sequence[str], sample: int = 2000) -> float:
    """Tokens (special tokens left out) per whitespace-separated word over the first ``sample`` texts."""
    texts = list(texts[:sample])
    words = sum(len(text.split()) for text in texts)
    pieces = sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]) if texts else 0
    return pieces / max(words, 1)


def check_tokenizer(tokenizer, texts: Sequence[str]) -> float:
    """:func:`pieces_per_word` on ``texts``, with a warning when it passes :data:`MAX_PIECES_PER_WORD`."""
    ratio = pieces_per_word(tokenizer, texts)
    if ratio > MAX_PIECES_PER_WORD:
        log.warning("The tokenizer splits a word into %.1f pieces on average on its own training text "
                    "(more than %.0f): it has too few pieces for this text or too little text to learn them. "
                    "Give it more text, or a larger vocabulary (tokenizer_vocab_size, mxt pretrain "
                    "--vocab-size).", ratio, MAX_PIECES_PER_WORD)
    return ratio
