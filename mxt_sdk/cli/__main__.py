"""``python -m mxt_sdk.cli``: the same as ``mxt`` (handy under ``torchrun`` / ``accelerate launch``)."""
from mxt_sdk.cli import main

main()
