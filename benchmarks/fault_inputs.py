"""Inputs of the fault benchmark (benchmarks/faults.py): a seeded corrupt catalog and the SSRF probe."""
from __future__ import annotations

import http.server
import io
import json
import random
import shutil
import socket
import subprocess
import threading
from collections import Counter
from pathlib import Path

from PIL import Image


def _image_files(folder: Path, outside: Path) -> dict[str, str]:
    """Bad image files under ``folder`` (relative names from the catalog folder) by kind."""
    folder.mkdir(parents=True, exist_ok=True)
    outside.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.effect_noise((120, 120), 40).convert("RGB").save(buffer, format="JPEG")
    (folder / "truncated.jpg").write_bytes(buffer.getvalue()[:700])
    (folder / "garbage.jpg").write_bytes(random.Random(1).randbytes(3000))
    (folder / "empty.png").write_bytes(b"")
    if not (folder / "bomb.png").exists():
        Image.new("L", (9000, 6000)).save(folder / "bomb.png")  # 54 M pixels, over the 50 M limit
    (folder / "a-folder.jpg").mkdir(exist_ok=True)
    Image.new("RGB", (20, 20)).save(outside / "secret.png")
    link = folder / "link.png"
    if not link.is_symlink():
        link.symlink_to(outside / "secret.png")
    name = folder.name
    return {"truncated_image": f"{name}/truncated.jpg", "garbage_image": f"{name}/garbage.jpg",
            "empty_image": f"{name}/empty.png", "bomb_image": f"{name}/bomb.png",
            "directory_image": f"{name}/a-folder.jpg", "symlink_out": f"{name}/link.png"}


def _bad_line(kind: str, index: int, good: dict, images: dict[str, str]) -> bytes:
    base = {"id": f"bad-{index}", "product_type": good["product_type"], "title": good["title"]}
    edits = {
        "title_not_text": {"title": 123}, "title_null": {"title": None}, "attributes_not_mapping": {"attributes": ["x"]},
        "image_not_text": {"image": 5}, "unknown_field": {"colour_code": 7}, "empty_id": {"id": ""},
        "huge_text": {"title": "word " * 20_000}, "missing_image": {"image": "images/absent.png"},
        "traversal": {"image": "../../../etc/passwd"}, "absolute_path": {"image": "/etc/hostname"},
        "url_loopback": {"image": "http://127.0.0.1:9/x.jpg"}, "url_private": {"image": "http://10.0.0.1/x.jpg"},
        "file_url": {"image": "file:///etc/passwd"},
        **{kind_: {"image": path} for kind_, path in images.items()},
    }
    if kind in edits:
        return json.dumps({**base, **edits[kind]}).encode()
    if kind == "missing_id":
        return json.dumps({k: v for k, v in base.items() if k != "id"}).encode()
    if kind == "missing_title":
        return json.dumps({k: v for k, v in base.items() if k != "title"}).encode()
    if kind == "broken_json":
        return json.dumps(base).encode()[:-7]
    if kind == "bad_utf8":
        return b'{"id": "bad-%d", "product_type": "mug", "title": "caf\xe9 \xff"}' % index
    if kind == "not_an_object":
        return b'["a", "list"]'
    if kind == "deeply_nested":
        return b'{"id": "deep", "title": ' + b"[" * 50_000
    raise ValueError(kind)


KINDS = ["broken_json", "bad_utf8", "not_an_object", "deeply_nested", "title_not_text", "title_null",
         "attributes_not_mapping", "image_not_text", "unknown_field", "missing_id", "empty_id", "missing_title",
         "huge_text", "truncated_image", "garbage_image", "empty_image", "bomb_image", "directory_image",
         "missing_image", "traversal", "absolute_path", "symlink_out", "url_loopback", "url_private", "file_url"]


