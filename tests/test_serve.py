"""`mxt serve`'s app on a real uvicorn server over loopback: answers equal to Extractor.extract, merged
batches, bad input, uploads, overload, disconnects, shutdown, metrics and the OpenAPI schema."""
from __future__ import annotations

import asyncio
import io
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch
from PIL import Image

from conftest import tiny_config
from live_server import LiveServer
from test_image_urls import connected, listener
from mxt_sdk import Extractor
from mxt_sdk.data.metadata import CatalogMetadata
from mxt_sdk.serving.app import create_app
from mxt_sdk.serving.settings import ServeSettings

ATTRIBUTES = ["color", "material"]


@pytest.fixture(scope="module")
def extractor():
    return _extractor("per_question")


def _extractor(context_encoding: str) -> Extractor:
    torch.manual_seed(0)
    config = tiny_config(["mag", "xattn"])
    config["model"]["context_encoding"] = context_encoding
    extractor = Extractor.from_config(config)
    extractor.metadata = CatalogMetadata(values={"dress\tcolor": {"red": 2}, "dress\tneckline": {"v-neck": 1},
                                                 "mug\tmaterial": {"ceramic": 1}}, max_answer_tokens=4)
    return extractor


def _records(products):
    return [p.model_dump(exclude_defaults=True) for p in products]


def _post(url, body, **kwargs):
    return httpx.post(url + "/v1/extract", json=body, timeout=60, **kwargs)


def _same(served: list[dict], expected) -> None:
    """Every field equal, confidences to float rounding (the batches are composed differently)."""
    reference = [p.model_dump(mode="json") for p in expected]
    assert [{**r, "confidence": None} for r in served] == [{**r, "confidence": None} for r in reference]
    assert [r["confidence"] for r in served] == pytest.approx([r["confidence"] for r in reference], rel=1e-4,
                                                              abs=1e-7)


@pytest.mark.parametrize("workers", [1, 2, "per_product"])
def test_concurrent_requests_are_merged_into_batches_and_answer_as_extract(extractor, products, image_dir, workers):
    if workers == "per_product":  # one worker, each product's context encoded once (model.context_encoding)
        extractor, workers = _extractor("per_product"), 1
    app = create_app(extractor, ServeSettings(image_root=image_dir, max_wait_ms=300, max_batch_size=16,
                                              workers=workers))
    with LiveServer(app) as server:
        batches_before = server.metric("mxt_batch_size_count")
        with ThreadPoolExecutor(len(products)) as pool:
            answers = list(pool.map(lambda r: _post(server.url, {"product": r, "attributes": ATTRIBUTES}),
                                    _records(products)))
        assert [a.status_code for a in answers] == [200] * len(products)
        batches = server.metric("mxt_batch_size_count") - batches_before
        in_list = _post(server.url, {"products": _records(products), "attributes": ATTRIBUTES})
        defaults = _post(server.url, {"products": _records(products[:3])})
    assert batches < len(products)  # at least two products shared an engine batch
    expected = extractor.extract(products, ATTRIBUTES, image_root=image_dir)
    _same([row for a in answers for row in a.json()["predictions"]], expected)
    _same(in_list.json()["predictions"], expected)
    assert any(row["image_used"] for row in in_list.json()["predictions"])
    # Without attributes each product is asked those the model knows for its type.
    rows = defaults.json()["predictions"]
    assert [(r["product_id"], r["attribute"]) for r in rows] == [("p1", "color"), ("p1", "neckline"),
                                                                 ("p2", "material"), ("p3", "material")]
    _same(rows, extractor.extract(products[:3], image_root=image_dir))


def test_an_engine_with_its_own_tokenizer_shares_the_weights_and_tokenizes_alike(extractor):
    shared, own = extractor.engine(), extractor.engine(own_tokenizer=True)
    assert own.tokenizer is not shared.tokenizer and own.model is shared.model
    text = ["question: color context: dress red printed sheath dress"]
    assert own.tokenizer(text)["input_ids"] == shared.tokenizer(text)["input_ids"]


