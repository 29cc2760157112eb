"""A loopback TCP server for answers no well-behaved HTTP server gives: endless bodies, lying
Content-Length, a banner that is not HTTP, a hang-up before answering.

    with RawServer() as raw:
        raw.set("/endless", endless(ITEM))        # a script writes whatever it likes
        fetch(raw.url("/endless"))
        raw.sent("/endless")                      # how many body bytes went out before the client left

A script gets a ``Wire`` (write bytes; False once the client is gone or the server stops) and
writes the whole answer itself, status line and headers included.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
import zlib
from collections.abc import Callable
from types import TracebackType

Script = Callable[["Wire"], None]
HEAD = "HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml; charset=utf-8\r\nConnection: close\r\n"
FEED_START = b'<?xml version="1.0"?><rss version="2.0"><channel><title>Endless</title>'


class Wire:
    """One connection's output, counting what was written."""

    def __init__(self, sock: socket.socket, stopping: threading.Event) -> None:
        self.sock, self.stopping, self.written = sock, stopping, 0

    def write(self, data: bytes) -> bool:
        """Send data; False when the client has gone away or the server is stopping."""
        if self.stopping.is_set():
            return False
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        self.written += len(data)
        return True


class RawServer:
    """socketserver on 127.0.0.1 (a free port), one script per path, in daemon threads."""

    def __init__(self) -> None:
        self.base_url = ""
        self._scripts: dict[str, Script] = {}
        self._sent: dict[str, int] = {}
        self._done: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: socketserver.ThreadingTCPServer | None = None

    def __enter__(self) -> RawServer:
        server = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                server._serve(self.request)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True).start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def url(self, path: str) -> str:
        return self.base_url + path

    def set(self, path: str, script: Script) -> None:
        """Answer GET path by running script."""
        with self._lock:
            self._scripts[path] = script
            self._done[path] = threading.Event()

    def sent(self, path: str, timeout: float = 5.0) -> int:
        """Bytes written to the last client of path, once its script has seen the client leave."""
        with self._lock:
            done = self._done.get(path)
        if done is not None and not done.wait(timeout):
            raise AssertionError(f"{path}: the script still runs after {timeout} s")
        with self._lock:
            return self._sent.get(path, 0)

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(10)
        request = b""
        while b"\r\n\r\n" not in request and len(request) < 65536:
            chunk = sock.recv(4096)
            if not chunk:
                return
            request += chunk
        path = request.split(b" ", 2)[1].decode("latin-1") if request.count(b" ") >= 2 else "/"
        with self._lock:
            script = self._scripts.get(path)
        wire = Wire(sock, self._stopping)
        try:
            if script is not None:
                script(wire)
            else:
                wire.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        finally:
            with self._lock:
                self._sent[path] = wire.written
                if path in self._done:
                    self._done[path].set()


# --- scripts ----------------------------------------------------------------------------------------


def endless(chunk: bytes, *, every: float = 0.0, headers: str = HEAD) -> Script:
    """200, no Content-Length, then the feed's start and chunk after chunk until the client leaves."""

    def script(wire: Wire) -> None:
        if not wire.write((headers + "\r\n").encode("latin-1") + FEED_START):
            return
        while wire.write(chunk):
            if every:
                time.sleep(every)

    return script


def sized(total: int, chunk: bytes, *, declare: bool = True) -> Script:
    """200 with a body of ``total`` bytes made of chunk, generated as it goes (never held whole)."""

    def script(wire: Wire) -> None:
        length = f"Content-Length: {total + len(FEED_START)}\r\n" if declare else ""
        if not wire.write((HEAD + length + "\r\n").encode("latin-1") + FEED_START):
            return
        left = total
        while left > 0 and wire.write(chunk[: min(left, len(chunk))]):
            left -= len(chunk)

    return script


def gzip_bomb(decoded_size: int) -> Script:
    """200, Content-Encoding gzip: a few kilobytes on the wire that decode to decoded_size bytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: the gzip container
    parts = [compressor.compress(FEED_START)]
    block = b" " * (1 << 20)
    parts += [compressor.compress(block) for _ in range(decoded_size // len(block))]
    body = b"".join([*parts, compressor.flush()])
    return send(f"{HEAD}Content-Encoding: gzip\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)


def encoded(body: bytes, coding: str, *, raw_deflate: bool = False) -> Script:
    """200 with body compressed as coding ("gzip", "deflate"; anything else: sent as it is)."""
    if coding in ("gzip", "deflate"):
        compressor = zlib.compressobj(
            6, zlib.DEFLATED, 31 if coding == "gzip" else -15 if raw_deflate else 15
        )
        body = compressor.compress(body) + compressor.flush()
    return send(f"{HEAD}Content-Encoding: {coding}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)


def lying_length(declared: int, body: bytes) -> Script:
    """Content-Length says more than is sent; then the connection closes."""
    return send(f"{HEAD}Content-Length: {declared}\r\n\r\n".encode() + body)


def send(data: bytes) -> Script:
    """Write data as it is (another protocol's banner, a broken answer), then close."""

    def script(wire: Wire) -> None:
        wire.write(data)

    return script


def hang_up(wire: Wire) -> None:
    """Read the request and close without a word."""
