"""``extractgpt``: the JSON Lines files released with ExtractGPT (Brinkmann et al.; OA-Mine, AE-110k).

One object per line::

    {"input": "<title>", "category": "<product type>",
     "target_scores": {"<attribute>": {"<value>": 1, ...}, ...}}

Mapping to :class:`~mxt_sdk.Product`: ``input`` -> ``title``, ``category`` -> ``product_type``,
``target_scores`` -> ``attributes``. Other keys are ignored, except ``id``.

* A value listed in the ``not_stated`` option (default ``"n/a"``, compared case-insensitively) means
  the attribute is not stated: its value is ``None``.
* An attribute may list several accepted values (27 attributes of AE-110k train do, e.g.
  ``{"n/a": 1, "Snapback": 1}``). A Product holds one value per attribute, so the reader takes the
  first *stated* value in file order, and ``None`` only when every listed value is "not stated".
  The other accepted values are dropped (evaluation against several references would need them).
* ``id``: the record's ``id`` field when present, else ``"<prefix>-<line number>"`` where the prefix
  is the ``id_prefix`` option or the file's stem (``train.jsonl`` -> ``train-12``). Set ``id_prefix``
  when several files with the same stem are read together, so ids stay unique.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from mxt_sdk import ComponentOptions, Product, Reader
from mxt_sdk.errors import RecordError
from mxt_sdk.types import product_from_record

from mxt_readers import _jsonl
from mxt_readers._fields import require_text
from mxt_readers._lines import has_suffix


class ExtractGPTReader(Reader):
    """Reads ExtractGPT JSON Lines (title, category, target_scores)."""

    name = "extractgpt"

    class Options(ComponentOptions):
        id_prefix: str | None = None
        not_stated: tuple[str, ...] = ("n/a",)

    @classmethod
    def can_read(cls, path: Path) -> bool:
        """JSON Lines whose first record has ``input`` and ``target_scores``."""
        if not has_suffix(path, _jsonl.JSONL_SUFFIXES):
            return False
        first = _jsonl.first_object(path)
        return first is not None and {"input", "target_scores"} <= set(first)

    def read(self, path: Path) -> Iterator[Product | RecordError]:
        prefix = self.options.id_prefix or path.stem
        not_stated = {v.strip().casefold() for v in self.options.not_stated}
        for line, record in _jsonl.iter_objects(path):
            if isinstance(record, RecordError):
                yield record
                continue
            name = _jsonl.where(path, line)
            try:
                product = {
                    "id": record.get("id", f"{prefix}-{line}"),
                    "product_type": require_text(record, "category", name),
                    "title": require_text(record, "input", name),
                    "attributes": _attributes(record.get("target_scores"), not_stated, name),
                }
                yield product_from_record(product, where=name)
            except RecordError as error:
                yield error


def _attributes(scores: Any, not_stated: set[str], name: str) -> dict[str, str | None]:
    """``{attribute: {value: score}}`` -> ``{attribute: first stated value or None}``."""
    if scores is None:
        raise RecordError(name, "target_scores", "is missing")
    if not isinstance(scores, Mapping):
        raise RecordError(name, "target_scores", "must be an object mapping attribute to {value: score}")
    attributes: dict[str, str | None] = {}
    for attribute, values in scores.items():
        field = f"target_scores.{attribute}"
        if not isinstance(values, Mapping) or not values:
            raise RecordError(name, field, "must be a non-empty object mapping value to score")
        stated = [v for v in values if v.strip().casefold() not in not_stated]
        attributes[attribute] = stated[0] if stated else None
    return attributes
