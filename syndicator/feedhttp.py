"""Fetching a feed over HTTP: one conditional GET, within a size cap and a wall-clock deadline,
from addresses syndicator/netguard.py allows, redirects followed here (each hop checked again).

What a hostile server can do, and what stops it:
  - a body larger than SYNDICATOR_FEED_MAX_BYTES: refused from Content-Length, else once that
    many bytes have arrived; a gzip or deflate body is decoded here, a bounded piece at a time,
    since a few kilobytes can decode to gigabytes (httpx decodes each network read whole);
  - a slow answer, or one byte a second for ever: one deadline for the whole fetch
    (SYNDICATOR_FEED_TIMEOUT), which closes the socket; a body cut by it is never taken whole;
  - redirect loops (SYNDICATOR_FEED_MAX_REDIRECTS), other schemes, private addresses.

Connections outlive a fetch (``ClientPool``): one client per origin as the feed names it, whose
connections go to the pinned, checked addresses only (see the class).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import socket
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from syndicator import netguard
from syndicator.errors import FeedError, FeedFetchError, FeedTooLarge
from syndicator.redact import redact
from syndicator.tls import ssl_context


@dataclass
class FetchResult:
    """The outcome of one fetch: changed or not, the body if it changed, the validators to keep."""

    status: str  # "not_modified" (HTTP 304), "unchanged" (200, same body hash as before), "ok"
    http_status: int
    body: bytes  # b"" unless status == "ok"
    etag: str
    last_modified: str
    body_hash: str  # sha256 hex; for "not_modified" and "unchanged" the previous one
    final_url: str  # after redirects
    content_type: str = ""  # its charset is the body's encoding when the XML does not declare one
    # WebSub discovery from the HTTP Link header (W3C WebSub §4): rel="hub" and rel="self".
    hub_url: str = ""
    self_url: str = ""
    # Cache-Control max-age in seconds, when the server sent one: no point polling sooner.
    max_age: int | None = None


_REDIRECT_STATUSES = {301, 302, 303, 307, 308}
_ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.8"


def _setting(name: str, default: Any) -> Any:
    """A Django setting, or ``default`` where Django is not configured (scripts, benchmarks)."""
    try:
        return getattr(settings, name, default)
    except ImproperlyConfigured:
        return default


def _check_url(url: str) -> None:
    """Refuse anything but an http(s) URL with a host; the message never repeats the URL."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        raise FeedFetchError(f"invalid feed URL: {redact(str(exc))}") from None
    if parts.scheme.lower() not in ("http", "https"):
        shown = parts.scheme or "none"
        raise FeedFetchError(f"unsupported URL scheme {shown!r}: only http and https feeds are fetched")
    if not host:
        raise FeedFetchError("invalid feed URL: no host")


