"""Built-in generator plugin: ``t5``, a transformers ``T5ForConditionalGeneration``."""
from mxt_sdk import hookimpl

from mxt_t5.generator import T5Generator


@hookimpl
def mxt_register_generators(register):
    register(T5Generator)
