"""`mxt serve` as a process (ready, answers, SIGTERM finishes requests in flight) and the same app under
Ray Serve. Both start real servers on loopback; minutes on two shared cores, so marked slow."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch

from conftest import tiny_config
from mxt_sdk import Extractor
from mxt_sdk.data.metadata import CatalogMetadata

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    extractor = Extractor.from_config(tiny_config(["mag", "xattn"]))
    extractor.metadata = CatalogMetadata(values={"dress\tcolor": {"red": 2}, "mug\tmaterial": {"ceramic": 1}},
                                         max_answer_tokens=4)
    folder = tmp_path_factory.mktemp("model")
    extractor.save_pretrained(folder)
    return folder


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(url: str, process: subprocess.Popen | None = None, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (process is None or process.poll() is None):
        try:
            if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} never became ready")


def _rows(predictions):
    return [{**p.model_dump(mode="json"), "confidence": None} for p in predictions]


def test_mxt_serve_process_answers_and_finishes_requests_in_flight_on_sigterm(model_dir, products, image_dir):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([sys.executable, "-m", "mxt_sdk.cli", "serve", "--model", str(model_dir),
                                "--image-root", str(image_dir), "--port", str(port), "--max-batch-size", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ})
    try:
        _wait_ready(url, process)
        records = [p.model_dump(exclude_defaults=True) for p in products]
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(httpx.post, url + "/v1/extract", json={"products": records * 4}, timeout=300)
            time.sleep(1.0)  # the request is being worked on, one product per batch
            process.send_signal(signal.SIGTERM)
            answer = in_flight.result(timeout=300)
        # uvicorn finishes the requests in flight, then re-raises the signal: the process ends by SIGTERM
        assert process.wait(120) in (0, -signal.SIGTERM)
    finally:
        process.kill()
    log = process.stdout.read().decode()
    assert answer.status_code == 200, log
    rows = answer.json()["predictions"]
    expected = Extractor.from_pretrained(model_dir).extract(products * 4, image_root=image_dir)
    assert [{**r, "confidence": None} for r in rows] == _rows(expected)
    assert "Waiting for" in log or "Shutting down" in log


def test_the_same_app_under_ray_serve_answers_like_extract(model_dir, products, image_dir):
    pytest.importorskip("ray.serve")
    import ray
    from ray import serve

    from mxt_sdk.serving.ray_serve import deployment

    port = _free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}})
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(deployment(model_dir, num_replicas=1, settings={"image_root": str(image_dir)}), route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url)
        records = [p.model_dump(exclude_defaults=True) for p in products]
        answer = httpx.post(url + "/v1/extract", json={"products": records, "attributes": ["color"]}, timeout=120)
        full = httpx.post(url + "/v1/extract", json={"products": records * 20}, timeout=120)
    finally:
        serve.shutdown()
        ray.shutdown()
    assert answer.status_code == 200, answer.text
    expected = Extractor.from_pretrained(model_dir).extract(products, ["color"], image_root=image_dir)
    assert [{**r, "confidence": None} for r in answer.json()["predictions"]] == _rows(expected)
    assert full.status_code == 413 and "at most 64" in json.dumps(full.json())