class _Deadline:
    """One wall-clock limit for a whole fetch, redirects included.

    httpx's timeouts bound each socket operation, so a server sending a byte now and then holds a
    fetch for ever. A timer shuts the sockets in use down when the time is up, which ends whatever
    read is blocked (headers or body); the body loop also checks the clock between chunks.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.message = f"timed out: no complete answer within {seconds:g} s"
        self.expires_at = time.monotonic() + seconds
        self.expired = False
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        return self.expires_at - time.monotonic()

    def check(self) -> None:
        if self.expired or self.remaining() <= 0:
            raise FeedFetchError(self.message)

    def trace(self, event: str, info: dict) -> None:
        """httpcore trace hook: watch each socket as soon as it connects, before any header arrives."""
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            self.watch(info.get("return_value"))

    def watch(self, stream: Any) -> None:
        # A pooled connection fires no connect event: a client of ``ClientPool`` reports each stream
        # it reads or writes (_WatchedStream); another client's once the response headers are in,
        # from response.extensions["network_stream"].
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            with self._lock:
                if sock in self._sockets:
                    return
                self._sockets.add(sock)
                if self.expired:
                    self._abort(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                self._abort(sock)

    @staticmethod
    def _abort(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # already closed, or detached by the TLS wrapper
            sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        self._timer.cancel()


# The deadline of the fetch this thread is running: a pooled connection's stream reports itself to
# it (one fetch at a time per thread; the feeds worker runs many threads).
_running = threading.local()


class _WatchedStream(httpcore.NetworkStream):
    """A connection's stream that puts its socket under the deadline of whichever fetch uses it,
    so a pooled connection that stalls before the headers is cut at the deadline as a new one is."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def _watched(self) -> None:
        deadline = getattr(_running, "deadline", None)
        if deadline is not None:
            deadline.watch(self._stream)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self._watched()
        return self._stream.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._watched()
        self._stream.write(buffer, timeout)

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _WatchedStream(self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _WatchedBackend(httpcore.SyncBackend):
    def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        return _WatchedStream(super().connect_tcp(*args, **kwargs))


class ClientPool:
    """HTTP clients that outlive a fetch, so polls of one site reuse its connections (keep-alive,
    no new TCP and TLS handshake per poll).

    One client per origin as the feed URL names it (scheme, host name, port), each with at most
    ``per_host`` connections. Requests go to the pinned address ``netguard.check`` passed, so a
    client's pool keys its connections by that address: a connection is only ever reused for an
    address the current fetch checked, and a host whose DNS answer changes is checked again and
    gets a connection to its new address (or a refusal). One client per host name, not one for
    all: two sites on one address must not share a TLS connection whose certificate was checked
    for the other's name (the server name is sent once, when the connection is made).
    """

    def __init__(self, *, per_host: int = 6, max_hosts: int = 256, keepalive: float = 60.0) -> None:
        self.per_host = per_host
        self.max_hosts = max_hosts
        self.keepalive = keepalive
        self._clients: OrderedDict[tuple[str, str, int | None], httpx.Client] = OrderedDict()
        self._lock = threading.Lock()

    def client(self, url: httpx.URL) -> httpx.Client:
        """The client for url's origin, made on first use; the least recently used is closed past
        max_hosts (its idle connections with it)."""
        key = (url.scheme, url.host.lower().rstrip("."), url.port)
        evicted = None
        with self._lock:
            found = self._clients.get(key)
            if found is not None:
                self._clients.move_to_end(key)
                return found
            found = self._clients[key] = self._new_client()
            if len(self._clients) > self.max_hosts:
                _, evicted = self._clients.popitem(last=False)
        if evicted is not None:
            evicted.close()
        return found

    def _new_client(self) -> httpx.Client:
        limits = httpx.Limits(
            max_connections=self.per_host,
            max_keepalive_connections=self.per_host,
            keepalive_expiry=self.keepalive,
        )
        transport = httpx.HTTPTransport(verify=ssl_context(), limits=limits)
        # httpx (0.28) takes no network backend: the pool is made again as HTTPTransport makes it,
        # with the backend that puts every stream under the running fetch's deadline.
        transport._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_WatchedBackend(),
        )
        return httpx.Client(follow_redirects=False, transport=transport)

    def close(self) -> None:
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for client in clients:
            client.close()


_shared_pool: ClientPool | None = None
_shared_lock = threading.Lock()


def shared_pool() -> ClientPool:
    """This process's ClientPool (per-host connections: SYNDICATOR_POLL_PER_HOST)."""
    global _shared_pool
    per_host = max(int(_setting("SYNDICATOR_POLL_PER_HOST", 6)), 1)
    with _shared_lock:
        if _shared_pool is None or _shared_pool.per_host != per_host:
            # A changed setting (tests) makes a new pool; the old one's clients close when unused.
            _shared_pool = ClientPool(per_host=per_host)
        return _shared_pool


