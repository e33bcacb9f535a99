"""mxt_sdk: multimodal generative product attribute-value extraction (MXT) with plugins."""
from mxt_sdk._version import __version__
from mxt_sdk.extractor import Extractor
from mxt_sdk.plugins.components import (
    Canonicalizer,
    ComponentOptions,
    Fusion,
    FusionOutput,
    Generator,
    GreedyOutput,
    ImageEncoder,
    Normalizer,
    Reader,
    SharedStates,
)
from mxt_sdk.plugins.hookspecs import hookimpl
from mxt_sdk.types import Prediction, Product

__all__ = [
    "__version__", "Extractor", "Product", "Prediction", "hookimpl", "ComponentOptions",
    "ImageEncoder", "Fusion", "FusionOutput", "Generator", "GreedyOutput", "Normalizer",
    "Canonicalizer", "Reader", "SharedStates",
]
