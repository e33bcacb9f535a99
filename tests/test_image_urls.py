"""Image URLs and paths from an untrusted catalog: no connection to internal addresses, ever."""
from __future__ import annotations

import http.server
import io
import socket
import threading
from contextlib import contextmanager

import pytest
from PIL import Image

from mxt_sdk.errors import ImageError
from mxt_sdk.images.fetch import UrlPolicy, check_address
from mxt_sdk.images.io import load_image, resolve_image_path

LOCAL = UrlPolicy(allow_urls=True, allow_networks=("127.0.0.1/32",), retries=1, timeout_seconds=5)


def _png(color=(1, 2, 3), size=(10, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


@contextmanager
def listener(host: str = "127.0.0.1"):
    """A listening socket that records whether anyone connected to it."""
    sock = socket.socket()
    sock.bind((host, 0))
    sock.listen(8)
    sock.settimeout(0.3)
    try:
        yield sock
    finally:
        sock.close()


def connected(sock: socket.socket) -> bool:
    try:
        client, _ = sock.accept()
    except (socket.timeout, TimeoutError):
        return False
    client.close()
    return True


@contextmanager
def server(routes: dict):
    """An HTTP server on 127.0.0.1; ``routes[path]`` is (status, headers, body) or a list used in turn."""
    hits: dict[str, int] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits[self.path] = hits.get(self.path, 0) + 1
            answer = routes.get(self.path, (404, {}, b"no"))
            if isinstance(answer, list):
                answer = answer[min(hits[self.path], len(answer)) - 1]
            status, headers, body = answer
            self.send_response(status)
            for key, value in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_urls_are_off_by_default_and_nothing_connects():
    with listener() as sock:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/x.jpg"
        with pytest.raises(ImageError, match="disabled"):
            load_image(url)
        assert not connected(sock)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
def test_enabled_urls_to_internal_addresses_are_refused_before_connecting(host):
    with listener() as sock:
        url = f"http://{host}:{sock.getsockname()[1]}/x.jpg"
        with pytest.raises(ImageError, match="not a public one"):
            load_image(url, urls=UrlPolicy(allow_urls=True))
        assert not connected(sock)


@pytest.mark.parametrize("address", ["10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "224.0.0.1",
                                     "0.0.0.0", "100.64.0.1", "::1", "fe80::1", "fc00::1", "ff02::1"])
def test_non_public_addresses_are_refused(address):
    with pytest.raises(ImageError):
        check_address(address, UrlPolicy(allow_urls=True))


def test_public_addresses_pass():
    check_address("8.8.8.8", UrlPolicy(allow_urls=True))
    check_address("2606:4700:4700::1111", UrlPolicy(allow_urls=True))


def test_redirect_to_a_private_address_is_refused_and_never_reached():
    with listener("127.0.0.2") as inner:
        target = f"http://127.0.0.2:{inner.getsockname()[1]}/admin.jpg"
        routes = {"/a.jpg": (302, {"Location": target}, b""),
                  "/b.jpg": (301, {"Location": "http://10.255.255.1/x.jpg"}, b"")}
        with server(routes) as (base, hits):
            for path in ("/a.jpg", "/b.jpg"):
                with pytest.raises(ImageError, match="not a public one"):
                    load_image(base + path, urls=LOCAL)
            assert hits == {"/a.jpg": 1, "/b.jpg": 1}  # policy refusals are not retried
        assert not connected(inner)


def test_download_rules_content_type_size_status_and_redirect():
    routes = {"/ok.png": (200, {"Content-Type": "image/png"}, _png()),
              "/moved.png": (302, {"Location": "/ok.png"}, b""),
              "/page.png": (200, {"Content-Type": "text/html"}, b"<html>"),
              "/big.png": (200, {"Content-Type": "image/png"}, _png(size=(300, 300)) + b"\0" * 5000),
              "/fake.png": (200, {"Content-Type": "image/png"}, b"not an image")}
    with server(routes) as (base, _):
        assert load_image(base + "/ok.png", urls=LOCAL).getpixel((0, 0)) == (1, 2, 3)
        assert load_image(base + "/moved.png", urls=LOCAL).getpixel((0, 0)) == (1, 2, 3)
        with pytest.raises(ImageError, match="not an image"):
            load_image(base + "/page.png", urls=LOCAL)
        with pytest.raises(ImageError, match="over the limit|larger than"):
            load_image(base + "/big.png", urls=LOCAL.model_copy(update={"max_bytes": 2000}))
        with pytest.raises(ImageError, match="not a readable image"):
            load_image(base + "/fake.png", urls=LOCAL)
        with pytest.raises(ImageError, match="HTTP 404"):
            load_image(base + "/missing.png", urls=LOCAL)
    with pytest.raises(ImageError, match="unsupported image location"):
        load_image("file:///etc/passwd", urls=LOCAL)


def test_server_errors_are_retried_a_bounded_number_of_times():
    ok = (200, {"Content-Type": "image/png"}, _png())
    with server({"/flaky.png": [(503, {}, b""), ok], "/down.png": (500, {}, b"")}) as (base, hits):
        assert load_image(base + "/flaky.png", urls=LOCAL).size == (10, 10)
        with pytest.raises(ImageError, match="after 2 attempts"):
            load_image(base + "/down.png", urls=LOCAL)
        assert hits == {"/flaky.png": 2, "/down.png": 2}


def test_the_cache_keeps_good_downloads_only(tmp_path):
    policy = LOCAL.model_copy(update={"cache_dir": str(tmp_path / "cache")})
    routes = {"/ok.png": (200, {"Content-Type": "image/png"}, _png()),
              "/fake.png": (200, {"Content-Type": "image/png"}, b"junk")}
    with server(routes) as (base, hits):
        for _ in range(3):
            assert load_image(base + "/ok.png", urls=policy).size == (10, 10)
            with pytest.raises(ImageError):
                load_image(base + "/fake.png", urls=policy)
        assert hits == {"/ok.png": 1, "/fake.png": 3}
    assert len(list((tmp_path / "cache").iterdir())) == 1


def test_without_a_root_paths_resolve_under_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / "in").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "in" / "a.png")
    monkeypatch.chdir(tmp_path / "in")
    assert load_image("a.png").size == (4, 4)
    for escaping in ("../outside.png", str(tmp_path / "in" / ".." / "x.png"), "/etc/hostname"):
        with pytest.raises(ImageError, match="escapes"):
            resolve_image_path(escaping, None)


def test_symlinks_leaving_the_root_are_refused(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "secret"
    root.mkdir()
    outside.mkdir()
    Image.new("RGB", (4, 4)).save(outside / "s.png")
    (root / "link.png").symlink_to(outside / "s.png")
    (root / "dir").symlink_to(outside)
    Image.new("RGB", (4, 4)).save(root / "inside.png")
    (root / "ok.png").symlink_to(root / "inside.png")
    for reference in ("link.png", "dir/s.png"):
        with pytest.raises(ImageError, match="escapes"):
            load_image(reference, root)
    assert load_image("ok.png", root).size == (4, 4)