def fetch(
    url: str,
    *,
    etag: str = "",
    last_modified: str = "",
    previous_hash: str = "",
    timeout: float | None = None,
    max_bytes: int | None = None,
    max_redirects: int | None = None,
    allow_private: str | Sequence[str] | None = None,
    client: httpx.Client | None = None,
    pool: ClientPool | None = None,
) -> FetchResult:
    """Fetch a feed with a conditional GET, within a size cap and a wall-clock deadline, from
    public addresses only, or private ones in allow_private (see syndicator.netguard).

    With pool, each hop goes through the pool's client for its origin (connections reused);
    with client, through that one; else through a client made for this fetch."""
    timeout = float(_setting("SYNDICATOR_FEED_TIMEOUT", 20.0) if timeout is None else timeout)
    max_bytes = int(_setting("SYNDICATOR_FEED_MAX_BYTES", 10 << 20) if max_bytes is None else max_bytes)
    max_redirects = int(
        _setting("SYNDICATOR_FEED_MAX_REDIRECTS", 5) if max_redirects is None else max_redirects
    )
    allowance = netguard.Allowance.parse(
        _setting("SYNDICATOR_FEED_ALLOW_PRIVATE", ()) if allow_private is None else allow_private
    )
    _check_url(url)
    headers = {
        "User-Agent": _setting("SYNDICATOR_USER_AGENT", "syndicator"),
        "Accept": _ACCEPT,
        "Accept-Encoding": _ACCEPT_ENCODING,  # what _decoded can decode within the size cap
    }
    # Validators are sent back only if ASCII, as HTTP requires: a server's stray UTF-8 ETag must not
    # make every later fetch of the feed fail while the request is built.
    if etag and etag.isascii():
        headers["If-None-Match"] = etag
    if last_modified and last_modified.isascii():
        headers["If-Modified-Since"] = last_modified
    own_client = client is None and pool is None
    if own_client:
        client = httpx.Client(follow_redirects=False, timeout=timeout, verify=ssl_context())
    deadline = _Deadline(timeout)
    _running.deadline = deadline
    try:
        current = url
        for _ in range(max_redirects + 1):
            _check_url(current)
            deadline.check()
            target = httpx.URL(current)
            # Redirects are followed here, so every hop's scheme and addresses are checked.
            addresses = netguard.check(target, allowance, timeout=deadline.remaining())
            hop_client = pool.client(target) if pool is not None else client
            assert hop_client is not None
            with contextlib.ExitStack() as stack:
                response = _connect(stack, hop_client, target, addresses, headers, deadline)
                deadline.watch(response.extensions.get("network_stream"))
                status = response.status_code
                if status in _REDIRECT_STATUSES and response.headers.get("location"):
                    current = urljoin(current, response.headers["location"].strip())
                    _drain(response)
                    continue
                hints = _hints(response, current)
                if status == 304:  # a 304 may omit the validators: the ones we sent still hold
                    _drain(response)
                    kept_etag = response.headers.get("etag", etag)
                    kept_last_modified = response.headers.get("last-modified", last_modified)
                    return FetchResult(
                        "not_modified",
                        304,
                        b"",
                        kept_etag,
                        kept_last_modified,
                        previous_hash,
                        current,
                        **hints,
                    )
                if not 200 <= status < 300:
                    reason = httpx.codes.get_reason_phrase(status) or response.reason_phrase
                    raise FeedFetchError(
                        f"HTTP {status} {reason}".strip(),
                        http_status=status,
                        retry_after=retry_after(response.headers.get("retry-after", "")),
                    )
                body = _read_body(response, max_bytes, deadline)
                new_etag = response.headers.get("etag", "")
                new_last_modified = response.headers.get("last-modified", "")
                content_type = response.headers.get("content-type", "")
            body_hash = hashlib.sha256(body).hexdigest()
            if previous_hash and body_hash == previous_hash:
                return FetchResult(
                    "unchanged", status, b"", new_etag, new_last_modified, body_hash, current, **hints
                )
            return FetchResult(
                "ok", status, body, new_etag, new_last_modified, body_hash, current, content_type, **hints
            )
        raise FeedFetchError(f"too many redirects (more than {max_redirects})")
    except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
        raise FeedFetchError(_describe(exc, deadline)) from None
    finally:
        _running.deadline = None
        deadline.cancel()
        if own_client and client is not None:
            client.close()


_MAX_AGE = re.compile(r"(?:^|,)\s*(?:s-)?max-age\s*=\s*\"?(\d{1,10})", re.IGNORECASE)


