"""The common part of every API emulator: a loopback HTTP server with routes and scripted faults.

    with TelegramEmulator() as api:
        api.fail_next(status=502)                  # the next request gets a 502
        api.fail_next(status=429, json={...}, headers={"Retry-After": "3"})
        api.hang_next(seconds=5)                   # the next request hangs past the client timeout
        ...
        api.accepted                               # what the emulator accepted, in order

A subclass registers routes with ``self.route(method, regex, handler)``; a handler receives an
``EmulatedRequest`` and returns ``Reply``. Scripted faults are served before any route runs, in
the order they were queued, so a test can script a whole outage. Like Svix's test receivers, the
answer can be changed mid-test, and tests poll for state rather than sleeping.
"""

from __future__ import annotations

import dataclasses
import json as json_module
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit


@dataclass
class EmulatedRequest:
    """One request as the emulator saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased
    body: bytes
    match: re.Match[str] | None = None

    @property
    def json(self) -> Any:
        """The body parsed as JSON, or None."""
        try:
            return json_module.loads(self.body or b"null")
        except ValueError:
            return None

    @property
    def form(self) -> dict[str, str]:
        """The body (urlencoded) and query merged, single values."""
        merged = {k: v[-1] for k, v in self.query.items()}
        if "application/x-www-form-urlencoded" in self.headers.get("content-type", ""):
            merged.update({k: v[-1] for k, v in parse_qs(self.body.decode(), keep_blank_values=True).items()})
        return merged

    def params(self) -> dict[str, Any]:
        """JSON body, else form fields and query: how most APIs read their parameters."""
        data = self.json
        if isinstance(data, dict):
            return {**{k: v[-1] for k, v in self.query.items()}, **data}
        return self.form


@dataclass
class Reply:
    """What the emulator answers."""

    status: int = 200
    json: Any = None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (a hang past the client's timeout)


Handler = Callable[[EmulatedRequest], Reply]


class Emulator:
    """A ThreadingHTTPServer on 127.0.0.1 with routes, scripted faults and a request log."""

    def __init__(self) -> None:
        self.base_url = ""
        self.requests: list[EmulatedRequest] = []
        self.accepted: list[dict[str, Any]] = []
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._script: list[Reply] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Emulator:
        """Listen on a free loopback port and serve in a daemon thread."""
        self._closing.clear()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        name = type(self).__name__
        # A short poll interval: shutdown() waits up to one interval (0.5 s by default, per test).
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; hanging requests are released."""
        self._closing.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- routes and faults ----------------------------------------------------------------------

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        """Answer requests whose method matches and whose path fully matches the regex."""
        self._routes.append((method.upper(), re.compile(pattern), handler))

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 500,
        json: Any = None,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer the next `count` requests with this reply instead of the real one."""
        with self._lock:
            self._script.extend(
                Reply(status=status, json=json, body=body, headers=dict(headers or {}), delay=delay)
                for _ in range(count)
            )

    def hang_next(self, count: int = 1, *, seconds: float = 30.0) -> None:
        """The next `count` requests get no answer for `seconds` (past any sane client timeout)."""
        self.fail_next(count, status=504, body=b"", delay=seconds)

    def clear_faults(self) -> None:
        """Forget scripted faults that were not used."""
        with self._lock:
            self._script.clear()

    def record(self, kind: str, **data: Any) -> None:
        """Remember something the emulator accepted (a message, a post, a tweet)."""
        with self._lock:
            self.accepted.append({"kind": kind, **data})

    # --- dispatch -------------------------------------------------------------------------------

    def dispatch(self, request: EmulatedRequest) -> Reply:
        """The scripted fault if one is queued, else the matching route, else 404."""
        with self._lock:
            self.requests.append(request)
            if self._script:
                return self._script.pop(0)
        for method, pattern, handler in self._routes:
            if method == request.method and (match := pattern.fullmatch(request.path)):
                request.match = match
                return handler(request)
        return Reply(status=404, json={"error": f"no route for {request.method} {request.path}"})

    def wait(self, seconds: float) -> None:
        """Sleep, but wake when the emulator stops (so a hang never outlives its test)."""
        self._closing.wait(seconds)


class FaultPlan(Protocol):
    """What the fault suite (tests/faults/networks.py) decides for every network alike."""

    pace: float  # seconds every answer waits after its request was handled

    def flaky_now(self, kind: str, key: str = "") -> bool:
        """Whether this publishing request fails transiently (``key``: its idempotency key)."""
        ...


class NetworkHarness:
    """What every network's harness offers the shared tests, besides its own ``kind``,
    ``expected``, ``make_target``, ``inject`` and ``sent``. With these the conformance test, the
    end-to-end test and the fault suite take a new network by its emulator module alone
    (``tests/emulators/<kind>.py``, a class named ``Harness``)."""

    kind: str
    # What an uncertain delivery's note says when a look-up did not find its post ("" when the
    # network cannot look posts up: the note then says an admin decides).
    not_found_note: str = ""
    # The adapter writes per-recipient rows while it sends, so a database cut mid-send may leave the
    # delivery uncertain (a mailing list).
    writes_while_sending: bool = False
    # After the outage script, a delivery whose request hung is settled by a re-send under its
    # idempotency key (all end sent), rather than left uncertain.
    outage_settles_hangs: bool = False
    # Words in the message of a look-up that settled an uncertain delivery ("" for no check), and
    # how many such look-ups the outage script leads to (None for no count).
    settled_note: str = ""
    outage_lookups: int | None = None
    # The fault suite's flaky answer (transient_reply) leaves the delivery uncertain, to be settled
    # by one look-up (Mastodon's 503 on posting), rather than a plain retry.
    flaky_is_uncertain: bool = False

    # Whether the network gives a sent post a public URL (a mailing list does not).
    public_urls: bool = True

    def secrets(self) -> list[str]:
        """Every secret value this harness configures, for the sweep that none ever shows up."""
        raise NotImplementedError

    def set_secret_env(self, name: str, value: str) -> None:
        """Put a secret in a variable of the harness's own; ``restore_secret_env`` undoes it (a
        developer's real variables stay untouched)."""
        saved = self.__dict__.setdefault("_saved_env", {})
        saved.setdefault(name, os.environ.get(name))
        os.environ[name] = value

    def restore_secret_env(self) -> None:
        for name, old in self.__dict__.pop("_saved_env", {}).items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old

    def issued_secrets(self) -> list[str]:
        """Secrets the emulator issued at run time (session tokens), searched for too."""
        return []

    def external_id(self, sent: dict[str, Any]) -> str:
        """The id the adapter records for one of ``sent()``'s items."""
        return str(sent.get("post_id") or sent.get("id") or "")

    def script_outage(self, hang: float) -> None:
        """Script a burst: two 5xx, a rate limit with the network's hint, a hang of ``hang`` s."""
        raise NotImplementedError

    def outage_served(self) -> bool:
        """Whether every fault the outage script queued was served."""
        raise NotImplementedError

    def check_after_outage(self, received: list[Any]) -> None:
        """The network's own checks once the outage script's deliveries have settled."""

    def install_faults(self, plan: FaultPlan) -> None:
        """Let the fault suite slow every answer down and make publishing requests flaky."""
        raise NotImplementedError


