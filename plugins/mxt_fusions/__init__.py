"""Built-in fusion plugin: MAG, cross-attention over image regions, and plain concatenation."""
from mxt_sdk import hookimpl

from mxt_fusions.concat import ConcatFusion
from mxt_fusions.cross_attention import CrossAttentionFusion
from mxt_fusions.mag import MAGFusion


@hookimpl
def mxt_register_fusions(register):
    register(MAGFusion)
    register(CrossAttentionFusion)
    register(ConcatFusion)