def _hints(response: httpx.Response, url: str) -> dict[str, Any]:
    """What the headers say beyond the body: WebSub links and how long the answer stays fresh."""
    links = response.links  # httpx joins repeated Link headers, as RFC 8288 allows
    hub = urljoin(url, (links.get("hub") or {}).get("url", "").strip())
    own = urljoin(url, (links.get("self") or {}).get("url", "").strip())
    cache = response.headers.get("cache-control", "")
    found = _MAX_AGE.search(cache)
    # no-cache / no-store say nothing about how often to ask; only max-age does (RFC 9111 §5.2.2.1).
    max_age = int(found.group(1)) if found else None
    return {
        "hub_url": hub if hub.startswith(("http://", "https://")) and "hub" in links else "",
        "self_url": own if own.startswith(("http://", "https://")) and "self" in links else "",
        "max_age": max_age,
    }


def retry_after(value: str, *, now: float | None = None) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date, RFC 9110 §10.2.3)."""
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(moment - (time.time() if now is None else now), 0.0)


def post_form(url: str, fields: dict[str, str], *, timeout: float | None = None) -> tuple[int, str]:
    """POST a form to url through the same guard as feeds (a WebSub hub); (status, first 500
    characters of the answer). Redirects are not followed: a hub that moved says so."""
    timeout = float(_setting("SYNDICATOR_FEED_TIMEOUT", 20.0) if timeout is None else timeout)
    allowance = netguard.Allowance.parse(_setting("SYNDICATOR_FEED_ALLOW_PRIVATE", ()))
    _check_url(url)
    target = httpx.URL(url)
    headers = {"User-Agent": _setting("SYNDICATOR_USER_AGENT", "syndicator")}
    deadline = _Deadline(timeout)
    try:
        addresses = netguard.check(target, allowance, timeout=timeout)
        with httpx.Client(follow_redirects=False, timeout=timeout, verify=ssl_context()) as client:
            for index, address in enumerate(addresses):
                pinned, host_header, tls_name = netguard.pin(target, address)
                try:
                    with client.stream(
                        "POST",
                        pinned,
                        data=fields,
                        headers={**headers, **host_header},
                        extensions={"trace": deadline.trace, **tls_name},
                    ) as response:
                        text = b"".join(_capped(response.iter_raw(), 4096)).decode("utf-8", "replace")
                        return response.status_code, redact(" ".join(text.split())[:500])
                except (httpx.ConnectError, httpx.ConnectTimeout):
                    if index == len(addresses) - 1 or deadline.remaining() <= 0:
                        raise
    except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
        raise FeedFetchError(_describe(exc, deadline)) from None
    finally:
        deadline.cancel()
    raise AssertionError("netguard.check returns at least one address")


# A body we do not use (a 304 has none; a redirect's is a line or two) is read this far, so its
# connection goes back to the pool: httpcore closes one whose answer was not read to its end.
_DRAIN = 64 * 1024


def _drain(response: httpx.Response) -> None:
    """Read an unused body to its end if it is short; a longer one closes its connection."""
    for _ in _capped(response.iter_raw(), _DRAIN):
        pass


def _capped(chunks: Iterator[bytes], limit: int) -> Iterator[bytes]:
    """At most limit bytes of chunks; the rest is not read."""
    for chunk in chunks:
        yield chunk[:limit]
        limit -= len(chunk)
        if limit <= 0:
            return


def _connect(
    stack: contextlib.ExitStack,
    client: httpx.Client,
    target: httpx.URL,
    addresses: list[str],
    headers: dict[str, str],
    deadline: _Deadline,
) -> httpx.Response:
    """GET target from the first of its checked addresses that takes the connection."""
    for index, address in enumerate(addresses):
        url, host_header, tls_name = netguard.pin(target, address)
        request = client.stream(
            "GET",
            url,
            headers={**headers, **host_header},
            follow_redirects=False,
            timeout=httpx.Timeout(max(deadline.remaining(), 0.001)),
            extensions={"trace": deadline.trace, **tls_name},
        )
        try:
            return stack.enter_context(request)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            if index == len(addresses) - 1 or deadline.remaining() <= 0:
                raise
    raise AssertionError("netguard.check returns at least one address")


def _read_body(response: httpx.Response, max_bytes: int, deadline: _Deadline) -> bytes:
    """The decoded body, refused as soon as it passes max_bytes or the deadline passes."""
    declared = response.headers.get("content-length", "")
    # Content-Length counts encoded bytes; only without an encoding does it bound the decoded size.
    if not response.headers.get("content-encoding") and declared.isdigit() and int(declared) > max_bytes:
        raise FeedTooLarge(f"feed larger than {max_bytes} bytes", http_status=response.status_code)
    chunks: list[bytes] = []
    size = 0
    for chunk in _decoded(response):
        size += len(chunk)
        if size > max_bytes:
            raise FeedTooLarge(f"feed larger than {max_bytes} bytes", http_status=response.status_code)
        chunks.append(chunk)
        deadline.check()
    # A body without Content-Length ends when the connection closes, and the deadline closes it:
    # what came before is not the whole body.
    deadline.check()
    return b"".join(chunks)


# Content codings we ask for and decode ourselves; zlib's window bits for each.
_CODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_ACCEPT_ENCODING = "gzip, deflate"
_PIECE = 1 << 16  # at most this much decoded output at a time


def _decoded(response: httpx.Response) -> Iterator[bytes]:
    """The body as it arrives, decoded from gzip or deflate at most _PIECE bytes at a time."""
    coding = response.headers.get("content-encoding", "").strip().lower()
    if coding in ("", "identity"):
        yield from response.iter_raw()
        return
    if coding not in _CODINGS:
        raise FeedFetchError(f"unsupported content encoding {coding[:40]!r} (we ask for {_ACCEPT_ENCODING})")
    inflater = None
    try:
        for data in response.iter_raw():
            if inflater is None:
                inflater = zlib.decompressobj(_window_bits(coding, data))
            while data:
                yield inflater.decompress(data, _PIECE)
                data = inflater.unconsumed_tail
        if inflater is not None:
            yield inflater.flush()
    except zlib.error as exc:
        raise FeedFetchError(f"could not decode the response body: {exc}") from None


def _window_bits(coding: str, start: bytes) -> int:
    """zlib's window bits for a coding; "deflate" without the zlib header some servers leave out
    (RFC 9110 §8.4.1.2 wants it) is read as raw deflate, as browsers and httpx do."""
    zlib_header = len(start) >= 2 and start[0] & 0x0F == 8 and int.from_bytes(start[:2], "big") % 31 == 0
    return -_CODINGS[coding] if coding == "deflate" and not zlib_header else _CODINGS[coding]


_FAILURE_LABELS = (
    (httpx.ConnectError, "connection failed"),
    (httpx.DecodingError, "could not decode the response body"),
    (httpx.InvalidURL, "invalid feed URL"),
)


def _describe(exc: BaseException, deadline: _Deadline) -> str:
    """A one-line message for a network failure, with any credentials redacted."""
    if deadline.expired:
        return deadline.message
    if isinstance(exc, httpx.TimeoutException):
        step = "connecting" if isinstance(exc, httpx.ConnectTimeout) else "waiting for the server"
        return f"timed out {step} (after {deadline.seconds:g} s)"
    label = next((text for kind, text in _FAILURE_LABELS if isinstance(exc, kind)), type(exc).__name__)
    return redact(f"{label}: {exc}" if str(exc) else label)


def page_status(
    url: str, *, timeout: float = 10.0, allow_private: str | Sequence[str] | None = None
) -> int | None:
    """The HTTP status an article's URL answers with, through ``fetch``'s guarded path (the same
    address checks, redirects followed and checked hop by hop, size cap and deadline); None when
    it could not be reached. Used to confirm that an item that left its feed was taken down
    (404 or 410, RFC 9110 §15.5.5 and §15.5.11).
    """
    try:
        # A page is read only this far: the status is what counts, not the body.
        return fetch(url, timeout=timeout, max_bytes=256 * 1024, allow_private=allow_private).http_status
    except FeedTooLarge:
        return 200
    except FeedError as exc:
        return exc.http_status
