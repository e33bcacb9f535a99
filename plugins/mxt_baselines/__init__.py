"""Built-in generator plugin: the ``span`` (extractive) and ``classify`` (classification) baselines.

Both run through the same pipeline as ``t5`` (fusions, training, extraction, evaluation, save/load)
so that MXT can be compared with the two families it is contrasted with in the paper.
"""
from mxt_sdk import hookimpl

from mxt_baselines.classify import ClassifyGenerator
from mxt_baselines.span import SpanGenerator


@hookimpl
def mxt_register_generators(register):
    register(SpanGenerator)
    register(ClassifyGenerator)
