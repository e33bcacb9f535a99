"""A real uvicorn server on a loopback port, in a thread of the test process (tests of mxt serve)."""
from __future__ import annotations

import socket
import threading
import time

import httpx
import uvicorn


class LiveServer:
    """``with LiveServer(app) as server: httpx.get(server.url + "/readyz")``; waits until ready on entry
    and shuts down gracefully (requests in flight finish) on exit."""

    def __init__(self, app, ready_timeout: float = 60.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=30))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.ready_timeout = ready_timeout

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/readyz", timeout=5).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"the server at {self.url} was not ready within {self.ready_timeout} s")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(60)
        self.sock.close()

    def __exit__(self, *exc) -> None:
        self.stop()

    def metric(self, name: str) -> float:
        """The value of an unlabelled sample of /metrics, e.g. ``mxt_batch_size_count``."""
        for line in httpx.get(self.url + "/metrics").text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise KeyError(name)
