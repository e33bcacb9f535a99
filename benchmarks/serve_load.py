"""Load test of ``mxt serve`` on loopback: micro-batching on vs off, overload, answers checked.

Run from the repository root (not a test; about 5 minutes on 2 idle CPU cores)::

    python benchmarks/serve_load.py --model /tmp/serve-model --rounds 2 --output serve-results/serve_load.json

Unless ``--model`` names an existing model folder it trains ``--config`` (default ``mxt-cpu``, the
configuration users get: known-value chooser, span binding and image prior included) for
``--train-steps`` steps on the synthetic catalog first (and saves it there), so the answers are real
ones (not argmax ties of noise).
Then, against two ``mxt serve`` processes on 127.0.0.1 (same code and model): micro-batching on
(``--max-batch-size 32 --max-wait-ms 5``) and off (``--max-batch-size 1``: one request per engine
call), each with the server's defaults otherwise (``--workers 2``) plus ``--on-options`` /
``--off-options`` (e.g. ``--off-options "--workers 1 --torch-threads 1"``, the fastest unbatched
server on 2 cores), one client process sends one product per request from 1, 8 and 32 concurrent clients, the
modes alternating (``--rounds`` times per client count, on-off then off-on) so a change in the
machine's load or speed falls on both. The clients are lean asyncio HTTP/1.1 connections
(:class:`Connection`), so the client's own work is a small part of what is measured. Every request is
bounded: ``--requests`` per run and ``--max-seconds`` per run, whichever comes first. Each run also reports the mean products per engine
batch, and per answered request the engine's wall time, the server process's CPU time and the
client process's CPU time.

With ``--compare-layouts`` the two servers are instead the model (``context_encoding: per_product``, as
``mxt-cpu`` ships) and the same configuration trained the same way in the paper's layout
(``per_question``), both with micro-batching on: the throughput ratio is what encoding each product's
context once buys a server.

Every answer is compared with ``Extractor.extract`` on the same products, run in this process:
*lost* = a request without a 200 answer (transport error, timeout, 5xx), *duplicated* = a (product,
attribute) row answered more than once, *wrong* = a row whose fields differ from the reference
(confidence to rel. 1e-4, as batches are composed differently) or that belongs to another request
(each request carries its own product id). The overload run sends ``--overload-clients`` clients
against a queue of ``--overload-queue`` products; refused requests (429) are not retried and are
counted apart, with their answer times as the clients saw them, as a separate probe process saw
them, and as the server measured them (``mxt_refusal_latency_seconds``); then a paced run checks
that the server recovers.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import httpx  # noqa: E402  (mxt_sdk is imported where needed: the probe process starts without torch)

MODES = {"batching on": ["--max-batch-size", "32", "--max-wait-ms", "5"],
         "batching off": ["--max-batch-size", "1", "--max-wait-ms", "0"]}


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (nearest rank) of ``values``, or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``mxt serve`` in a subprocess on a loopback port; stopped with SIGTERM (graceful)."""

    def __init__(self, model: Path, images: Path, options: list[str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "mxt_sdk.cli", "serve", "--model", str(model), "--image-root", str(images),
                   "--port", str(self.port), *options]
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)

    def __enter__(self) -> "Server":
        deadline = time.monotonic() + 600  # a shared machine can take minutes to import torch
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if httpx.get(self.url + "/readyz", timeout=5).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.process.kill()  # never leave a server behind
        self.log.seek(0)
        raise RuntimeError(f"mxt serve did not become ready:\n{self.log.read().decode()[-3000:]}")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(60)

    def totals(self) -> tuple[float, float, float]:
        """(products, engine batches, engine seconds) the server has run so far, from its /metrics page."""
        return tuple(scrape(self.url, name) or 0.0
                     for name in ("mxt_batch_size_sum", "mxt_batch_size_count", "mxt_batch_seconds_sum"))

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server process has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def expected_rows(model: Path, products: list[dict[str, Any]], images: Path) -> dict[str, list[dict[str, Any]]]:
    """``Extractor.extract`` on the same products: the rows of each product id."""
    from mxt_sdk import Extractor
    extractor = Extractor.from_pretrained(model)
    rows: dict[str, list[dict[str, Any]]] = {}
    for prediction in extractor.extract(products, image_root=images):
        rows.setdefault(prediction.product_id, []).append(prediction.model_dump(mode="json"))
    return rows


