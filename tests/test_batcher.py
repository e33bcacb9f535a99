"""The micro-batcher alone: merging, the batch bound, the wait bound, a full queue, cancelled products,
draining on close. The batch function here records what it was given and answers one row per attribute."""
from __future__ import annotations

import threading
import time

import pytest

from mxt_sdk.inference.engine import Request
from mxt_sdk.serving.batcher import MicroBatcher, QueueFull, ShuttingDown
from mxt_sdk.types import Prediction


class Recorder:
    """A batch function that can be held (``gate``) and remembers each batch's product ids."""

    def __init__(self):
        self.batches: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, requests: list[Request]) -> list[Prediction]:
        self.gate.wait(10)
        self.batches.append([r.product_id for r in requests])
        return [Prediction(product_id=r.product_id, attribute=a) for r in requests for a in r.attributes]


def _requests(*ids: str, attributes=("color", "size")) -> list[Request]:
    return [Request(f"record {i}", product_id, None, list(attributes)) for i, product_id in enumerate(ids)]


def test_products_waiting_together_share_a_batch_up_to_the_bound_and_results_go_back_to_their_owner():
    run = Recorder()
    run.gate.clear()
    batcher = MicroBatcher(run, max_batch_size=3, max_wait_s=0.05, capacity=100)
    first = batcher.submit(_requests("a"))
    time.sleep(0.2)  # "a" is running (held at the gate); the next five wait together
    rest = batcher.submit(_requests("b", "c")) + batcher.submit(_requests("d", "e", "f"))
    run.gate.set()
    results = [f.result(10) for f in first + rest]
    batcher.close()
    assert run.batches == [["a"], ["b", "c", "d"], ["e", "f"]]
    assert [[(p.product_id, p.attribute) for p in rows] for rows in results] == [
        [(i, "color"), (i, "size")] for i in "abcdef"]


def test_a_lone_product_starts_at_once_and_one_with_a_request_being_read_waits_for_it_at_most_max_wait():
    run = Recorder()
    batcher = MicroBatcher(run, max_batch_size=32, max_wait_s=0.3, capacity=10)
    started = time.perf_counter()
    batcher.submit(_requests("a"))[0].result(10)
    alone = time.perf_counter() - started
    with batcher.arriving():  # "c" is being read while "b" is queued: "b" waits for it
        first = batcher.submit(_requests("b"))
        time.sleep(0.05)
        second = batcher.submit(_requests("c"))
    [f.result(10) for f in first + second]
    with batcher.arriving():  # a request that never comes: "d" waits max_wait, then goes alone
        started = time.perf_counter()
        batcher.submit(_requests("d"))[0].result(10)
        bounded = time.perf_counter() - started
    batcher.close()
    assert alone < 0.3 <= bounded < 3.0
    assert run.batches == [["a"], ["b", "c"], ["d"]]


def test_a_full_queue_refuses_the_whole_request_at_once():
    run = Recorder()
    run.gate.clear()
    batcher = MicroBatcher(run, max_batch_size=1, max_wait_s=0, capacity=3)
    held = batcher.submit(_requests("running"))
    time.sleep(0.1)
    queued = batcher.submit(_requests("a", "b"))
    started = time.perf_counter()
    with pytest.raises(QueueFull) as refused:
        batcher.submit(_requests("c", "d"))  # 2 + 2 > 3: none of them is queued
    assert time.perf_counter() - started < 0.05
    assert refused.value.retry_after >= 1 and batcher.depth == 2
    batcher.submit(_requests("c"))  # one more fits
    run.gate.set()
    assert all(f.result(10) for f in held + queued)
    batcher.close()


