"""Example mxt_sdk plugin: registers the ``tiny_cnn`` image encoder.

mxt_sdk finds this module through the ``mxt_sdk`` entry point declared in pyproject.toml and calls
the hook below once, the first time any component is looked up.
"""
from mxt_sdk import hookimpl

from mxt_example_encoder.encoder import TinyCNNEncoder

__all__ = ["TinyCNNEncoder", "mxt_register_image_encoders"]


@hookimpl
def mxt_register_image_encoders(register):
    # Hand over the class, never an instance: nothing is built until a config asks for "tiny_cnn".
    register(TinyCNNEncoder)