def test_bad_input_is_refused_or_answered_with_error_rows(extractor, products, image_dir):
    app = create_app(extractor, ServeSettings(image_root=image_dir, max_products=4, max_body_bytes=4096))
    good = _records(products[:2])
    with LiveServer(app) as server:
        single = _post(server.url, {"product": {"id": "x", "product_type": "mug"}, "attributes": ["color"]})
        listed = _post(server.url, {"products": [good[0], {"id": "x", "product_type": "mug", "titel": "Mug"},
                                                 "not an object", good[1]], "attributes": ["color"]})
        too_many = _post(server.url, {"products": good * 3, "attributes": ["color"]})
        too_big = _post(server.url, {"product": {**good[0], "description": "x" * 5000}, "attributes": ["color"]})
        not_json = httpx.post(server.url + "/v1/extract", content=b"{oops", timeout=30)
        both = _post(server.url, {"product": good[0], "products": good, "attributes": ["color"]})
        unknown_key = _post(server.url, {"products": good, "attribute": ["color"]})
        escape = _post(server.url, {"product": {**good[0], "image": "../../../etc/hosts"}, "attributes": ["color"]})
    assert single.status_code == 422
    assert {tuple(d["loc"]) for d in single.json()["detail"]} == {("body", "product", "title")}
    assert listed.status_code == 200
    rows = listed.json()["predictions"]
    assert [r["product_id"] for r in rows] == ["p1", "x", "record 2", "p2"]
    assert "field 'titel' is not a known product field" in rows[1]["error"] and "'title' is missing" in rows[1]["error"]
    assert "expected an object" in rows[2]["error"]
    assert rows[0]["error"] is None and rows[3]["error"] is None
    assert too_many.status_code == 413 and "at most 4" in too_many.json()["detail"][0]["msg"]
    assert too_big.status_code == 413
    assert not_json.status_code == 422 and "not valid JSON" in not_json.json()["detail"][0]["msg"]
    assert both.status_code == 422 and unknown_key.status_code == 422
    assert unknown_key.json()["detail"][0]["loc"] == ["body", "attribute"]
    assert escape.status_code == 200 and "escapes the image root" in escape.json()["predictions"][0]["error"]


def test_uploaded_image_bytes_answer_as_the_same_file_and_paths_need_an_image_root(extractor, products, image_dir):
    product = _records(products[:1])[0]  # red.jpg
    request = {"products": [{**product, "image": "upload:photo"}, {**product, "id": "other", "image": "upload:nope"},
                            {**product, "id": "path"}], "attributes": ATTRIBUTES}
    files = {"photo": ("red.jpg", (image_dir / "red.jpg").read_bytes(), "image/jpeg")}
    with LiveServer(create_app(extractor, ServeSettings())) as server:  # no image root
        answer = httpx.post(server.url + "/v1/extract", data={"request": json.dumps(request)}, files=files, timeout=60)
    assert answer.status_code == 200, answer.text
    rows = answer.json()["predictions"]
    _same(rows[:2], extractor.extract(products[:1], ATTRIBUTES, image_root=image_dir))
    assert rows[0]["image_used"]
    assert all("no uploaded file part named 'nope'" in r["error"] for r in rows[2:4])
    assert all("started without --image-root" in r["error"] for r in rows[4:])


