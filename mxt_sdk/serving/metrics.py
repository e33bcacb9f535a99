"""The server's Prometheus metrics, in a registry of its own (several apps in one process do not mix).

``mxt_http_requests_total{path,status}``, ``mxt_request_latency_seconds`` (``POST /v1/extract``, from
the body's arrival to the answer), ``mxt_refusal_latency_seconds`` (its 429 answers, from the
request's arrival at the app), ``mxt_batch_size`` (products per engine batch),
``mxt_batch_seconds``, ``mxt_products_total``, ``mxt_abandoned_products_total`` (dropped unrun because
their client disconnected), ``mxt_queue_depth`` (products waiting now) and ``mxt_ready``.
"""
from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from mxt_sdk.serving.batcher import BatcherStats

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class _LiveCollector:
    """Values read at scrape time: queue depth, readiness and the batcher's counters."""

    def __init__(self, read: Callable[[], tuple[int, bool, BatcherStats | None]]):
        self._read = read

    def collect(self):
        depth, ready, stats = self._read()
        yield GaugeMetricFamily("mxt_queue_depth", "Products waiting for a batch.", value=depth)
        yield GaugeMetricFamily("mxt_ready", "1 once the model is loaded and warmed up.", value=int(ready))
        products = CounterMetricFamily("mxt_products", "Products run through the engine.")
        products.add_metric([], stats.products if stats else 0)
        yield products
        abandoned = CounterMetricFamily("mxt_abandoned_products",
                                        "Products dropped unrun because their client disconnected.")
        abandoned.add_metric([], stats.abandoned if stats else 0)
        yield abandoned


class ServerMetrics:
    """Counters and histograms of one app; :meth:`render` gives the Prometheus text page."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, read_live: Callable[[], tuple[int, bool, BatcherStats | None]]):
        self.registry = CollectorRegistry()
        self.requests = Counter("mxt_http_requests", "HTTP requests answered, by path and status.",
                                ["path", "status"], registry=self.registry)
        self.latency = Histogram("mxt_request_latency_seconds", "Latency of POST /v1/extract answers.",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.refusal_latency = Histogram(
            "mxt_refusal_latency_seconds", "Time to a 429 answer of POST /v1/extract, from the request's arrival "
            "at the app.", buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("mxt_batch_size", "Products per engine batch.", buckets=BATCH_BUCKETS,
                                    registry=self.registry)
        self.batch_seconds = Histogram("mxt_batch_seconds", "Engine time per batch.", buckets=LATENCY_BUCKETS,
                                       registry=self.registry)
        self.registry.register(_LiveCollector(read_live))

    def on_batch(self, size: int, seconds: float) -> None:
        """Record one engine batch (called from the batcher's worker thread)."""
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
