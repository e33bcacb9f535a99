"""Helpers shared by the ``mxt`` sub-commands."""
from __future__ import annotations

import logging


def setup_logging(level: int = logging.INFO) -> None:
    """Send mxt_sdk's log records to stderr with timestamps (once per process)."""
    logger = logging.getLogger("mxt_sdk")
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
               for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(level)
