"""What ``POST /v1/extract`` accepts and answers, and how a body becomes engine requests.

A body is JSON ``{"product": {...}}`` (one product) or ``{"products": [...]}`` (a list), with optional
``"attributes": [...]`` (default: those the model knows for each product's type) and ``"threshold"`` (a
number from 0 to 1, or an object from attribute name or ``"product_type\tattribute"`` to a number:
the acceptance thresholds of this request instead of the calibrated ones). A product without an
``"id"`` gets ``"record-N"``, N its position in the request. Or it is
``multipart/form-data`` with that JSON in the part ``request`` and image files in other parts: a
product's ``"image": "upload:NAME"`` names the file part ``NAME``.

* An invalid single product is refused whole (422, naming the field); in a list, an invalid product
  gets its error rows (as in ``mxt extract``) and the others are answered.
* Images: ``upload:NAME`` reads the uploaded bytes; an ``http(s)://`` URL goes to the SDK's image
  loading and its URL rules; a path resolves under the server's image root (refused without one).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from mxt_sdk.data.metadata import CatalogMetadata
from mxt_sdk.errors import ConfigError
from mxt_sdk.evaluation.thresholds import CallThresholds, Thresholds
from mxt_sdk.inference.engine import Request, make_requests
from mxt_sdk.types import Prediction, Product, generated_id, with_default_id

UPLOAD_PREFIX = "upload:"
Attribute = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class ExtractRequest(BaseModel):
    """The JSON body of ``POST /v1/extract``: exactly one of ``product`` and ``products``."""

    model_config = ConfigDict(extra="forbid")

    product: Product | None = Field(None, description="One product; an invalid one is refused with 422.")
    products: list[Product] | None = Field(
        None, description="Several products; an invalid one gets error rows and the others are answered.")
    attributes: list[Attribute] | None = Field(
        None, description="Attributes to ask of every product (default: those the model knows for its type).")
    threshold: float | dict[str, float] | None = Field(
        None, description="Acceptance threshold(s) of this request, from 0 to 1: one number, or per attribute name "
                          "or 'product_type<TAB>attribute' (others keep the calibrated ones). A product's 'id' may "
                          "be left out: it becomes 'record-N', N its position in the request.")


class ExtractResponse(BaseModel):
    """One prediction per requested (product, attribute), in request order."""

    predictions: list[Prediction]


class _Envelope(BaseModel):
    """The body checked only as far as one bad product must not refuse the others."""

    model_config = ConfigDict(extra="forbid")

    product: dict[str, Any] | None = None
    products: list[Any] | None = None
    attributes: list[Attribute] | None = None
    threshold: float | dict[str, float] | None = None


class BadRequest(Exception):
    """A request refused whole: ``status`` (413 or 422) and a FastAPI-style ``detail`` list."""

    def __init__(self, status: int, detail: list[dict[str, Any]]):
        self.status, self.detail = status, detail
        super().__init__(detail)


def _problem(loc: list[Any], msg: str, kind: str = "value_error") -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": kind}


def _from_validation(exc: ValidationError, prefix: list[Any]) -> BadRequest:
    return BadRequest(422, [_problem(prefix + list(e["loc"]), str(e["msg"]).removeprefix("Value error, "), e["type"])
                            for e in exc.errors()])


@dataclass
class Envelope:
    """A body that passed the request-level checks: raw product records and the attributes asked."""

    records: list[Any]
    single: bool
    attributes: list[str] | None
    threshold: float | dict[str, float] | None = None

    def thresholds_over(self, calibrated: Thresholds) -> CallThresholds | None:
        """The request's thresholds laid over the model's ``calibrated`` ones (None: none given)."""
        return None if self.threshold is None else CallThresholds.over(calibrated, self.threshold)


def parse_envelope(text: bytes | str, max_products: int, max_attributes: int) -> Envelope:
    """Check the body's JSON shape and limits; raises :class:`BadRequest` (422, or 413 for too many products)."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(422, [_problem(["body"], f"the body is not valid JSON: {exc}", "json_invalid")]) from None
    try:
        envelope = _Envelope.model_validate(data)
    except ValidationError as exc:
        raise _from_validation(exc, ["body"]) from None
    if (envelope.product is None) == (envelope.products is None):
        raise BadRequest(422, [_problem(["body"], "give exactly one of 'product' (an object) and 'products' (a list)")])
    records = [envelope.product] if envelope.product is not None else envelope.products
    if len(records) > max_products:
        raise BadRequest(413, [_problem(["body", "products"], f"{len(records)} products; at most {max_products} "
                                                              "per request (split the list)", "too_many")])
    if not records:
        raise BadRequest(422, [_problem(["body", "products"], "the list of products is empty")])
    if envelope.attributes is not None and not 1 <= len(envelope.attributes) <= max_attributes:
        raise BadRequest(422, [_problem(["body", "attributes"],
                                        f"give 1 to {max_attributes} attributes, or leave 'attributes' out")])
    if envelope.threshold is not None:
        try:
            CallThresholds.over(Thresholds(), envelope.threshold)
        except ConfigError as exc:
            raise BadRequest(422, [_problem(["body", "threshold"], str(exc))]) from None
    return Envelope(records, envelope.product is not None, envelope.attributes, envelope.threshold)


def build_requests(envelope: Envelope, uploads: dict[str, bytes], metadata: CatalogMetadata | None,
                   image_root: Path | None) -> list[Request]:
    """One engine request per product, in order, with its image source settled (see the module docstring)."""
    records: list[Any] = envelope.records
    if envelope.single:
        try:
            records = [Product.model_validate(with_default_id(records[0], generated_id(0)))]
        except ValidationError as exc:
            raise _from_validation(exc, ["body", "product"]) from None
    requests = list(make_requests(records, envelope.attributes, metadata))
    for request in requests:
        if request.product is not None and request.product.image is not None and request.error is None:
            _settle_image(request, uploads, image_root)
    return requests


def _settle_image(request: Request, uploads: dict[str, bytes], image_root: Path | None) -> None:
    reference = request.product.image
    where = f"{request.where} (id {request.product_id!r}), field 'image'"
    if reference.startswith(UPLOAD_PREFIX):
        name = reference[len(UPLOAD_PREFIX):]
        if name in uploads:
            request.image_data = uploads[name]
        else:
            request.image_error = f"{where}: no uploaded file part named {name!r} in this request"
    elif "://" not in reference and image_root is None:
        request.image_error = (f"{where}: image paths are not served by this server (it was started without "
                               "--image-root); upload the file or give a URL")
