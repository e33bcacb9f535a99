"""Built-in normalizers plugin: ``text`` (Unicode, case, spaces, edge punctuation), ``units`` (one
spelling per unit), ``merge`` (near-duplicate values of a pair) and ``min_count`` (the rare tail).
Typical training order: text, units, merge, min_count (see :func:`mxt_sdk.data.cleaning.clean_products`)."""
from mxt_sdk import hookimpl

from mxt_normalizers.merge import MergeNormalizer
from mxt_normalizers.min_count import MinCountNormalizer
from mxt_normalizers.text import TextNormalizer
from mxt_normalizers.units import UnitsNormalizer


@hookimpl
def mxt_register_normalizers(register):
    register(TextNormalizer)
    register(UnitsNormalizer)
    register(MergeNormalizer)
    register(MinCountNormalizer)
