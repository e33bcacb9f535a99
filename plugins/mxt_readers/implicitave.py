"""``implicitave``: the TSV files of ImplicitAVE (Zou et al. 2024).

Tab-separated, with a header row naming the columns ``id, images, category, texts,
attribute_names, attribute_values`` (and an optional ``domain``, which is ignored). Fields follow the
spreadsheet quoting convention (a field holding ``"`` is quoted, inner quotes doubled, e.g.
``"[Title] Laredo Men's 13"" Boots"``); CRLF and LF line endings are both accepted.

Mapping to :class:`~mxt_sdk.Product`: ``id`` -> ``id``, ``category`` -> ``product_type``,
``texts`` -> ``title`` (its ``[Title] `` prefix removed), ``{attribute_names: attribute_values}`` ->
``attributes``, ``images`` -> ``image`` as ``"<image_folder>/<file name>"``, relative to the TSV's
folder (resolve it with the TSV's folder as image root).

* One Product per row. Every released file has exactly one attribute per row and no id repeated
  within a file (checked on all 11 files), so rows are never merged: that keeps "one item per record,
  in file order" and lets the file be streamed. A repeated id simply gives another Product with
  the same id and that row's attribute.
* Images: the released ``train_text/*/*.tsv`` files name an image in every row but ship no images,
  only ``eval_dev.tsv`` has an ``images/`` folder beside it. Option ``images``: ``"auto"`` (default)
  references the image when the image folder exists beside the TSV and gives text-only products
  (``image=None``) when it does not, checked once per file, so a missing file inside an existing
  folder still surfaces as an image error downstream; ``"always"`` and ``"never"`` force either.

Why the :mod:`csv` module and not ``datasets.load_dataset("csv", ...)``: the ``datasets`` CSV
builder runs pandas, which turns text such as ``"NA"``, ``"None"`` or ``"null"`` into missing values
and numeric-looking ids into numbers, and either aborts the file on a row with a wrong column count
or (``on_bad_lines="skip"``) drops it silently. :mod:`csv` streams rows from a line iterator with
constant memory and lets each bad row become one :class:`RecordError`.
"""
from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from mxt_sdk import ComponentOptions, Product, Reader
from mxt_sdk.errors import DataFileError, RecordError
from mxt_sdk.types import product_from_record

from mxt_readers._fields import require_text
from mxt_readers._lines import first_lines, has_suffix, iter_lines, undecodable

REQUIRED_COLUMNS = ("id", "images", "category", "texts", "attribute_names", "attribute_values")
TITLE_PREFIX = "[Title]"


class ImplicitAVEReader(Reader):
    """Reads ImplicitAVE TSV files (one product and one attribute value per row)."""

    name = "implicitave"

    class Options(ComponentOptions):
        images: Literal["auto", "always", "never"] = "auto"
        image_folder: str = "images"

    @classmethod
    def can_read(cls, path: Path) -> bool:
        """A ``.tsv`` file whose header row names every required column."""
        if not has_suffix(path, (".tsv",)):
            return False
        header = first_lines(path, 1)
        return bool(header) and set(REQUIRED_COLUMNS) <= set(header[0].split("\t"))

    def read(self, path: Path) -> Iterator[Product | RecordError]:
        image_folder = self._image_folder(path)
        rows = _numbered_rows(path)
        header = _header(path, next(rows, (1, []))[1])
        for line, row in rows:
            name = f"line {line} of {path.name}"
            if isinstance(row, csv.Error):
                yield RecordError(name, None, f"is not a valid TSV row ({row})")
            elif any(cell.strip() for cell in row):  # a blank line is no record
                try:
                    yield self._product(row, header, name, image_folder)
                except RecordError as error:
                    yield error

    def _image_folder(self, path: Path) -> str | None:
        """The folder prefix for image references, or None for text-only products."""
        folder = self.options.image_folder.strip("/")
        if self.options.images == "never":
            return None
        if self.options.images == "auto" and not (path.parent / folder).is_dir():
            return None
        return folder

    @staticmethod
    def _product(row: list[str], header: dict[str, int], name: str, image_folder: str | None) -> Product:
        if any(undecodable(cell) for cell in row):
            raise RecordError(name, None, "is not valid UTF-8 text")
        width = max(header.values()) + 1
        if len(row) < width:
            raise RecordError(name, None, f"has {len(row)} tab-separated columns, expected at least {width}")
        cells = {column: row[index] for column, index in header.items()}
        record_id = require_text(cells, "id", name)
        title = require_text(cells, "texts", name).removeprefix(TITLE_PREFIX).strip()
        if not title:
            raise RecordError(name, "texts", f"has nothing after {TITLE_PREFIX!r}")
        attribute = require_text(cells, "attribute_names", name)
        return product_from_record({
            "id": record_id,
            "product_type": require_text(cells, "category", name),
            "title": title,
            "image": _image(cells["images"].strip(), image_folder, name),
            "attributes": {attribute: require_text(cells, "attribute_values", name)},
        }, where=name)


def _numbered_rows(path: Path) -> Iterator[tuple[int, list[str] | csv.Error]]:
    """``(line number where the row starts, its cells or the csv.Error)`` for each row of ``path``;
    a quoted cell may span lines, so a row's number is not its position."""
    rows = csv.reader((text for _, text in iter_lines(path)), dialect="excel-tab")
    start = 1
    while True:
        try:
            row: list[str] | csv.Error = next(rows)
        except StopIteration:
            return
        except csv.Error as exc:
            row = exc
        yield start, row
        start = rows.line_num + 1


def _header(path: Path, row: list[str] | csv.Error) -> dict[str, int]:
    """Column positions from the header row; :class:`DataFileError` when a column is missing."""
    names = [name.strip() for name in row] if isinstance(row, list) else []
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise DataFileError(
            f"{path}: the header row (line 1) lacks the column(s) {', '.join(missing)}; an "
            f"ImplicitAVE TSV needs the tab-separated columns {', '.join(REQUIRED_COLUMNS)}."
        )
    return {name: names.index(name) for name in REQUIRED_COLUMNS}


def _image(file_name: str, folder: str | None, name: str) -> str | None:
    """``"<folder>/<file name>"``, or None without a folder or a name; the name may not be a path."""
    if folder is None or not file_name:
        return None
    if "/" in file_name or "\\" in file_name or file_name.startswith("."):
        raise RecordError(name, "images", f"must be a file name inside {folder}/, got {file_name!r}")
    return f"{folder}/{file_name}"
