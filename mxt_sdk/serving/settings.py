"""What a server run is configured with (``mxt serve`` options, or :func:`~mxt_sdk.serving.app.create_app`)."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ServeSettings(BaseModel):
    """Limits and batching of one server. Sizes count products (one product = one queue slot,
    whatever the number of attributes asked of it)."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(32, ge=1, le=1024, description="Products merged into one engine batch.")
    max_wait_ms: float = Field(5.0, ge=0.0, le=10_000.0,
                               description="How long a free worker may wait for a fuller batch: while requests are "
                                           "being read (arrived, not yet queued) or another worker runs a batch; "
                                           "with neither, no wait.")
    generation_batch_size: int = Field(
        128, ge=1, le=4096, description="(product, attribute) questions per generation call inside an engine batch.")
    queue_size: int = Field(256, ge=1, description="Products waiting at most; more get 429 at once.")
    max_products: int = Field(64, ge=1, description="Products per request at most; more get 413.")
    max_attributes: int = Field(64, ge=1, description="Attributes per request at most; more get 422.")
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="Request body size at most; more get 413.")
    image_root: Path | None = Field(None, description="Folder image paths resolve under; None refuses paths.")
    on_image_error: Literal["error", "text_only"] = "error"
    dtype: Literal["auto", "fp32", "bf16", "int8"] | None = None
    workers: int = Field(2, ge=1, le=64,
                         description="Engine batches run at once, one thread each, the model's weights shared: "
                                     "while one batch computes, the other's Python work and the HTTP side go on.")
    torch_threads: int | None = Field(None, ge=1, le=1024,
                                      description="torch intra-op threads per worker (None: torch's count in the "
                                                  "thread that creates the app, divided among the workers, at "
                                                  "least 1). torch also keeps it as the process's default for "
                                                  "threads that start torch work later.")
    warmup: bool = Field(True, description="Run one extraction before /readyz says ready.")