def test_cancelled_products_are_dropped_unrun_and_close_drains_the_queue():
    run = Recorder()
    run.gate.clear()
    batcher = MicroBatcher(run, max_batch_size=2, max_wait_s=0, capacity=10)
    batcher.submit(_requests("running"))
    time.sleep(0.1)
    left, stays = batcher.submit(_requests("left", "stays"))
    assert left.cancel()
    threading.Timer(0.2, run.gate.set).start()
    batcher.close()  # waits for the running batch and the queue
    assert stays.result(0) and left.cancelled()
    assert run.batches == [["running"], ["stays"]]
    assert (batcher.stats.abandoned, batcher.stats.products) == (1, 2)
    with pytest.raises(ShuttingDown):
        batcher.submit(_requests("late"))


def test_an_engine_failure_reaches_the_callers_and_the_worker_goes_on():
    calls = []

    def flaky(requests):
        calls.append(len(requests))
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return [Prediction(product_id=r.product_id, attribute=a) for r in requests for a in r.attributes]

    batcher = MicroBatcher(flaky, max_batch_size=4, max_wait_s=0, capacity=10)
    with pytest.raises(RuntimeError, match="out of memory"):
        batcher.submit(_requests("a"))[0].result(10)
    assert batcher.submit(_requests("b"))[0].result(10)[0].product_id == "b"
    batcher.close()


def test_two_workers_run_two_batches_at_once():
    both_running = threading.Barrier(2, timeout=5)  # passes only when two batches run at the same time

    def run(requests):
        both_running.wait()
        return [Prediction(product_id=r.product_id, attribute=a) for r in requests for a in r.attributes]

    batcher = MicroBatcher([run, run], max_batch_size=1, max_wait_s=0, capacity=10)
    futures = batcher.submit(_requests("a")) + batcher.submit(_requests("b"))
    assert [f.result(10)[0].product_id for f in futures] == ["a", "b"]
    batcher.close()
    assert (batcher.stats.batches, batcher.stats.products) == (2, 2)


def test_a_free_worker_waits_for_a_fuller_batch_only_while_another_worker_runs():
    release_a, batches, lock = threading.Event(), [], threading.Lock()

    def run(requests):
        ids = [r.product_id for r in requests]
        with lock:
            batches.append((ids, time.perf_counter()))
        if "a" in ids:
            release_a.wait(10)
        return [Prediction(product_id=r.product_id, attribute=a) for r in requests for a in r.attributes]

    batcher = MicroBatcher([run, run], max_batch_size=8, max_wait_s=1.0, capacity=10)
    submitted = time.perf_counter()
    held = batcher.submit(_requests("a"))  # both workers free, nothing being read: "a" starts at once
    while not batches:
        time.sleep(0.01)
    first = batcher.submit(_requests("b"))  # the other worker is running "a": "b" waits for company
    time.sleep(0.1)
    second = batcher.submit(_requests("c"))
    [f.result(10) for f in first + second]
    release_a.set()
    held[0].result(10)
    batcher.close()
    assert [ids for ids, _ in batches] == [["a"], ["b", "c"]]
    assert batches[0][1] - submitted < 0.5  # no wait for "a" (a wait would last the whole second)


def test_each_worker_runs_on_start_first_and_a_failed_start_is_kept_while_the_worker_serves():
    started_in = []

    def on_start(run):
        started_in.append(threading.current_thread().name)
        if len(started_in) == 1:
            raise RuntimeError("warm-up failed")
        run(_requests("warm-up"))

    run = Recorder()
    batcher = MicroBatcher([run, run], max_batch_size=4, max_wait_s=0, capacity=10, on_start=on_start)
    assert batcher.wait_started(10)
    assert sorted(started_in) == ["mxt-batcher-0", "mxt-batcher-1"]
    assert [str(e) for e in batcher.start_errors] == ["warm-up failed"]
    assert run.batches == [["warm-up"]] and batcher.stats.batches == 0  # warm-ups are not counted
    futures = [f for _ in range(4) for f in batcher.submit(_requests("x"))]
    assert all(f.result(10)[0].product_id == "x" for f in futures)
    batcher.close()