def test_a_full_queue_answers_429_at_once_and_the_server_recovers(extractor, products, image_dir):
    app = create_app(extractor, ServeSettings(image_root=image_dir, max_batch_size=1, max_wait_ms=0, queue_size=4))
    heavy = {"products": _records(products)[:4], "attributes": ATTRIBUTES + ["pattern", "style"]}
    light = {"products": _records(products[:1]), "attributes": ATTRIBUTES}

    async def storm(url):  # one client thread (asyncio), so the server's threads are not starved of the GIL
        async with httpx.AsyncClient(timeout=120) as client:
            async def timed(index):
                started = time.perf_counter()
                answer = await client.post(url + "/v1/extract", json=heavy if index % 3 == 0 else light)
                return answer, time.perf_counter() - started
            return await asyncio.gather(*(timed(i) for i in range(24)))

    with LiveServer(app) as server:
        results = asyncio.run(storm(server.url))
        timed_refusals = server.metric("mxt_refusal_latency_seconds_count")
        after = _post(server.url, light)
        larger_than_the_queue = _post(server.url, {"products": _records(products), "attributes": ATTRIBUTES})
    assert larger_than_the_queue.status_code == 413  # could never be queued: not a 429 to retry for ever
    refused = [(a, s) for a, s in results if a.status_code == 429]
    assert refused, [a.status_code for a, _ in results]
    assert {a.status_code for a, _ in results} <= {200, 429}
    assert all(int(a.headers["Retry-After"]) >= 1 for a, _ in refused)
    assert timed_refusals == len(refused)  # each 429 has its answer time in /metrics
    # A refusal does not wait for the engine: typically faster than an answer (absolute times are the
    # benchmark's job; this machine may be shared). The batcher test bounds the refusal itself in ms.
    answered = sorted(s for a, s in results if a.status_code == 200)
    assert sorted(s for _, s in refused)[len(refused) // 2] < answered[len(answered) // 2]
    assert after.status_code == 200


def test_a_disconnected_client_leaves_no_work_and_shutdown_finishes_requests_in_flight(extractor, products,
                                                                                       image_dir):
    app = create_app(extractor, ServeSettings(image_root=image_dir, max_batch_size=1, max_wait_ms=0))
    busy = {"products": _records(products) * 6, "attributes": ATTRIBUTES}  # 30 one-product batches
    server = LiveServer(app).__enter__()
    try:
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(_post, server.url, busy)
            while server.metric("mxt_queue_depth") == 0:
                time.sleep(0.01)
            body = json.dumps({"product": _records(products[:1])[0], "attributes": ATTRIBUTES}).encode()
            host, port = server.url.removeprefix("http://").split(":")
            with socket.create_connection((host, int(port))) as client:  # sends, then hangs up unanswered
                client.sendall(b"POST /v1/extract HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                               + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
                time.sleep(0.3)
            threading.Thread(target=server.stop).start()  # graceful shutdown while `busy` is running
            answer = in_flight.result(timeout=120)
    finally:
        server.stop()
    assert answer.status_code == 200 and len(answer.json()["predictions"]) == 60
    stats = app.state.batcher.stats
    assert (stats.abandoned, stats.products) == (1, 30)  # `busy` ran; the left product did not


def test_metrics_health_and_openapi(extractor, products, image_dir):
    with LiveServer(create_app(extractor, ServeSettings(image_root=image_dir))) as server:
        _post(server.url, {"products": _records(products), "attributes": ATTRIBUTES})
        health = httpx.get(server.url + "/healthz")
        metrics = httpx.get(server.url + "/metrics").text
        schema = httpx.get(server.url + "/openapi.json").json()
    assert health.json() == {"status": "ok"}
    for name in ("mxt_http_requests_total{path=\"/v1/extract\",status=\"200\"} 1.0", "mxt_batch_size_bucket",
                 "mxt_queue_depth 0.0", "mxt_request_latency_seconds_bucket", "mxt_ready 1.0",
                 "mxt_products_total 5.0"):  # five products (the workers' warm-ups are not counted)
        assert name in metrics
    schemas = schema["components"]["schemas"]
    assert {"ExtractRequest", "ExtractResponse", "Product", "Prediction"} <= set(schemas)
    assert schemas["ExtractRequest"]["properties"]["products"]["anyOf"][0]["items"] == {
        "$ref": "#/components/schemas/Product"}
    body = schema["paths"]["/v1/extract"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    assert {"413", "422", "429"} <= set(schema["paths"]["/v1/extract"]["post"]["responses"])


def test_uploads_over_the_pixel_limit_are_refused_as_bombs(extractor, products):
    buffer = io.BytesIO()
    Image.new("L", (9000, 6000)).save(buffer, format="PNG")
    request = {"product": {**_records(products[:1])[0], "image": "upload:bomb"}, "attributes": ["color"]}
    with LiveServer(create_app(extractor, ServeSettings())) as server:
        answer = httpx.post(server.url + "/v1/extract", data={"request": json.dumps(request)},
                            files={"bomb": ("bomb.png", buffer.getvalue(), "image/png")}, timeout=60)
    assert "decompression bomb" in answer.json()["predictions"][0]["error"]


@pytest.mark.parametrize("allow_urls", [False, True])
def test_an_image_url_to_a_loopback_port_gets_an_error_row_and_no_connection(extractor, products, allow_urls):
    # The URL rules come from the extractor's config (`mxt serve --allow-urls` sets this flag).
    extraction = extractor.config.extraction
    before, extraction.allow_urls = extraction.allow_urls, allow_urls
    try:
        with listener() as sock:  # a real listening socket: a connection attempt would be accepted
            port = sock.getsockname()[1]
            urls = [f"http://{host}:{port}/x.jpg" for host in ("127.0.0.1", "localhost", "[::ffff:127.0.0.1]")]
            listed = [{**_records(products[:1])[0], "id": f"u{i}", "image": url} for i, url in enumerate(urls)]
            with LiveServer(create_app(extractor, ServeSettings())) as server:
                answer = _post(server.url, {"products": [*listed, _records(products[2:3])[0]],
                                            "attributes": ["color"]})
            assert not connected(sock)
    finally:
        extraction.allow_urls = before
    assert answer.status_code == 200, answer.text
    rows = answer.json()["predictions"]
    assert [r["product_id"] for r in rows] == ["u0", "u1", "u2", "p3"]
    expected = "not a public one" if allow_urls else "disabled"
    assert all(expected in r["error"] and "field 'image'" in r["error"] for r in rows[:3]), rows
    assert rows[3]["error"] is None  # the product without an image is answered beside them
