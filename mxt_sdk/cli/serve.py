"""``mxt serve``: online extraction over HTTP with dynamic micro-batching (see docs/serving.md)."""
from __future__ import annotations

import click
from pydantic import ValidationError

from mxt_sdk.cli.common import device_option, model_options, setup_logging
from mxt_sdk.errors import describe_validation_errors
from mxt_sdk.extractor import Extractor


@click.command()
@model_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@device_option("the model config's extraction.device")
@click.option("--image-root", type=click.Path(exists=True, file_okay=False),
              help="Folder that image paths in requests resolve under (without it, paths are refused).")
@click.option("--max-batch-size", type=int, help="Products merged into one engine batch [32]; 1 turns batching off.")
@click.option("--max-wait-ms", type=float, help="How long a free worker may wait for a fuller batch while requests are being "
                   "read or another worker runs [5]; with neither it starts at once.")
@click.option("--generation-batch-size", type=int,
              help="(product, attribute) questions per generation call within an engine batch [128].")
@click.option("--queue-size", type=int, help="Products waiting at most; beyond it requests get 429 [256].")
@click.option("--max-products", type=int, help="Products per request at most; beyond it 413 [64].")
@click.option("--max-body-bytes", type=int, help="Request body size at most, uploads included; beyond it 413 [16 MiB].")
@click.option("--workers", type=int,
              help="Engine batches run at once, each on its own thread, the model's weights shared [2].")
@click.option("--torch-threads", type=int,
              help="torch intra-op threads per worker (default: torch's, one per core, divided among the "
                   "workers); 1 avoids thread contention on a busy machine or with several servers per machine.")
@click.option("--dtype", type=click.Choice(["auto", "fp32", "bf16", "int8"]),
              help="Numeric mode (default: the model config's extraction.dtype).")
@click.option("--on-image-error", type=click.Choice(["error", "text_only"]),
              help="For a product whose image cannot be read: error rows [error], or answer from the text.")
@click.option("--allow-urls", is_flag=True,
              help="Download http(s) image URLs (public addresses only; see docs/extraction.md#image-safety).")
@click.option("--graceful-timeout", default=30.0, show_default=True, type=float,
              help="Seconds a shutdown (SIGINT/SIGTERM) waits for requests in flight.")
def serve(model, revision, host, port, device, image_root, allow_urls, graceful_timeout, **limits) -> None:
    """Serve POST /v1/extract, /healthz, /readyz and /metrics for the model in MODEL.

    Concurrent requests are merged into engine batches; a full queue answers 429 with Retry-After.
    Stop with Ctrl-C or SIGTERM: requests in flight are finished first.
    """
    try:
        import uvicorn

        from mxt_sdk.serving.app import create_app
        from mxt_sdk.serving.settings import ServeSettings
    except ImportError as exc:
        raise click.ClickException(f"mxt serve needs the serving extra ({exc.name} is missing): "
                                   "pip install 'mxt-sdk[serve]'") from None
    setup_logging()
    given = {name: value for name, value in limits.items() if value is not None}
    try:
        settings = ServeSettings(image_root=image_root, **given)
    except ValidationError as exc:
        raise click.BadParameter(describe_validation_errors(exc)) from None
    extractor = Extractor.from_pretrained(model, revision=revision, device=device)
    if allow_urls:  # the same URL policy as every entry point (mxt_sdk.images.fetch)
        extractor.config.extraction.allow_urls = True
    uvicorn.run(create_app(extractor, settings), host=host, port=port, log_level="info",
                timeout_graceful_shutdown=graceful_timeout)
