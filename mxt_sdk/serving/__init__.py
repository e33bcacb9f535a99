"""Online extraction over HTTP (``mxt serve``): settings, the micro-batcher, request parsing, metrics, the app."""
