"""The ASGI app of ``mxt serve`` (FastAPI): ``POST /v1/extract``, ``/healthz``, ``/readyz``, ``/metrics``.

:func:`create_app` wraps one loaded :class:`~mxt_sdk.Extractor`. Its products go through a
:class:`~mxt_sdk.serving.batcher.MicroBatcher` into the extractor's own engine, so an answer is the
one ``Extractor.extract`` gives for the same product. The app starts its batcher and warms the model
up when the ASGI lifespan starts (``/readyz`` says 503 until then), and on shutdown finishes every
queued and running product before it stops. Run it with uvicorn (``mxt serve``) or under Ray Serve
(:mod:`mxt_sdk.serving.ray_serve`).
"""
from __future__ import annotations

import asyncio
import io
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import torch
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from PIL import Image
from starlette.requests import Request as HTTPRequest

from mxt_sdk import __version__
from mxt_sdk.extractor import Extractor
from mxt_sdk.inference.engine import Engine, Request
from mxt_sdk.serving.batcher import MicroBatcher, QueueFull, RunBatch, ShuttingDown
from mxt_sdk.serving.metrics import ServerMetrics
from mxt_sdk.serving.requests import BadRequest, ExtractRequest, ExtractResponse, build_requests, parse_envelope
from mxt_sdk.serving.settings import ServeSettings
from mxt_sdk.types import Product

log = logging.getLogger(__name__)