class HttpHarness(NetworkHarness):
    """A network reached over HTTP: its emulator, and the answer that says "failed, nothing
    posted, try again" in the network's own words."""

    emulator: Emulator

    def transient_reply(self) -> Reply:
        """An error answer after which nothing was posted and a retry is right."""
        raise NotImplementedError

    def outage_served(self) -> bool:
        return not self.emulator._script and not getattr(self, "_first_tries", [])

    def fail_first_tries(self, replies: list[Reply], key_of: Callable[[EmulatedRequest], str | None]) -> None:
        """Answer the first try of each key with the next of ``replies``, in order: a request for
        which ``key_of`` gives None is no try; a repeat of a key, and every try once the replies
        are spent, reach the emulator. So the re-send or look-up that settles an uncertain
        delivery gets through, whichever order the worker takes them in."""
        self._first_tries = list(replies)
        original, emulator, tried = self.emulator.dispatch, self.emulator, set()

        def dispatch(request: EmulatedRequest) -> Reply:
            key = key_of(request)
            if key is not None:
                first = key not in tried
                tried.add(key)
                if first and self._first_tries:
                    emulator.requests.append(request)
                    return dataclasses.replace(self._first_tries.pop(0))
            return original(request)

        self.emulator.dispatch = dispatch  # type: ignore[method-assign]

    def install_faults(self, plan: FaultPlan) -> None:
        original = self.emulator.dispatch

        def dispatch(request: EmulatedRequest) -> Reply:
            key = request.headers.get("idempotency-key", "")
            if request.method == "POST" and plan.flaky_now(self.kind, key):
                return self.transient_reply()  # before the real handler: nothing is posted
            reply = original(request)
            # After the handler: the post exists, and its answer is still on the way.
            return dataclasses.replace(reply, delay=max(reply.delay, plan.pace)) if plan.pace else reply

        self.emulator.dispatch = dispatch  # type: ignore[method-assign]


def _handler_for(emulator: Emulator) -> type[BaseHTTPRequestHandler]:
    class EmulatorHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            request = EmulatedRequest(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query, keep_blank_values=True),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
            reply = emulator.dispatch(request)
            if reply.delay:
                started = time.monotonic()
                emulator.wait(reply.delay)
                if time.monotonic() - started < reply.delay:
                    return  # the emulator is stopping: drop the connection
            payload = reply.body
            content_type = "text/plain; charset=utf-8"
            if reply.json is not None:
                payload = json_module.dumps(reply.json).encode()
                content_type = "application/json"
            try:
                self.send_response(reply.status)
                headers = {"Content-Type": content_type, **reply.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (its timeout): that is the point of a hang

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, format: str, *args: object) -> None:
            pass

    return EmulatorHandler
