"""A loopback HTTP server that serves feeds to tests, whose answers a test can change at any time.

    with FeedServer() as server:
        server.set_file("/feed", "nejat-en-recent.rss")
        fetch(server.url("/feed"))
        server.set("/feed", "<rss>…</rss>", status=500)

It speaks HTTP/1.1 on 127.0.0.1 (a free port; another loopback address if asked), answers
conditional GETs (ETag, Last-Modified), compresses with gzip on request, follows no logic of ours,
and records every request it sees (when it arrived) and every connection it accepts.
"""

from __future__ import annotations

import gzip as gzip_module
import hashlib
import threading
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

DEMO_FEEDS = Path(__file__).resolve().parents[1] / "syndicator" / "demo_feeds"


@dataclass
class _Answer:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)
    etag: str = ""
    last_modified: str | None = None
    delay: float = 0
    gzip: bool = False
    trickle: float = 0
    trickle_headers: bool = False


class _Server(ThreadingHTTPServer):
    # socketserver's default backlog is 5: a client opening 20 connections at once would see the
    # rest wait for a SYN retransmission (1 s), which is the server's limit, not the client's.
    request_queue_size = 128


class FeedServer:
    """ThreadingHTTPServer on 127.0.0.1 in a daemon thread; usable as a context manager."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.base_url = ""
        self.requests: list[dict] = []
        self.connections = 0  # TCP connections accepted
        self._answers: dict[str, _Answer] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FeedServer:
        """Listen on a free loopback port and serve in a daemon thread."""
        self._stopping.clear()
        self._httpd = _Server((self.host, 0), _make_handler(self))
        self._httpd.daemon_threads = True
        host, port = self._httpd.server_address[:2]
        self.base_url = f"http://{host}:{port}"
        # A short poll interval: shutdown() waits up to one interval, once per test.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.02,), name="feedserver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; delayed and trickling answers in progress give up."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FeedServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- answers --------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        """The absolute URL of path on this server."""
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def set(
        self,
        path: str,
        body: bytes | str,
        *,
        status: int = 200,
        content_type: str = "application/rss+xml; charset=utf-8",
        headers: dict | None = None,
        etag: bool = True,
        last_modified: str | None = None,
        delay: float = 0,
        gzip: bool = False,
        trickle: float = 0,
        trickle_headers: bool = False,
    ) -> None:
        """Answer GET path with body from now on.

        etag: serve a strong ETag of the body and answer 304 to a matching If-None-Match.
        last_modified: serve it and answer 304 to an If-Modified-Since at or after it.
        delay: seconds to wait before answering. gzip: compress when the client accepts gzip.
        trickle: send the body one byte every ``trickle`` seconds (headers too with trickle_headers).
        """
        data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        answer = _Answer(
            status=status,
            body=data,
            content_type=content_type,
            headers=dict(headers or {}),
            etag=f'"{hashlib.sha256(data).hexdigest()[:32]}"' if etag else "",
            last_modified=last_modified,
            delay=delay,
            gzip=gzip,
            trickle=trickle,
            trickle_headers=trickle_headers,
        )
        with self._lock:
            self._answers[path] = answer

    def set_file(self, path: str, filename: str, **kw: Any) -> None:
        """Answer GET path with syndicator/demo_feeds/<filename>; keywords as for ``set``."""
        self.set(path, (DEMO_FEEDS / filename).read_bytes(), **kw)

    def set_redirect(self, path: str, location: str, status: int = 302) -> None:
        """Answer GET path with a redirect to location (absolute, or relative to this server)."""
        self.set(
            path, b"", status=status, content_type="text/plain", headers={"Location": location}, etag=False
        )

    def hits(self, path: str) -> int:
        """How many requests asked for path (its query string ignored unless path has one)."""
        with self._lock:
            return sum(1 for request in self.requests if _matches(request["path"], path))

    def wait_for_hits(self, path: str, count: int, timeout: float = 10.0) -> int:
        """Poll until path has at least count hits and return the count; fail after timeout."""
        deadline = time.monotonic() + timeout
        while (seen := self.hits(path)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{path}: {seen} hits, expected {count} within {timeout} s")
            time.sleep(0.02)
        return seen

    # --- used by the handler ----------------------------------------------------------------------

    def _answer_for(self, path: str) -> _Answer | None:
        with self._lock:
            return self._answers.get(path) or self._answers.get(path.split("?", 1)[0])

    def _record(
        self, path: str, method: str, headers: dict[str, str], status: int, arrived: float = 0.0
    ) -> None:
        with self._lock:
            self.requests.append(
                {"path": path, "method": method, "headers": headers, "status": status, "arrived": arrived}
            )

    def _connected(self) -> None:
        with self._lock:
            self.connections += 1


def _matches(requested: str, path: str) -> bool:
    return requested == path or ("?" not in path and requested.split("?", 1)[0] == path)


def _not_modified(answer: _Answer, headers: dict[str, str]) -> bool:
    """RFC 9110 §13.2.2: If-None-Match decides when present; else If-Modified-Since."""
    if "if-none-match" in headers:
        if not answer.etag:
            return False
        tags = {tag.strip().removeprefix("W/") for tag in headers["if-none-match"].split(",")}
        return "*" in tags or answer.etag in tags
    if "if-modified-since" in headers and answer.last_modified:
        try:
            return parsedate_to_datetime(headers["if-modified-since"]) >= parsedate_to_datetime(
                answer.last_modified
            )
        except (TypeError, ValueError):
            return headers["if-modified-since"] == answer.last_modified
    return False


def _make_handler(server: FeedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 30  # an idle keep-alive connection frees its thread eventually

        def setup(self) -> None:
            server._connected()
            super().setup()

        def do_GET(self) -> None:
            self._respond(send_body=True)

        def do_HEAD(self) -> None:
            self._respond(send_body=False)

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output clean

        def _respond(self, *, send_body: bool) -> None:
            arrived = time.monotonic()  # before any delay: when the client asked
            headers = {name.lower(): value for name, value in self.headers.items()}
            answer = server._answer_for(self.path)
            if answer is None:
                answer = _Answer(404, b"not found\n", "text/plain; charset=utf-8")
            if answer.delay and server._stopping.wait(answer.delay):
                self.close_connection = True
                return
            status, body = answer.status, answer.body
            extra = {"Content-Type": answer.content_type, **answer.headers}
            if answer.etag:
                extra["ETag"] = answer.etag
            if answer.last_modified:
                extra["Last-Modified"] = answer.last_modified
            if status == 200 and _not_modified(answer, headers):
                status, body = 304, b""
                extra.pop("Content-Type")
            elif answer.gzip:
                extra["Vary"] = "Accept-Encoding"
                if "gzip" in headers.get("accept-encoding", ""):
                    body = gzip_module.compress(body)
                    extra["Content-Encoding"] = "gzip"
            if status != 304:
                extra["Content-Length"] = str(len(body))
            if answer.trickle:
                extra["Connection"] = "close"
                self.close_connection = True
            server._record(self.path, self.command, headers, status, arrived)
            try:
                phrase = HTTPStatus(status).phrase
            except ValueError:
                phrase = ""
            head = f"HTTP/1.1 {status} {phrase}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in extra.items())
            head_bytes = (head + "\r\n").encode("latin-1")
            payload = body if send_body else b""
            try:
                if not answer.trickle:
                    self.wfile.write(head_bytes + payload)
                    return
                if answer.trickle_headers:
                    self._trickle(head_bytes, answer.trickle)
                else:
                    self.wfile.write(head_bytes)
                self._trickle(payload, answer.trickle)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up, which is what trickle tests expect

        def _trickle(self, data: bytes, interval: float) -> None:
            for index in range(len(data)):
                if server._stopping.wait(interval):
                    return
                self.wfile.write(data[index : index + 1])

    return Handler
