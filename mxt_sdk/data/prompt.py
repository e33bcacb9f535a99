"""The prompt layout: the one place that turns (attribute, product) into the generator's input, and
the one rule that cuts an over-long prompt to the input budget.

``question: <attribute> context: <product type> | <title> | <description> | <bullet> | ...``

The question comes first so that cutting to the input budget only ever shortens the context.

With ``model.context_encoding: per_product`` (:func:`fit_prompts` ``per_product=True``) the question and
the context are tokenized apart and their ids joined: the question keeps at most
:func:`question_budget` tokens and the context is cut by the rule below to the rest of the budget,
whatever the question, so every question asked of a product carries the same context tokens (which the
model then encodes once, :meth:`mxt_sdk.model.mxt.MXTModel.encode_text`).

The cutting rule (:func:`fit_prompts`, used alike by training and extraction): a prompt that fits
``max_input_tokens`` is left exactly as it is. A longer one keeps its question and product type (its
*head*: everything before the first separator after ``context:``), then as many of the following
words as fit, in order: the title, then the description, then the bullets. It is cut after a whole
word, never inside one, and a separator left dangling at the end goes too. So the title is kept
whole unless it alone overflows the budget, and the description and bullets give way first.
"""
from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from mxt_sdk.types import Product

SEPARATOR = " | "
#: the words that open the question and the context (extractive generators find the context by the latter)
QUESTION_MARKER, CONTEXT_MARKER = "question:", "context:"
_WORD = re.compile(r"\S+")


def build_context(product: Product) -> str:
    """The product's part of the prompt: its type and its texts, ``SEPARATOR``-joined."""
    texts = [product.title, product.description or "", *product.bullets]
    return SEPARATOR.join(part for part in [product.product_type, *texts] if part)


def build_prompt(attribute: str, product: Product) -> str:
    """The input text for asking ``attribute`` of ``product``, before any cut to the input budget
    (:func:`fit_prompts`)."""
    return prompt_with_context(attribute, build_context(product))


def prompt_with_context(attribute: str, context: str) -> str:
    """:func:`build_prompt` from the product's :func:`build_context`, for asking several attributes
    of one product without building its context again."""
    return f"{QUESTION_MARKER} {attribute} {CONTEXT_MARKER} {context}"


def head_end(prompt: str) -> int:
    """Where the part of ``prompt`` that is never cut ends: the first separator after the context
    marker (the question and the product type come before it); the whole prompt when it has none."""
    context = prompt.find(CONTEXT_MARKER)
    end = prompt.find(SEPARATOR, context + len(CONTEXT_MARKER)) if context >= 0 else -1
    return end if end >= 0 else len(prompt)


def cut_prompt(prompt: str, fits: Callable[[str], bool], hint: int | None = None) -> str:
    """The longest cut of ``prompt`` by the module's rule that ``fits``: its head, then whole words
    in order (a cut never ends on a bare separator). The head alone when no word more fits, even
    if the head does not fit either (the caller's last-resort cut from the end handles that).
    ``fits`` must be monotone: a prefix of a text that fits fits too. ``hint``, a character offset
    where the cut probably falls, only saves calls of ``fits`` (two when it is right)."""
    start = head_end(prompt)
    ends = [word.end() for word in _WORD.finditer(prompt, start) if word.group() != SEPARATOR.strip()]
    kept = _most_that_fit(len(ends), lambda words: fits(prompt[:ends[words - 1]]),
                          None if hint is None else bisect_right(ends, hint))
    return prompt[:ends[kept - 1]] if kept else prompt[:start]


