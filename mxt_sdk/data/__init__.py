"""Data: records from data files -> validated products -> cleaned labels -> examples (prompt, answer)."""
from mxt_sdk.data.readers import load_products, read_products

__all__ = ["load_products", "read_products"]