def check(answer: list[dict[str, Any]], request_id: str, reference: list[dict[str, Any]]) -> tuple[int, int]:
    """(duplicated, wrong) rows of one answer against the reference rows of its product."""
    keys = [(row["product_id"], row["attribute"]) for row in answer]
    duplicated = len(keys) - len(set(keys))
    wrong = abs(len(set(keys)) - len(reference))
    by_attribute = {row["attribute"]: row for row in answer if row["product_id"] == request_id}
    wrong += sum(row["product_id"] != request_id for row in answer)
    for expected in reference:
        got = by_attribute.get(expected["attribute"])
        if got is None:
            continue
        same = {**got, "product_id": None, "confidence": None} == {**expected, "product_id": None, "confidence": None}
        close = abs(got["confidence"] - expected["confidence"]) <= 1e-4 * max(abs(expected["confidence"]), 1e-3)
        wrong += not (same and close)
    return duplicated, wrong


class Connection:
    """One keep-alive HTTP/1.1 connection on asyncio streams: a lean client, so that the load generator's
    own work (a few hundred microseconds per request) is not what the answer times measure. httpx's
    AsyncClient costs milliseconds per request; with 96 concurrent clients in one process on 2 cores
    its own queueing alone made answers of a server that refuses at once take 0.7 s (p50) to 5 s."""

    def __init__(self, url: str):
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, payload: bytes) -> tuple[int, dict[str, str], bytes]:
        """(status, headers with lower-case names, body); raises OSError / IncompleteReadError / ValueError
        when the connection fails (it is then closed, and the next call opens a new one)."""
        try:
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                              f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
                              + payload)
            status = int((await self.reader.readline()).split()[1])
            headers = {}
            while (line := await self.reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await self.reader.readexactly(int(headers["content-length"]))
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError, KeyError):
            await self.close()
            raise ConnectionError("the connection failed") from None
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, headers, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None


async def load(url: str, products: list[dict[str, Any]], reference: dict[str, list[dict[str, Any]]],
               clients: int, requests: int, max_seconds: float, pace: float = 0.0,
               timeout: float = 120.0) -> dict[str, Any]:
    """``clients`` concurrent clients (one connection each) send ``requests`` one-product requests in all
    (or stop after ``max_seconds``); each answer is checked against ``reference``."""
    counts = {"sent": 0, "ok": 0, "refused_429": 0, "lost": 0, "duplicated": 0, "wrong": 0}
    latencies: list[float] = []
    refusals: list[float] = []
    retry_after: set[str] = set()
    next_index = iter(range(requests))
    stop_at = time.monotonic() + max_seconds

    async def client() -> None:
        connection = Connection(url)
        try:
            for index in next_index:
                if time.monotonic() > stop_at:
                    return
                product = products[index % len(products)]
                request_id = f"{product['id']}#{index}"
                payload = json.dumps({"product": {**product, "id": request_id}}).encode()
                counts["sent"] += 1
                started = time.perf_counter()
                try:
                    status, headers, body = await asyncio.wait_for(connection.post("/v1/extract", payload), timeout)
                except (ConnectionError, asyncio.TimeoutError):
                    await connection.close()
                    counts["lost"] += 1
                    continue
                seconds = time.perf_counter() - started
                if status == 429:
                    counts["refused_429"] += 1
                    refusals.append(seconds)
                    retry_after.add(headers.get("retry-after", "missing"))
                elif status != 200:
                    counts["lost"] += 1
                else:
                    counts["ok"] += 1
                    latencies.append(seconds)
                    duplicated, wrong = check(json.loads(body)["predictions"], request_id, reference[product["id"]])
                    counts["duplicated"] += duplicated
                    counts["wrong"] += wrong
                if pace:
                    await asyncio.sleep(pace)
        finally:
            await connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - started
    return {**counts, "clients": clients, "seconds": round(wall, 2),
            "throughput_rps": round(counts["ok"] / wall, 2) if wall else None,
            "p50_ms": _ms(percentile(latencies, 50)), "p99_ms": _ms(percentile(latencies, 99)),
            "refusal_p50_ms": _ms(percentile(refusals, 50)), "refusal_p99_ms": _ms(percentile(refusals, 99)),
            "refusal_max_ms": _ms(max(refusals, default=None)), "retry_after": sorted(retry_after)}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def probe(url: str, product: dict[str, Any], count: int, pause: float) -> list[tuple[int, float]]:
    """(status, ms) of ``count`` sequential one-product requests, ``pause`` s apart: what one more
    client sees while the others load the server (run in a process of its own, see ``--probe``)."""
    answers = []
    with httpx.Client(timeout=120) as http:
        for index in range(count):
            started = time.perf_counter()
            status = http.post(url + "/v1/extract", json={"product": {**product, "id": f"probe#{index}"}}).status_code
            answers.append((status, round((time.perf_counter() - started) * 1000, 1)))
            time.sleep(pause)
    return answers