KNOWN_PATHS = ("/v1/extract", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs")
_MULTIPART_SCHEMA = {
    "type": "object", "required": ["request"],
    "properties": {"request": {"type": "string", "description": "The JSON body (ExtractRequest) as text."}},
    "additionalProperties": {"type": "string", "format": "binary",
                             "description": "An image file; a product's image 'upload:NAME' names this part."},
}
_ERROR = {"content": {"application/json": {"schema": {"type": "object"}}}}


@dataclass
class _State:
    batcher: MicroBatcher | None = None
    ready: bool = False
    stopping: bool = False
    warmup_error: str | None = None


class _CountRequests:
    """Pure ASGI middleware counting answers by path and status (keeps the client's disconnect visible)."""

    def __init__(self, app, metrics: ServerMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = {"code": 500}

        async def capture(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            path = scope["path"] if scope["path"] in KNOWN_PATHS else "other"
            self.metrics.requests.labels(path, str(status["code"])).inc()


class _RefuseWhenFull:
    """Pure ASGI middleware: ``POST /v1/extract`` while the queue is full gets its 429 here, before the
    body is read and before FastAPI's routing and request handling, so a refusal costs the event loop
    as little as it can while a storm of requests waits on it."""

    def __init__(self, app, state: "_State", metrics: ServerMetrics):
        self.app, self.state, self.metrics = app, state, metrics

    async def __call__(self, scope, receive, send):
        batcher = self.state.batcher
        if (scope["type"] == "http" and scope["path"] == "/v1/extract" and self.state.ready and batcher is not None
                and batcher.depth >= batcher.capacity):
            arrived = time.perf_counter()
            await _refuse(429, f"the queue is full ({batcher.capacity} products)", batcher.retry_after())(
                scope, receive, send)
            self.metrics.refusal_latency.observe(time.perf_counter() - arrived)
            return None
        return await self.app(scope, receive, send)


def _refuse(status: int, detail: Any, retry_after: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


async def _read_body(request: HTTPRequest, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it is known to pass ``limit`` bytes."""
    declared = request.headers.get("content-length")
    too_large = BadRequest(413, [{"loc": ["body"], "msg": f"the body is over {limit:,} bytes", "type": "too_large"}])
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def _multipart(request: HTTPRequest, body: bytes, settings: ServeSettings) -> tuple[bytes, dict[str, bytes]]:
    """The ``request`` part's JSON text and the uploaded files by part name."""
    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    form = await HTTPRequest(request.scope, replay).form(max_files=settings.max_products,
                                                         max_fields=settings.max_products + 1)
    try:
        text, uploads = None, {}
        for name, value in form.multi_items():
            if name == "request" and isinstance(value, str):
                text = value.encode()
            elif not isinstance(value, str):
                uploads[name] = await value.read()
        if text is None:
            raise BadRequest(422, [{"loc": ["body", "request"], "type": "missing",
                                    "msg": "a multipart body needs a text part 'request' holding the JSON request"}])
        return text, uploads
    finally:
        await form.close()


async def _until_disconnect(request: HTTPRequest) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _wait_or_disconnect(request: HTTPRequest, futures: list) -> list | None:
    """The futures' results, or None (and the futures cancelled) if the client disconnects first."""
    results = asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
    gone = asyncio.ensure_future(_until_disconnect(request))
    await asyncio.wait({results, gone}, return_when=asyncio.FIRST_COMPLETED)
    if results.done():
        gone.cancel()
        return results.result()
    for future in futures:
        future.cancel()
    results.cancel()
    return None


def _warmup_request(extractor: Extractor) -> Request:
    """A product of a type the model knows, with a small image when the model reads images."""
    metadata = extractor.metadata
    known = sorted(metadata.values) if metadata else []
    product_type = known[0].split("\t", 1)[0] if known else "item"
    attributes = (metadata.attributes_for(product_type) if metadata else []) or ["color"]
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (128, 64, 32)).save(buffer, format="PNG")
    product = Product(id="warm-up", product_type=product_type, title="warm-up product")
    return Request("warm-up", "warm-up", product, attributes,
                   image_data=buffer.getvalue() if extractor.model.uses_images else None)


def _runner(engine: Engine) -> RunBatch:
    """The batch function of one worker: ``engine``'s rows for a list of requests."""
    return lambda requests: list(engine.run(requests))


def create_app(extractor: Extractor, settings: ServeSettings | None = None) -> FastAPI:
    """The server app for ``extractor`` under ``settings`` (see the module docstring)."""
    settings = settings or ServeSettings()
    state = _State()
    metrics = ServerMetrics(lambda: (state.batcher.depth if state.batcher else 0, state.ready,
                                     state.batcher.stats if state.batcher else None))

    # torch's thread count read here, in the caller's thread: a worker's set_num_threads is also stored
    # process-wide, and would be read back by an app started later in a fresh thread.
    threads = settings.torch_threads or max(1, torch.get_num_threads() // settings.workers)

    def start_worker(run: RunBatch) -> None:
        """In each worker thread, before it serves: its torch threads, then one extraction (warm-up)."""
        torch.set_num_threads(threads)
        if settings.warmup:
            run([_warmup_request(extractor)])

    async def warm_up() -> None:
        await asyncio.to_thread(state.batcher.wait_started)
        if state.batcher.start_errors:  # reported on /readyz and in the log
            state.warmup_error = f"warm-up failed: {state.batcher.start_errors[0]}"
            log.error(state.warmup_error)
            return
        state.ready = True
        log.info("model warmed up (%d workers); ready", settings.workers)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        # The batcher decides how many products share one engine call (one pass of the image encoders);
        # their questions are generated generation_batch_size at a time. One engine per worker thread.
        engines = [extractor.engine(batch_size=settings.generation_batch_size, image_root=settings.image_root,
                                    on_image_error=settings.on_image_error, dtype=settings.dtype,
                                    own_tokenizer=settings.workers > 1) for _ in range(settings.workers)]
        state.batcher = MicroBatcher([_runner(engine) for engine in engines],
                                     max_batch_size=settings.max_batch_size, max_wait_s=settings.max_wait_ms / 1000,
                                     capacity=settings.queue_size, on_batch=metrics.on_batch,
                                     on_start=start_worker)
        _app.state.batcher = state.batcher  # for inspection (tests, embedding apps)
        warming = asyncio.create_task(warm_up())
        yield
        state.ready, state.stopping = False, True
        await warming
        await asyncio.to_thread(state.batcher.close)  # finishes what is queued and running

    app = FastAPI(title="mxt_sdk extraction server", version=__version__, lifespan=lifespan,
                  description="Product attribute-value extraction with MXT; see docs/serving.md.")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process answers (says nothing about the model)."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: _ERROR})
    async def readyz() -> Response:
        """200 once the model is loaded and warmed up; 503 before that and while shutting down."""
        if state.ready:
            return JSONResponse({"status": "ready"})
        reason = "shutting down" if state.stopping else state.warmup_error or "warming up"
        return _refuse(503, reason, retry_after=1)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> Response:
        """Prometheus text format: requests, batch sizes, queue depth, latency."""
        return Response(metrics.render(), media_type=metrics.content_type)

    extract_body = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/ExtractRequest"}},
        "multipart/form-data": {"schema": _MULTIPART_SCHEMA}}}}

    @app.post("/v1/extract", response_model=ExtractResponse, openapi_extra=extract_body,
              responses={413: _ERROR, 422: _ERROR, 429: _ERROR, 503: _ERROR})
    async def extract(request: HTTPRequest) -> Response:
        """Predictions for one or many products (see :mod:`mxt_sdk.serving.requests`)."""
        # (a queue that is already full was answered 429 by _RefuseWhenFull, before the body was read)
        arrived, batcher = time.perf_counter(), state.batcher
        if not state.ready or batcher is None:
            return _refuse(503, "shutting down" if state.stopping else "the model is not ready yet", retry_after=1)
        try:
            with batcher.arriving():  # a batch being formed waits for this request's products
                body = await _read_body(request, settings.max_body_bytes)
                started = time.perf_counter()
                uploads: dict[str, bytes] = {}
                if request.headers.get("content-type", "").startswith("multipart/form-data"):
                    body, uploads = await _multipart(request, body, settings)
                # a request larger than the whole queue could never be queued: 413, not 429 for ever
                envelope = parse_envelope(body, min(settings.max_products, settings.queue_size),
                                          settings.max_attributes)
                futures = batcher.submit(build_requests(envelope, uploads, extractor.metadata, settings.image_root))
        except BadRequest as exc:
            return _refuse(exc.status, exc.detail)
        except QueueFull as exc:
            metrics.refusal_latency.observe(time.perf_counter() - arrived)
            return _refuse(429, str(exc), exc.retry_after)
        except ShuttingDown as exc:
            return _refuse(503, str(exc), retry_after=1)
        try:
            results = await _wait_or_disconnect(request, futures)
        except Exception as exc:  # noqa: BLE001 - an engine failure answers 500 with its reason
            log.exception("extraction failed")
            return _refuse(500, f"extraction failed: {exc}")
        if results is None:
            return Response(status_code=499)  # the client has gone; nobody reads this
        metrics.latency.observe(time.perf_counter() - started)
        rows = [p for batch_rows in results for p in batch_rows]
        call_thresholds = envelope.thresholds_over(extractor.thresholds)
        if call_thresholds is not None:  # engines are shared by requests: this request's rows decided again
            rows = [call_thresholds.apply(p) for p in rows]
        return JSONResponse({"predictions": [p.model_dump(mode="json") for p in rows]})

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            request_schema = ExtractRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, definition in request_schema.pop("$defs", {}).items():
                components.setdefault(name, definition)
            components["ExtractRequest"] = request_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    app.add_middleware(_RefuseWhenFull, state=state, metrics=metrics)
    app.add_middleware(_CountRequests, metrics=metrics)  # added last: outermost, so it counts the refusals too
    return app