def corrupt_catalog(folder: Path, good_path: Path, size: int, seed: int) -> tuple[int, int, dict[str, int]]:
    """Write ``folder/mixed.jsonl`` (``size`` records: about 55% good, the rest one of :data:`KINDS`
    each, seeded) and ``folder/clean.jsonl`` (the good ones alone, same order). Bad image files go under
    the good catalog's folder (the image root). Returns (records, good records, count per kind)."""
    folder.mkdir(parents=True, exist_ok=True)
    goods = [json.loads(line) for line in Path(good_path).read_text(encoding="utf-8").splitlines()]
    images = _image_files(Path(good_path).parent / "fuzz-images", folder / "outside")
    rng, mixed, clean, kinds = random.Random(seed), [], [], Counter()
    for index in range(size):
        good = dict(goods[index % len(goods)], id=f"{goods[index % len(goods)]['id']}-{index}")
        if rng.random() < 0.55:
            line = json.dumps(good).encode()
            clean.append(line)
        else:
            kind = KINDS[kinds.total() % len(KINDS)] if kinds.total() < len(KINDS) else rng.choice(KINDS)
            kinds[kind] += 1
            line = _bad_line(kind, index, good, images)
        mixed.append(line)
    (folder / "mixed.jsonl").write_bytes(b"\n".join(mixed) + b"\n")
    (folder / "clean.jsonl").write_bytes(b"\n".join(clean) + b"\n")
    return len(mixed), len(clean), dict(sorted(kinds.items()))


def _listener(host: str) -> socket.socket:
    sock = socket.socket()
    sock.bind((host, 0))
    sock.listen(16)
    sock.setblocking(False)
    return sock


def _connections(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            client, _ = sock.accept()
        except BlockingIOError:
            return count
        client.close()
        count += 1


def _redirector(target: str) -> tuple[http.server.ThreadingHTTPServer, Counter]:
    hits: Counter = Counter()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits[self.path] += 1
            self.send_response(302)
            self.send_header("Location", target if self.path.startswith("/inner") else "http://10.0.0.1/x.jpg")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, hits


def _extract(mxt, model: Path, catalog: Path, output: Path, *extra: str) -> list[dict]:
    subprocess.run(mxt("extract", "--model", str(model), "--input", str(catalog), "--output", str(output),
                       "--attributes", "color", "--overwrite", *extra), capture_output=True, timeout=600)
    return [json.loads(line) for line in output.read_text().splitlines()] if output.exists() else []


def ssrf_probe(folder: Path, model: Path, mxt) -> dict:
    """Connections that reached a listener on 127.0.0.1 / 127.0.0.2 while ``mxt extract`` read a catalog
    of image URLs pointing there (must be 0), with the rows and their errors."""
    folder.mkdir(parents=True, exist_ok=True)
    result = {}
    outer = _listener("127.0.0.1")
    port = outer.getsockname()[1]
    catalog = folder / "loopback.jsonl"
    catalog.write_text("".join(json.dumps({"id": f"u{i}", "product_type": "mug", "title": "Mug",
                                           "image": f"http://{host}:{port}/x.jpg"}) + "\n"
                               for i, host in enumerate(["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])))
    for label, extra in (("urls_disabled", ()), ("urls_enabled", ("--allow-urls",))):
        rows = _extract(mxt, model, catalog, folder / f"{label}.jsonl", *extra)
        result[label] = {"records": 3, "error_rows": sum(r["error"] is not None for r in rows),
                         "connections": _connections(outer), "first_error": rows[0]["error"] if rows else None}
    outer.close()

    inner = _listener("127.0.0.2")
    server, hits = _redirector(f"http://127.0.0.2:{inner.getsockname()[1]}/admin.jpg")
    allowing = folder / "model-allowing-127.0.0.1"
    shutil.rmtree(allowing, ignore_errors=True)
    shutil.copytree(model, allowing, ignore=shutil.ignore_patterns("checkpoints", "cache"))
    saved = json.loads((allowing / "config.json").read_text())
    saved["config"]["extraction"]["url_allow_networks"] = ["127.0.0.1/32"]
    (allowing / "config.json").write_text(json.dumps(saved))
    base = f"http://127.0.0.1:{server.server_address[1]}"
    catalog = folder / "redirects.jsonl"
    catalog.write_text("".join(json.dumps({"id": f"r{i}", "product_type": "mug", "title": "Mug",
                                           "image": f"{base}/{path}"}) + "\n"
                               for i, path in enumerate(["inner.jpg", "private.jpg"])))
    rows = _extract(mxt, allowing, catalog, folder / "redirects-out.jsonl", "--allow-urls")
    result["redirects"] = {"records": 2, "error_rows": sum(r["error"] is not None for r in rows),
                           "server_requests": sum(hits.values()), "connections_to_127.0.0.2": _connections(inner),
                           "errors": [r["error"] for r in rows]}
    server.shutdown()
    server.server_close()
    inner.close()
    return result