def storm_with_probe(url: str, products: list[dict[str, Any]], reference: dict[str, list[dict[str, Any]]],
                     args: argparse.Namespace) -> dict[str, Any]:
    """The overload run, with a probe process sending one request at a time beside it."""
    command = [sys.executable, __file__, "--probe", url, "--probe-product", json.dumps(products[0])]
    prober = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if prober.stdout.readline().strip() != "ready":  # its start-up (imports) must not overlap the storm
        raise RuntimeError("the probe process did not start")
    prober.stdin.write("go\n")
    prober.stdin.flush()
    storm = asyncio.run(load(url, products, reference, args.overload_clients, args.overload_clients * 4,
                             args.max_seconds))
    answers = json.loads(prober.communicate(timeout=300)[0].splitlines()[-1])
    refused = [ms for status, ms in answers if status == 429]
    return {**storm, "probe": {"answers": len(answers), "refused_429": len(refused),
                               "refusal_p50_ms": percentile(refused, 50), "refusal_max_ms": max(refused, default=None),
                               "statuses": sorted({status for status, _ in answers})}}


def scrape(url: str, name: str) -> float | None:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def prepare(args: argparse.Namespace, work: Path) -> tuple[Path, list[dict[str, Any]], Path]:
    """The model folder (trained here unless given), the test products and their image folder."""
    from mxt_sdk.experiments.synthetic import write_catalog
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from measure import train_on_synthetic
    model = Path(args.model) if args.model else work / "trained" / "model"
    if not args.model or not model.exists():
        trained, catalog = train_on_synthetic(work / "trained", args.config, steps=args.train_steps,
                                              train_size=1000, test_size=args.products)
        if trained != model:
            shutil.copytree(trained, model)
    else:
        catalog = write_catalog(work / "catalog", train_size=1000, test_size=args.products, seed=0)
    products = [json.loads(line) for line in catalog["test"].read_text().splitlines()]
    products = [{k: v for k, v in p.items() if k != "attributes"} for p in products]
    return model, products, catalog["test"].parent


