"""The prompt layout: the one place that turns (attribute, product) into the generator's input.

``question: <attribute> context: <product type> | <title> | <description> | <bullet> | ...``

The question comes first so that truncation to the input budget only ever shortens the context.
"""
from __future__ import annotations

from mxt_sdk.types import Product

SEPARATOR = " | "
#: the words that open the question and the context (extractive generators find the context by the latter)
QUESTION_MARKER, CONTEXT_MARKER = "question:", "context:"


def build_context(product: Product, with_text: bool = True) -> str:
    """The product's part of the prompt: its type and (``with_text``) its texts, ``SEPARATOR``-joined."""
    texts = [product.title, product.description or "", *product.bullets] if with_text else []
    return SEPARATOR.join(part for part in [product.product_type, *texts] if part)


def build_prompt(attribute: str, product: Product, with_text: bool = True) -> str:
    """The input text for asking ``attribute`` of ``product`` (without its texts: only the product type)."""
    return prompt_with_context(attribute, build_context(product, with_text))


def prompt_with_context(attribute: str, context: str) -> str:
    """:func:`build_prompt` from the product's :func:`build_context`, for asking several attributes
    of one product without building its context again."""
    return f"{QUESTION_MARKER} {attribute} {CONTEXT_MARKER} {context}"
