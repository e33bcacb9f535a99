"""mxt_sdk: multimodal generative product attribute-value extraction (MXT) with plugins."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mxt-sdk")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"

from mxt_sdk.hookspecs import hookimpl
from mxt_sdk.types import Prediction, Product
from mxt_sdk.components import (
    Canonicalizer,
    ComponentOptions,
    Fusion,
    FusionOutput,
    Generator,
    GreedyOutput,
    ImageEncoder,
    Normalizer,
    Reader,
)
from mxt_sdk.extractor import Extractor

__all__ = [
    "__version__", "Extractor", "Product", "Prediction", "hookimpl", "ComponentOptions",
    "ImageEncoder", "Fusion", "FusionOutput", "Generator", "GreedyOutput", "Normalizer",
    "Canonicalizer", "Reader",
]