def paper_layout_model(args: argparse.Namespace, work: Path) -> Path:
    """``--config`` trained as :func:`prepare` trains it (same catalog, steps and seed) but with
    ``model.context_encoding: per_question``, the paper's layout."""
    from mxt_sdk.config import load_config
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from measure import train_on_synthetic
    config = load_config(args.config)
    config.model.context_encoding = "per_question"
    model, _ = train_on_synthetic(work / "trained-per-question", config, steps=args.train_steps, train_size=1000,
                                  test_size=args.products)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="A model folder; trained here (--config on the synthetic catalog) and "
                                        "saved there when it does not exist yet.")
    parser.add_argument("--config", default="mxt-cpu",  # measure.SHIPPED_CONFIG (measure imports torch)
                        help="configuration trained when --model does not exist")
    parser.add_argument("--train-steps", type=int, default=150)
    parser.add_argument("--products", type=int, default=64, help="Distinct test products, cycled.")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--requests", type=int, default=480, help="Requests per run at most.")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="Seconds per run at most.")
    parser.add_argument("--rounds", type=int, default=1,
                        help="Times each client count is run in both modes (on, off, then off, on, ...).")
    parser.add_argument("--overload-clients", type=int, default=96, help="Clients of the overload run (0: none).")
    parser.add_argument("--overload-queue", type=int, default=16)
    parser.add_argument("--torch-threads", type=int, help="--torch-threads of both servers (default: the server's).")
    parser.add_argument("--on-options", default="", help="More `mxt serve` options of the batching-on server, "
                                                         "e.g. '--workers 2'.")
    parser.add_argument("--off-options", default="", help="More `mxt serve` options of the batching-off server.")
    parser.add_argument("--compare-layouts", action="store_true",
                        help="Instead of batching on / off: the model (per_product, as mxt-cpu ships) against the same "
                             "config trained with context_encoding: per_question, both with batching on.")
    parser.add_argument("--output", help="JSON file for the results.")
    parser.add_argument("--probe", help=argparse.SUPPRESS)  # internal: the probe process of the overload run
    parser.add_argument("--probe-product", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        print("ready", flush=True)
        sys.stdin.readline()  # "go": the storm starts
        print(json.dumps(probe(args.probe, json.loads(args.probe_product), count=40, pause=0.1)))
        return
    with tempfile.TemporaryDirectory(prefix="mxt-serve-load-") as folder:
        model, products, images = prepare(args, Path(folder))
        for mode, options in MODES.items():
            if args.torch_threads:
                options += ["--torch-threads", str(args.torch_threads)]
            options += shlex.split(args.on_options if mode == "batching on" else args.off_options)
        reference = expected_rows(model, products, images)
        results: dict[str, Any] = {"runs": [], "settings": vars(args), "cpus": os.cpu_count()}
        # Both servers run at once and the modes alternate at each client count, in ABBA order over the
        # rounds, so a steady change in the machine's speed during the benchmark (it may be shared, or a
        # virtual machine whose CPU is taken by others) falls on both alike.
        arms = {"batching on": (model, MODES["batching on"]), "batching off": (model, MODES["batching off"])}
        if args.compare_layouts:  # the same config trained in the paper's layout, both served with batching on
            arms = {"per_product": (model, MODES["batching on"]),
                    "per_question": (paper_layout_model(args, Path(folder)), MODES["batching on"])}
        references = {name: reference if arm_model == model else expected_rows(arm_model, products, images)
                      for name, (arm_model, _) in arms.items()}
        results["arms"] = list(arms)
        (first, (first_model, first_options)), (second, (second_model, second_options)) = arms.items()
        with Server(first_model, images, first_options) as one, Server(second_model, images, second_options) as two:
            for clients, round_ in ((c, r) for c in map(int, args.concurrency.split(",")) for r in range(args.rounds)):
                modes = ((first, one), (second, two))
                for mode, server in modes if round_ % 2 == 0 else modes[::-1]:  # A, B, B, A, ...
                    before, cpu_before, client_before = server.totals(), server.cpu_seconds(), time.process_time()
                    run = asyncio.run(load(server.url, products, references[mode], clients, args.requests,
                                           args.max_seconds))
                    client_cpu, cpu = time.process_time() - client_before, server.cpu_seconds() - cpu_before
                    products_run, batches, engine = (a - b for a, b in zip(server.totals(), before))
                    per_request = (lambda seconds: round(1000 * seconds / run["ok"], 1) if run["ok"] else None)
                    results["runs"].append({
                        "mode": mode, "round": round_ + 1, **run, "engine_batches": int(batches),
                        "mean_batch": round(products_run / batches, 1) if batches else None,
                        # where the time went, per answered request: the engine's wall time (worker thread),
                        # the server process's CPU time (engine + HTTP + JSON), the client process's CPU time
                        "engine_ms_per_request": per_request(engine), "server_cpu_ms_per_request": per_request(cpu),
                        "client_cpu_ms_per_request": per_request(client_cpu), "load_average": os.getloadavg()[0]})
                    print(json.dumps(results["runs"][-1]), flush=True)
        if args.overload_clients:
            overload = ["--queue-size", str(args.overload_queue), *MODES["batching on"]]
            with Server(model, images, overload) as server:
                storm = storm_with_probe(server.url, products, reference, args)
                calm = asyncio.run(load(server.url, products, reference, 2, 40, args.max_seconds, pace=0.05))
                refusals = {"count": scrape(server.url, "mxt_refusal_latency_seconds_count"),
                            "within_25ms": scrape(server.url, 'mxt_refusal_latency_seconds_bucket{le="0.025"}'),
                            "within_100ms": scrape(server.url, 'mxt_refusal_latency_seconds_bucket{le="0.1"}'),
                            "sum_seconds": scrape(server.url, "mxt_refusal_latency_seconds_sum")}
                results["overload"] = {"storm": storm, "after": calm, "server_refusals": refusals,
                                       "queue_depth_after": scrape(server.url, "mxt_queue_depth")}
            print(json.dumps(results["overload"]), flush=True)
    print(report(results))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(results, indent=2))


