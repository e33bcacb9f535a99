"""Typed records that cross the SDK's public surface: :class:`Product` in, :class:`Prediction` out."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mxt_sdk.errors import RecordError

__all__ = ["Product", "Prediction", "DecidedBy", "product_from_record", "generated_id", "with_default_id",
           "describe_validation_error"]

#: how an answer was decided: ``generated`` (greedy decoding, free text), ``known_value`` (the likeliest of
#: the pair's training values and the none answer, scored by the generator: ``extraction.choose_among_known``),
#: ``known_value+image_prior``, ``known_value+text_prior``, ``known_value+image_prior+text_prior`` (the same, where
#: the priors named, those that applied, changed which value won), ``span`` (greedy
#: decoding bound to a run of the product's text's words: ``extraction.choose_text_span``), ``span_prior`` (the
#: span prior's likeliest run of the text, its probability the confidence: ``extraction.span_prior_share``)
DecidedBy = Literal["generated", "known_value", "known_value+image_prior", "known_value+text_prior",
                    "known_value+image_prior+text_prior", "span", "span_prior"]


def _strip_required(value: str, field: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError(f"{field} is empty")
    return value


class Product(BaseModel):
    """One catalog item: its text, its image, and any catalog attribute values already known.

    ``image`` is a local path (relative paths are resolved against the data file's folder or the
    image root given to the reader) or an ``http(s)://`` URL, or ``None`` when there is no photo.
    ``attributes`` maps attribute name to its catalog value; ``None`` means "known not to be stated".
    These values are the (distant) labels used in training and evaluation.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str
    product_type: str
    title: str
    description: str | None = None
    bullets: list[str] = Field(default_factory=list)
    image: str | None = None
    attributes: dict[str, str | None] = Field(default_factory=dict)

    @field_validator("id", mode="before")
    @classmethod
    def _id_to_text(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value

    @field_validator("id", "product_type", "title")
    @classmethod
    def _not_empty(cls, value: str, info) -> str:
        return _strip_required(value, info.field_name)

    @field_validator("description", "image")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("attributes", mode="before")
    @classmethod
    def _values_to_text(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                str(k): (str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
                for k, v in value.items()
            }
        return value

    @property
    def text(self) -> str:
        """All of the product's own text (title, description, bullets), newline-separated."""
        parts = [self.title, self.description or "", *self.bullets]
        return "\n".join(p for p in parts if p)


class Prediction(BaseModel):
    """The extracted value of one attribute of one product.

    ``value`` is ``None`` when the model answers that the attribute is not stated, or when the pair
    failed (then ``error`` says why). ``confidence`` is the model's probability of its own answer
    (see docs/architecture.md). ``accepted`` is ``confidence`` compared with the calibrated
    threshold of the (product type, attribute) pair and the path that decided the answer (a "not stated" answer, with no value, is never
    accepted: there is nothing to write); ``threshold_source`` says which kind of
    threshold that is (``pair``: the pair's own; ``attribute`` / ``global``: pooled over the
    attribute's / all calibration rows; ``pair_path``: the pair's own for answers of this path; ``path``:
    the path's own pooled over every pair, where it is stricter than the pair's; ``default``: never
    calibrated; ``call``: given to the extraction call as ``threshold=``). ``decided_by`` says which path answered (:data:`DecidedBy`; ``None`` on an
    error row). ``novel`` marks a value
    outside the known vocabulary of the pair (a zero-shot value); ``in_text`` marks a value written
    in the product text. ``truncated`` marks an answer cut at the generation bound before its end
    (no EOS): its value is a prefix of what the model wanted to write.
    """

    model_config = ConfigDict(extra="forbid")

    product_id: str
    product_type: str | None = None
    attribute: str
    value: str | None = None
    raw_value: str | None = None
    confidence: float = Field(default=0.0, ge=0.0, le=1.0)
    accepted: bool = False
    novel: bool = False
    in_text: bool = False
    image_used: bool = False
    error: str | None = None
    truncated: bool = False
    threshold_source: Literal["pair", "attribute", "global", "default", "call", "pair_path", "path"] | None = None
    decided_by: DecidedBy | None = None


_FRIENDLY = {
    "missing": "is missing",
    "extra_forbidden": "is not a known product field (allowed: {allowed})",
    "string_type": "must be text",
    "list_type": "must be a list of texts",
    "dict_type": "must be an object mapping attribute name to value",
}


def describe_validation_error(error: ValidationError, allowed: list[str]) -> list[tuple[str, str]]:
    """Turn pydantic's error list into (field, reason) pairs in plain words."""
    problems = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"]) or "(record)"
        template = _FRIENDLY.get(item["type"])
        if template:
            reason = template.format(allowed=", ".join(allowed))
        else:
            reason = str(item["msg"]).removeprefix("Value error, ")
        problems.append((field, reason))
    return problems


def generated_id(position: int) -> str:
    """The id given to an in-memory product record (a dict passed to the Python API or the HTTP server)
    that has none: ``record-<position>``, its position among the records of that call, from 0."""
    return f"record-{position}"


def with_default_id(record: dict[str, Any], default_id: str | None) -> dict[str, Any]:
    """``record`` with ``id`` set to ``default_id`` when it has none (no field, ``None`` or ``""``)."""
    if default_id is None or record.get("id") not in (None, ""):
        return record
    return {**record, "id": default_id}


def product_from_record(record: Any, where: str, default_id: str | None = None) -> Product:
    """Validate one raw record into a :class:`Product`.

    ``where`` names the record for humans (``"line 12 of products.jsonl"``). ``default_id`` is the id of
    a record that has none (no ``id`` field, or ``None`` / empty); without it such a record is an error. Raises
    :class:`~mxt_sdk.errors.RecordError` naming the record, its id when readable, and each bad field.
    """
    if not isinstance(record, dict):
        raise RecordError(where, None, f"expected an object with product fields, got {type(record).__name__}")
    record = with_default_id(record, default_id)
    try:
        return Product.model_validate(record)
    except ValidationError as exc:
        problems = describe_validation_error(exc, list(Product.model_fields))
        record_id = record.get("id")
        name = f"{where} (id {record_id!r})" if record_id not in (None, "") else where
        known_id = str(record_id) if record_id not in (None, "") else None
        if len(problems) == 1:
            raise RecordError(name, problems[0][0], problems[0][1], known_id) from None
        reason = "; ".join(f"field {field!r} {why}" for field, why in problems)
        raise RecordError(name, None, reason, known_id) from None