def _most_that_fit(count: int, fits: Callable[[int], bool], guess: int | None) -> int:
    """The largest ``n`` in ``0 .. count`` with ``fits(n)`` (``fits(0)`` taken as true, ``fits``
    monotone), by bisection, first bracketed around ``guess`` when given."""
    low, high = 0, count  # fits(low); nothing above high fits
    if guess is not None and 0 < guess <= count:
        if not fits(guess):
            high = guess - 1
        elif guess == count or not fits(guess + 1):
            return guess
        else:
            low = guess + 1
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def find_subsequence(sequence: Sequence[int], pattern: Sequence[int], start: int = 0,
                     stop: int | None = None) -> int:
    """First index ``i`` in ``[start, stop)`` with ``sequence[i:i+len(pattern)] == pattern`` lying
    wholly before ``stop``; -1 if none (or ``pattern`` is empty)."""
    stop = len(sequence) if stop is None else stop
    width = len(pattern)
    if width == 0:
        return -1
    pattern = list(pattern)
    for i in range(start, stop - width + 1):
        if list(sequence[i:i + width]) == pattern:
            return i
    return -1


def context_marker_positions(tokenizer: Any, rows: Iterable[Sequence[int]]) -> tuple[list[int], int]:
    """Per row of prompt token ids, where its first ``context:`` marker starts as ``tokenizer`` spells it
    (-1 where there is none, or no tokenizer), and the marker's length in tokens."""
    marker = tokenizer(CONTEXT_MARKER, add_special_tokens=False)["input_ids"] if tokenizer is not None else []
    return [find_subsequence(ids, marker) for ids in rows], len(marker)


def question_budget(limit: int) -> int:
    """The most tokens a question keeps when question and context are tokenized apart (``per_product``):
    16, or a quarter of a budget under 64 tokens."""
    return min(16, limit // 4)


def fit_prompts(tokenizer: Any, limit: int, prompts: Sequence[str],
                per_product: bool = False) -> tuple[list[str], list[list[int]]]:
    """``prompts`` cut by the module's rule to at most ``limit`` tokens as ``tokenizer`` counts them
    (its end-of-sequence token included), and the token ids of each. A prompt that fits comes back
    unchanged (the same string); a cut one compares unequal to its original. Only a head longer than
    ``limit`` leaves ids over ``limit``: callers still cut those from the end. A fast tokenizer's
    character offsets say where the cut falls, so a cut prompt costs about two more tokenizations.

    ``per_product``: the question (before ``context:``, no end-of-sequence token) and the context are
    tokenized apart, the question cut to :func:`question_budget` tokens, the context to the rest of
    ``limit`` by the rule, and the ids joined (see the module docstring)."""
    if not per_product:
        return _fit_whole(tokenizer, limit, prompts)
    splits = [max(prompt.find(CONTEXT_MARKER), 0) for prompt in prompts]
    heads = [prompt[:split] for prompt, split in zip(prompts, splits)]
    questions = tokenizer([head.rstrip() for head in heads], add_special_tokens=False)["input_ids"]
    budget = question_budget(limit)
    contexts, context_ids = _fit_whole(tokenizer, limit - budget,
                                       [prompt[split:] for prompt, split in zip(prompts, splits)])
    fitted = [head + context if len(question) <= budget else f"{tokenizer.decode(question[:budget])} {context}"
              for head, question, context in zip(heads, questions, contexts)]
    return fitted, [question[:budget] + ids for question, ids in zip(questions, context_ids)]


def _fit_whole(tokenizer: Any, limit: int, prompts: Sequence[str]) -> tuple[list[str], list[list[int]]]:
    """:func:`fit_prompts` of whole prompts, tokenized at once."""
    offsets = bool(getattr(tokenizer, "is_fast", False))
    encoded = tokenizer(list(prompts), return_offsets_mapping=offsets) if offsets else tokenizer(list(prompts))
    fitted, ids = list(prompts), list(encoded["input_ids"])

    def fits(text: str) -> bool:
        return len(tokenizer(text)["input_ids"]) <= limit

    for i, row in enumerate(ids):
        if len(row) > limit:  # the last token that may stay before the end-of-sequence one ends at the hint
            hint = encoded["offset_mapping"][i][limit - 2][1] if offsets else None
            fitted[i] = cut_prompt(fitted[i], fits, hint)
            ids[i] = tokenizer(fitted[i])["input_ids"]
    return fitted, ids