def report(results: dict[str, Any]) -> str:
    """The Markdown tables of a run."""
    lines = ["| mode | clients | round | requests ok | throughput (req/s) | p50 ms | p99 ms | products per batch "
             "| engine ms / req | server CPU ms / req | client CPU ms / req | lost | duplicated | wrong |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for run in results["runs"]:
        lines.append(f"| {run['mode']} | {run['clients']} | {run['round']} | {run['ok']} | {run['throughput_rps']} "
                     f"| {run['p50_ms']} | {run['p99_ms']} | {run['mean_batch']} | {run['engine_ms_per_request']} "
                     f"| {run['server_cpu_ms_per_request']} | {run['client_cpu_ms_per_request']} | {run['lost']} "
                     f"| {run['duplicated']} | {run['wrong']} |")
    by = {(r["mode"], r["clients"], r["round"]): r["throughput_rps"] for r in results["runs"]}
    first, second = results.get("arms", ["batching on", "batching off"])
    lines.append("")
    for clients, round_ in sorted({(r["clients"], r["round"]) for r in results["runs"]}):
        a, b = by.get((first, clients, round_)), by.get((second, clients, round_))
        if a and b:
            lines.append(f"clients {clients}, round {round_}: {first} / {second} throughput = {a / b:.2f}x")
    if "overload" not in results:
        return "\n".join(lines)
    storm, after = results["overload"]["storm"], results["overload"]["after"]
    lines.append(f"\noverload ({storm['clients']} clients): {storm['sent']} sent, {storm['ok']} ok, "
                 f"{storm['refused_429']} refused 429 (answer p50 {storm['refusal_p50_ms']} ms, p99 "
                 f"{storm['refusal_p99_ms']} ms, max {storm['refusal_max_ms']} ms, Retry-After {storm['retry_after']}), "
                 f"lost {storm['lost']}, duplicated {storm['duplicated']}, wrong {storm['wrong']}")
    server = results["overload"]["server_refusals"]
    lines.append(f"server side (mxt_refusal_latency_seconds, arrival at the app to the 429): {server['count']:.0f} "
                 f"refusals, {server['within_25ms']:.0f} within 25 ms, {server['within_100ms']:.0f} within 100 ms, "
                 f"mean {1000 * server['sum_seconds'] / max(server['count'], 1):.1f} ms")
    probed = storm["probe"]
    lines.append(f"probe process during the overload: {probed['answers']} requests one at a time, "
                 f"{probed['refused_429']} refused 429 (answer p50 {probed['refusal_p50_ms']} ms, max "
                 f"{probed['refusal_max_ms']} ms), statuses {probed['statuses']}")
    lines.append(f"after the overload (2 paced clients): {after['ok']}/{after['sent']} ok, "
                 f"{after['refused_429']} refused, p99 {after['p99_ms']} ms, lost {after['lost']}, "
                 f"wrong {after['wrong']}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
