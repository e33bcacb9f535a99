"""The prompt layout: the one place that turns (attribute, product) into the generator's input.

``question: <attribute> context: <product type> | <title> | <description> | <bullet> | ...``

The question comes first so that truncation to the input budget only ever shortens the context.
"""
from __future__ import annotations

from mxt_sdk.types import Product

SEPARATOR = " | "


def build_prompt(attribute: str, product: Product) -> str:
    """The input text for asking ``attribute`` of ``product``."""
    context = [product.product_type, product.title, product.description or "", *product.bullets]
    return f"question: {attribute} context: " + SEPARATOR.join(part for part in context if part)
