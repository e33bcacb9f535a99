"""``units``: one spelling per unit of measure, wherever a number is followed by a unit.

``"10mm"``, ``"10 MM"``, ``"10 millimetres"`` -> ``"10 mm"``; ``'13"'``, ``"13 inches"`` -> ``"13 in"``;
``"1,5 kg"`` -> ``"1.5 kg"``; ``"2.50 oz"`` -> ``"2.5 oz"``. The rest of the value is left as it is
(case included), so ``units`` composes with ``text`` in either order.

Table-driven: :data:`UNITS` maps each canonical spelling to the spellings that mean it (matched
case-insensitively, longest first, only right after a number and before a non-letter). Options:
``extra_units`` adds spellings (``{"mm": ["millim."]}``, or new units), ``only`` restricts the
conversion to some canonical units, ``space`` chooses ``"10 mm"`` (default) or ``"10mm"``.

Numbers: a comma followed by exactly three digits (``1,500``) is a thousands separator and is
removed; another comma (``1,5``) is a decimal comma; ``1.234,5`` and ``1,234.5`` are both read as
1234.5. Trailing decimal zeros go (``10.0`` -> ``10``). A number glued to a letter before it
(``RX100V``, ``YE-409``'s ``409`` is fine) is a model number and is left alone.

Deliberately absent: a bare ``m`` (``14 M US`` is a shoe width, not metres; ``meter(s)`` still
becomes ``m``). Known trade-off: ``4G`` (the network) reads as grams (``4 g``); drop ``g`` with
``only`` where that matters.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

from pydantic import Field

from mxt_sdk import ComponentOptions, Normalizer

UNITS: dict[str, tuple[str, ...]] = {
    # length
    "mm": ("mm", "millimeter", "millimeters", "millimetre", "millimetres"),
    "cm": ("cm", "centimeter", "centimeters", "centimetre", "centimetres"),
    "m": ("meter", "meters", "metre", "metres"),
    "km": ("km", "kilometer", "kilometers", "kilometre", "kilometres"),
    "in": ("in", "in.", "inch", "inches", '"', "''", "″", "”"),
    "ft": ("ft", "ft.", "foot", "feet", "'", "′", "’"),
    # volume
    "ml": ("ml", "milliliter", "milliliters", "millilitre", "millilitres"),
    "l": ("l", "ltr", "liter", "liters", "litre", "litres"),
    "fl oz": ("fl oz", "fl. oz", "fl.oz", "floz", "fluid ounce", "fluid ounces"),
    # mass
    "mg": ("mg", "milligram", "milligrams"),
    "g": ("g", "gr", "gram", "grams"),
    "kg": ("kg", "kgs", "kilogram", "kilograms"),
    "oz": ("oz", "oz.", "ounce", "ounces"),
    "lb": ("lb", "lbs", "lb.", "lbs.", "pound", "pounds"),
    # data
    "kb": ("kb", "kilobyte", "kilobytes"),
    "mb": ("mb", "megabyte", "megabytes"),
    "gb": ("gb", "gigabyte", "gigabytes"),
    "tb": ("tb", "terabyte", "terabytes"),
    # electrical, frequency
    "w": ("w", "watt", "watts"),
    "kw": ("kw", "kilowatt", "kilowatts"),
    "v": ("v", "volt", "volts"),
    "mah": ("mah",),
    "hz": ("hz", "hertz"),
    "khz": ("khz",),
    "mhz": ("mhz",),
    "ghz": ("ghz",),
    # count
    "pcs": ("pcs", "pc", "piece", "pieces"),
}

_NUMBER = r"(?<![\w.,])(?P<number>\d+(?:[.,]\d+)*)"


def normalize_number(text: str) -> str:
    """``"1,5"`` -> ``"1.5"``, ``"1,500"`` -> ``"1500"``, ``"10.0"`` -> ``"10"`` (rules above)."""
    if "," in text and "." in text:  # both: the later one is the decimal mark
        if text.rfind(",") > text.rfind("."):
            text = text.replace(".", "").replace(",", ".")
        else:
            text = text.replace(",", "")
    elif "," in text:
        head, *groups = text.split(",")
        if len(head) <= 3 and all(len(g) == 3 for g in groups):
            text = head + "".join(groups)
        elif len(groups) == 1:
            text = f"{head}.{groups[0]}"
    if text.count(".") == 1:
        text = text.rstrip("0").rstrip(".")
    return text


def _squeeze(spelling: str) -> str:
    return re.sub(r"\s+", "", spelling.lower())


def build_pattern(table: Mapping[str, tuple[str, ...] | list[str]]) -> tuple[re.Pattern[str], dict[str, str]]:
    """A regex matching ``<number><space?><spelling>`` for every spelling of ``table``, and the map
    from a matched spelling (lower-cased, spaces removed) to its canonical unit. A canonical unit
    is matched only where it is listed among its own spellings (``m`` is not)."""
    canonical = {_squeeze(spelling): unit for unit, spellings in table.items() for spelling in spellings}
    spellings = sorted({s.lower() for ss in table.values() for s in ss}, key=lambda s: (-len(s), s))
    alternatives = "|".join(re.escape(s).replace(r"\ ", r"\s*") for s in spellings)
    pattern = re.compile(rf"{_NUMBER}\s*(?P<unit>{alternatives})(?![^\W\d_])", re.IGNORECASE)
    return pattern, canonical


class UnitsNormalizer(Normalizer):
    """Rewrites ``<number> <unit>`` into one spelling per unit (table-driven)."""

    name = "units"

    class Options(ComponentOptions):
        extra_units: dict[str, list[str]] = Field(default_factory=dict)
        only: list[str] | None = None
        space: bool = True

    def __init__(self, options: ComponentOptions):
        super().__init__(options)
        table: dict[str, list[str]] = {unit: list(spellings) for unit, spellings in UNITS.items()}
        for unit, spellings in self.options.extra_units.items():
            table.setdefault(unit, []).extend(spellings)
        if self.options.only is not None:
            table = {unit: spellings for unit, spellings in table.items() if unit in self.options.only}
        self._pattern, self._canonical = build_pattern(table) if table else (None, {})
        self._separator = " " if self.options.space else ""

    def __call__(self, value: str, *, product_type: str, attribute: str) -> str | None:
        if self._pattern is None:
            return value
        return self._pattern.sub(self._replace, value)

    def _replace(self, match: re.Match[str]) -> str:
        unit = self._canonical[_squeeze(match["unit"])]
        return f"{normalize_number(match['number'])}{self._separator}{unit}"
