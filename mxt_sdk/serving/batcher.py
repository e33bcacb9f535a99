"""Dynamic micro-batching: products of concurrent HTTP requests merged into engine batches.

One worker thread per run function (each owns one engine; with two, one batch's Python work overlaps
the other's arithmetic). :meth:`MicroBatcher.submit` puts a request's products in a bounded queue (or
refuses at once with :class:`QueueFull`) and returns one future per product. A free worker takes the
oldest product and waits for more, never beyond ``max_batch_size`` products, while that can pay:

* while requests are being read (announced with :meth:`MicroBatcher.arriving`: they reached the
  server but their products are not queued yet), at most ``max_wait_s`` after the oldest product
  arrived;
* while another worker is running a batch, at most ``max_wait_s`` after this worker became free.

With neither it starts at once, so a lone client pays no wait. It runs the products through its
engine as one batch (so each product's image is encoded once, with the others), and resolves each
future with that product's predictions. A future cancelled before its batch starts (its client went
away) is dropped unrun.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from concurrent.futures import Future
from dataclasses import dataclass

from mxt_sdk.inference.engine import Request
from mxt_sdk.types import Prediction

RunBatch = Callable[[list[Request]], list[Prediction]]  #: one row per (request, attribute), in order


class QueueFull(Exception):
    """The queue cannot take the products of a request now; ``retry_after`` is a hint in seconds."""

    def __init__(self, waiting: int, capacity: int, retry_after: int):
        self.waiting, self.capacity, self.retry_after = waiting, capacity, retry_after
        super().__init__(f"the queue holds {waiting} of {capacity} products; retry in {retry_after} s")


class ShuttingDown(Exception):
    """The server is stopping and takes no new work."""


@dataclass
class BatcherStats:
    """Counters the metrics page reads (updated by the worker; plain ints, read without locking)."""

    batches: int = 0
    products: int = 0
    abandoned: int = 0  #: products whose client left before their batch started


@dataclass
class _Job:
    request: Request
    future: Future
    enqueued: float


class MicroBatcher:
    """Merges submitted products into engine batches on its worker threads; see the module docstring."""

    def __init__(self, run: RunBatch | Sequence[RunBatch], *, max_batch_size: int, max_wait_s: float,
                 capacity: int, on_batch: Callable[[int, float], None] | None = None,
                 on_start: Callable[[RunBatch], None] | None = None):
        """``run``: one function, or one per worker thread (called only from that thread). ``on_start(run)``
        runs first in each worker thread (e.g. to set its torch threads and warm its engine up); its
        error is kept in :attr:`start_errors` and the worker serves anyway. :meth:`wait_started`
        returns once every worker has run it."""
        self._runs = [run] if callable(run) else list(run)
        if not self._runs:
            raise ValueError("MicroBatcher needs at least one run function")
        self._on_batch, self._on_start = on_batch, on_start
        self.max_batch_size, self.max_wait_s, self.capacity = max_batch_size, max_wait_s, capacity
        self._queue: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._arriving = 0  # requests being read, whose products a forming batch may wait for
        self._running = 0  # workers running a batch
        self._started = 0  # workers past on_start
        self.start_errors: list[BaseException] = []
        self._rate = 0.0  # products per second of recent batches (for Retry-After)
        self.stats = BatcherStats()
        self._threads = [threading.Thread(target=self._loop, args=(run,), name=f"mxt-batcher-{i}", daemon=True)
                         for i, run in enumerate(self._runs)]
        for thread in self._threads:
            thread.start()

    @property
    def depth(self) -> int:
        """Products waiting (not yet in a running batch)."""
        return len(self._queue)

    def retry_after(self) -> int:
        """Seconds after which the queue has likely drained: waiting products / recent rate, 1 to 60
        (1 before any batch has finished: no rate is known yet)."""
        if not self._rate:
            return 1
        return int(min(60, max(1, math.ceil(len(self._queue) / self._rate))))

    def submit(self, requests: Sequence[Request]) -> list[Future]:
        """Queue ``requests`` (one product each) together or not at all; one future per request, whose
        result is that product's predictions. Raises :class:`QueueFull` or :class:`ShuttingDown`."""
        with self._cond:
            if self._closed:
                raise ShuttingDown("the server is shutting down")
            if len(self._queue) + len(requests) > self.capacity:
                raise QueueFull(len(self._queue), self.capacity, self.retry_after())
            now = time.monotonic()
            jobs = [_Job(request, Future(), now) for request in requests]
            self._queue.extend(jobs)
            self._cond.notify_all()
        return [job.future for job in jobs]

    @contextmanager
    def arriving(self) -> Iterator[None]:
        """Around reading a request and submitting its products: a batch being formed meanwhile waits
        for them (up to ``max_wait_s``) instead of starting without them."""
        with self._cond:
            self._arriving += 1
        try:
            yield
        finally:
            with self._cond:
                self._arriving -= 1
                self._cond.notify()

    def close(self, timeout: float | None = None) -> None:
        """Take no new work, finish everything queued and running, stop the worker."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _next_batch(self) -> list[_Job] | None:
        """The next batch to run, or None when closed and drained."""
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if not self._queue:
                return None
            # While another worker computes, this one may wait (up to max_wait_s from now) for a fuller
            # batch: the cores are busy anyway, and the wait lets the event loop read the next requests.
            start = time.monotonic() if self._running else self._queue[0].enqueued
            deadline = start + self.max_wait_s
            while (len(self._queue) < self.max_batch_size and (self._arriving or self._running)
                   and not self._closed):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch = []
            while self._queue and len(batch) < self.max_batch_size:
                job = self._queue.popleft()
                if job.future.set_running_or_notify_cancel():
                    batch.append(job)
                else:
                    self.stats.abandoned += 1
            self._running += bool(batch)
            if self._queue:
                self._cond.notify()  # more than one batch is waiting: wake another worker
            return batch

    def wait_started(self, timeout: float | None = None) -> bool:
        """Wait until every worker has run ``on_start``; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._started == len(self._runs), timeout)

    def _loop(self, run: RunBatch) -> None:
        try:
            if self._on_start is not None:
                self._on_start(run)
        except Exception as exc:  # noqa: BLE001 - reported by start_errors (the app's /readyz)
            with self._cond:
                self.start_errors.append(exc)
        finally:
            with self._cond:
                self._started += 1
                self._cond.notify_all()
        while (batch := self._next_batch()) is not None:
            if batch:
                self._run_batch(run, batch)

    def _run_batch(self, run: RunBatch, batch: list[_Job]) -> None:
        started = time.perf_counter()
        predictions, failure = None, None
        try:
            predictions = run([job.request for job in batch])
        except Exception as exc:  # noqa: BLE001 - the callers get the error, the worker keeps serving
            failure = exc
        finally:
            seconds = time.perf_counter() - started
            with self._cond:  # workers finish concurrently
                # products per second of all busy workers together (for Retry-After)
                if failure is None and seconds > 0:
                    self._rate = self._running * len(batch) / seconds
                self._running -= 1
                if failure is None:
                    self.stats.batches += 1
                    self.stats.products += len(batch)
        if failure is not None:
            for job in batch:
                job.future.set_exception(failure)
            return
        if self._on_batch is not None:
            self._on_batch(len(batch), seconds)
        start = 0
        for job in batch:
            count = len(job.request.attributes)
            job.future.set_result(predictions[start:start + count])
            start += count
