"""Built-in image-encoder plugin: any timm network, plus the paper's ResNet-152 and Xception."""
from mxt_sdk import hookimpl

from mxt_timm.encoders import ResNet152Encoder, TimmEncoder, XceptionEncoder


@hookimpl
def mxt_register_image_encoders(register):
    register(TimmEncoder)
    register(ResNet152Encoder)
    register(XceptionEncoder)
