"""Built-in readers plugin: the SDK's own product files (JSON Lines, Parquet), ExtractGPT JSON Lines
and ImplicitAVE TSV. Each module documents its format and how records map to a Product."""
from mxt_sdk import hookimpl

from mxt_readers.extractgpt import ExtractGPTReader
from mxt_readers.implicitave import ImplicitAVEReader
from mxt_readers.products import ProductsReader


@hookimpl
def mxt_register_readers(register):
    register(ProductsReader)
    register(ExtractGPTReader)
    register(ImplicitAVEReader)
