"""Batch extraction on a Ray cluster (optional extra ``mxt-sdk[ray]``).

:func:`extract_with_ray` maps a Ray Dataset of product rows through :class:`ExtractionActor` with
``Dataset.map_batches``: Ray runs a pool of actors, each loading the model once, and streams batches
of products through them. The result is a Ray Dataset with one row per requested (product,
attribute) and the :class:`~mxt_sdk.Prediction` fields as columns. Ray does the scheduling,
retries and spilling; mxt_sdk adds nothing of its own.

    import ray
    from mxt_sdk.inference.ray import extract_with_ray

    products = ray.data.read_json("s3://bucket/catalog/")           # rows with Product fields
    predictions = extract_with_ray(products, "my-model", concurrency=8)
    predictions.write_parquet("s3://bucket/predictions/")
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from mxt_sdk.extractor import Extractor  # Ray actors drive a whole Extractor: this module sits above it
from mxt_sdk.types import Prediction, Product

#: Product fields read from a row; ``attributes`` (labels) are not needed to extract.
_INPUT_FIELDS = tuple(name for name in Product.model_fields if name != "attributes")


def _plain(value: Any) -> Any:
    """Arrow/pandas cell -> plain Python (arrays to lists, NaN to None)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _records(batch: Any) -> list[dict[str, Any]]:
    """Product records from a pandas DataFrame batch, keeping only Product fields that are set."""
    rows = batch.to_dict("records")
    return [{k: _plain(row[k]) for k in _INPUT_FIELDS if k in row and _plain(row[k]) is not None}
            for row in rows]


class ExtractionActor:
    """A Ray Data callable class: loads the model once per actor, then extracts batch after batch."""

    def __init__(self, model_dir: str, attributes: Sequence[str] | None = None, image_root: str | None = None,
                 batch_size: int | None = None, device: str | None = None, on_image_error: str = "error",
                 allow_urls: bool = False):
        self.extractor = Extractor.from_pretrained(model_dir, device=device)
        if allow_urls:  # the same URL policy as everywhere else (mxt_sdk.images.fetch)
            self.extractor.config.extraction.allow_urls = True
        self.options = {"batch_size": batch_size, "image_root": image_root, "on_image_error": on_image_error}
        self.attributes = list(attributes) if attributes is not None else None

    def __call__(self, batch: Any) -> dict[str, list[Any]]:
        predictions = self.extractor.extract(_records(batch), self.attributes, **self.options)
        return {field: [getattr(p, field) for p in predictions] for field in Prediction.model_fields}


def extract_with_ray(dataset: Any, model_dir: str, *, attributes: Sequence[str] | None = None,
                     image_root: str | None = None, batch_size: int = 64, concurrency: int = 1,
                     num_cpus: float = 1, num_gpus: float = 0, device: str | None = None,
                     on_image_error: str = "error", allow_urls: bool = False) -> Any:
    """Predictions for every product row of ``dataset`` (a ``ray.data.Dataset``), lazily.

    ``batch_size`` products go to an actor at a time (and are generated in batches of that size);
    ``concurrency`` actors run, each with ``num_cpus`` / ``num_gpus``. Image paths resolve under
    ``image_root``, which every worker must be able to read. Image URLs are fetched only with
    ``allow_urls`` (or ``extraction.allow_urls`` in the model's config), under the rules of
    :mod:`mxt_sdk.images.fetch`.
    """
    return dataset.map_batches(
        ExtractionActor, batch_size=batch_size, batch_format="pandas", concurrency=concurrency,
        num_cpus=num_cpus, num_gpus=num_gpus,
        fn_constructor_kwargs={"model_dir": str(model_dir), "attributes": attributes, "image_root": image_root,
                               "batch_size": batch_size, "device": device, "on_image_error": on_image_error,
                               "allow_urls": allow_urls},
    )
