"""Downloading images named by URL in an untrusted catalog, without letting it probe internal services.

The policy (:class:`UrlPolicy`, built from the ``extraction`` config) is the one every entry point
uses: the CLI, the Python API, Ray and the server all read images through
:func:`mxt_sdk.images.io.load_image`, which calls :func:`fetch_bytes` here.

* URLs are off unless ``allow_urls`` is set: a URL is then an error row, and no connection is made.
* Only ``http`` and ``https``. The host is resolved once; if any of its addresses is loopback,
  private, link-local, multicast, reserved or otherwise not global, the URL is refused before any
  connection. The connection then goes to the checked address (no second lookup, so DNS rebinding
  cannot swap it). Redirects are followed by hand, at most ``max_redirects``, each checked the same way.
  Proxy settings from the environment are not used.
* At most ``max_bytes`` are read, within ``timeout_seconds`` per attempt; the response must say
  ``Content-Type: image/...``. Connection failures and 5xx answers are retried ``retries`` times.
* With ``cache_dir``, a decoded-fine download is kept as ``<sha256 of the URL>`` and reused (training
  epochs do not download twice).
"""
from __future__ import annotations

import hashlib
import http.client
import ipaddress
import os
import socket
import ssl
import time
import uuid
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from mxt_sdk.errors import ImageError

__all__ = ["UrlPolicy", "fetch_bytes", "remember", "is_url", "check_address"]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024


class UrlPolicy(BaseModel):
    """What downloading an image URL may do (the ``extraction.allow_urls`` / ``url_*`` settings)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    allow_urls: bool = False
    max_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    timeout_seconds: float = Field(default=10.0, gt=0)
    retries: int = Field(default=2, ge=0)
    max_redirects: int = Field(default=3, ge=0)
    cache_dir: str | None = None
    #: networks exempt from the address check (e.g. an internal image CDN); empty by default
    allow_networks: tuple[str, ...] = ()

    @classmethod
    def from_extraction(cls, extraction) -> "UrlPolicy":
        """The policy an ``ExtractionConfig`` describes."""
        return cls(allow_urls=extraction.allow_urls, max_bytes=extraction.url_max_bytes,
                   timeout_seconds=extraction.url_timeout_seconds, retries=extraction.url_retries,
                   max_redirects=extraction.url_max_redirects, cache_dir=extraction.url_cache_dir,
                   allow_networks=tuple(extraction.url_allow_networks))


class _Transient(Exception):
    """A failure worth another attempt (connection error, timeout, 5xx)."""


def is_url(reference: str) -> bool:
    return "://" in reference


def check_address(address: str, policy: UrlPolicy) -> None:
    """Refuse an address that is not a public unicast one (unless ``policy.allow_networks`` holds it)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if any(ip in ipaddress.ip_network(net, strict=False) for net in policy.allow_networks
           if ipaddress.ip_network(net, strict=False).version == ip.version):
        return
    mapped = getattr(ip, "ipv4_mapped", None)
    for candidate in (ip, mapped) if mapped is not None else (ip,):
        if (not candidate.is_global or candidate.is_multicast or candidate.is_loopback or candidate.is_private
                or candidate.is_link_local or candidate.is_reserved or candidate.is_unspecified):
            raise ImageError(f"refused: the address {address} is not a public one (loopback, private, "
                             "link-local, multicast or reserved)")


def _resolve(host: str, port: int, policy: UrlPolicy) -> str:
    """The first address of ``host``, after checking every address it resolves to."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ImageError(f"cannot resolve host {host!r}: {exc}") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    for address in addresses:
        check_address(address, policy)
    return addresses[0]


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def _read_capped(response: http.client.HTTPResponse, url: str, policy: UrlPolicy, deadline: float) -> bytes:
    length = response.getheader("Content-Length")
    if length and length.isdigit() and int(length) > policy.max_bytes:
        raise ImageError(f"{url} is {int(length):,} bytes, over the limit of {policy.max_bytes:,}")
    chunks, size = [], 0
    while True:
        if time.monotonic() > deadline:
            raise _Transient(f"{url}: download took over {policy.timeout_seconds} s")
        chunk = response.read(_CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > policy.max_bytes:
            raise ImageError(f"{url} is larger than the limit of {policy.max_bytes:,} bytes")
        chunks.append(chunk)


def _fetch_once(url: str, policy: UrlPolicy) -> bytes:
    deadline = time.monotonic() + policy.timeout_seconds
    current = url
    for _ in range(policy.max_redirects + 1):
        parts = urlsplit(current)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ImageError(f"refused: {current!r} is not an http(s) URL with a host")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise ImageError(f"bad URL {current!r}: {exc}") from None
        address = _resolve(parts.hostname, port, policy)
        kind = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
        connection = kind(parts.hostname, port, address, max(deadline - time.monotonic(), 0.01))
        try:
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            connection.request("GET", target, headers={"User-Agent": "mxt-sdk", "Accept": "image/*"})
            response = connection.getresponse()
            if response.status in _REDIRECTS and response.getheader("Location"):
                current = urljoin(current, response.getheader("Location"))
                continue
            if response.status >= 500:
                raise _Transient(f"{current}: HTTP {response.status}")
            if response.status != 200:
                raise ImageError(f"could not download {current}: HTTP {response.status}")
            kind_header = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
            if not kind_header.startswith("image/"):
                raise ImageError(f"{current} is not an image (Content-Type {kind_header or 'missing'!r})")
            return _read_capped(response, current, policy, deadline)
        except (OSError, http.client.HTTPException) as exc:
            raise _Transient(f"could not download {current}: {exc}") from None
        finally:
            connection.close()
    raise ImageError(f"{url}: more than {policy.max_redirects} redirects")


def _cache_path(url: str, policy: UrlPolicy) -> Path | None:
    if policy.cache_dir is None:
        return None
    return Path(policy.cache_dir) / hashlib.sha256(url.encode("utf-8")).hexdigest()


def fetch_bytes(url: str, policy: UrlPolicy) -> tuple[bytes, bool]:
    """The body of ``url`` under ``policy`` and whether it came from the cache; ImageError otherwise."""
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        raise ImageError(f"unsupported image location {url!r}: use a file path or an http(s) URL")
    if not policy.allow_urls:
        raise ImageError(f"image URLs are disabled, so {url!r} was not fetched (enable them with "
                         "--allow-urls or extraction.allow_urls: true)")
    cached = _cache_path(url, policy)
    if cached is not None and cached.is_file() and cached.stat().st_size <= policy.max_bytes:
        return cached.read_bytes(), True
    last = ""
    for attempt in range(policy.retries + 1):
        try:
            return _fetch_once(url, policy), False
        except _Transient as exc:
            last = str(exc)
            if attempt < policy.retries:
                time.sleep(min(0.2 * 2 ** attempt, 2.0))
    raise ImageError(f"{last} (after {policy.retries + 1} attempts)")


def remember(url: str, data: bytes, policy: UrlPolicy) -> None:
    """Keep a download that decoded fine in the cache (written aside, then renamed into place)."""
    path = _cache_path(url, policy)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    staging.write_bytes(data)
    os.replace(staging, path)
