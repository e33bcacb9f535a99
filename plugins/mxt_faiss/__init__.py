"""Built-in canonicalizer plugin ``faiss``: maps a generated value onto the nearest known value of its
(product type, attribute) pair — character n-gram vectors searched with FAISS — or keeps it and flags
it novel. Modules: :mod:`~mxt_faiss.canonicalizer` (the component), :mod:`~mxt_faiss.embedding`
(the vectors), :mod:`~mxt_faiss.vocabulary` (vocabulary files). The threshold / dimension experiment
behind the defaults is benchmarks/canonicalizer_threshold.py. See docs/canonicalizer.md."""
from mxt_sdk import hookimpl

from mxt_faiss.canonicalizer import FaissCanonicalizer


@hookimpl
def mxt_register_canonicalizers(register):
    register(FaissCanonicalizer)
