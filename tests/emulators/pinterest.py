"""A loopback emulator of the Pinterest API v5 endpoints syndicator uses, and the Harness for "pinterest".

    with PinterestEmulator() as api:
        api.base_url                 # point a target's base_url here
        api.fail_next(status=503)    # scripted faults, from tests.emulators.base
        api.lose_next_answers()      # the next Pin is made, its answer never arrives
        api.pins()                   # the Pins it made, in order

Routes under /v5: POST /pins, GET/PATCH/DELETE /pins/{id}, GET /user_account, GET
/boards/{board_id}, GET /boards/{board_id}/pins (newest first), and GET /images/{name} (images
for ``media_source``). It checks requests as Pinterest does (docs/pinterest-api.md):
a bearer token; a JSON body; a board the token's account owns; title ≤ 100, description ≤ 500,
alt_text ≤ 500, link ≤ 2048 characters and http(s); ``media_source`` {"source_type": "image_url",
"url": …} whose URL answers (when it points at this emulator, the image must exist). Error bodies
are {"code": <int>, "message": <str>}; the numbers in ``code`` are the emulator's own (Pinterest
documents none), the adapter reads the HTTP status.
"""

from __future__ import annotations

import itertools
import threading
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit

from syndicator.errors import OutcomeUnknown, PermanentError, RateLimited, TargetBroken
from tests.emulators.base import EmulatedRequest, Emulator, HttpHarness, Reply
from tests.emulators.twitter import PNG

TOKEN = "pina_emuPinterestToken5Kq7vXr2"
USERNAME = "nejatsociety"
BOARD_ID = "1069956423812345678"
LIMITS = {"title": 100, "description": 500, "alt_text": 500, "link": 2048}
AUTH_FAILED = {"code": 2, "message": "Authentication failed."}


def pinterest_error(code: int, message: str) -> dict[str, Any]:
    """A Pinterest v5 error body."""
    return {"code": code, "message": message}


def rate_limit_headers(seconds: int = 3) -> dict[str, str]:
    """What a 429 carries here: Retry-After and X-RateLimit-* (v5's own headers are not documented)."""
    return {"Retry-After": str(seconds), "X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0"}


class PinterestEmulator(Emulator):
    """One Pinterest account's boards and Pins on 127.0.0.1."""

    def __init__(self, *, token: str = TOKEN, board_id: str = BOARD_ID, username: str = USERNAME) -> None:
        super().__init__()
        self.token, self.username = token, username
        self.boards: dict[str, dict[str, str]] = {
            board_id: {"id": board_id, "name": "News", "owner": username}
        }
        self.images: dict[str, bytes] = {"photo.png": PNG}
        self.pins_made: dict[str, dict[str, Any]] = {}
        self.deleted: list[str] = []
        self.edits: dict[str, int] = {}  # pin id → PATCHes applied
        self._lost: list[float] = []
        self._ids = itertools.count(1069956400000000000 + int(time.time()) % 100000 * 1000)
        self._lock = threading.Lock()
        self.route("POST", r"/v5/pins", self._create)
        self.route("GET", r"/v5/pins/(?P<id>\d+)", self._get_pin)
        self.route("PATCH", r"/v5/pins/(?P<id>\d+)", self._update)
        self.route("DELETE", r"/v5/pins/(?P<id>\d+)", self._delete)
        self.route("GET", r"/v5/user_account", self._user_account)
        self.route("GET", r"/v5/boards/(?P<id>\d+)", self._board)
        self.route("GET", r"/v5/boards/(?P<id>\d+)/pins", self._board_pins)
        self.route("GET", r"/images/(?P<name>[^/]+)", self._image)

    # --- test controls --------------------------------------------------------------------------

    def pins(self) -> list[dict[str, Any]]:
        """The Pins made so far, in order."""
        return [item for item in self.accepted if item["kind"] == "pin"]

    def image_url(self, name: str = "photo.png") -> str:
        """The URL of an image this emulator serves."""
        return f"{self.base_url}/images/{name}"

    def add_board(self, board_id: str, *, owner: str) -> None:
        """A board of another account (or this one), to test ownership."""
        with self._lock:
            self.boards[board_id] = {"id": board_id, "name": f"Board {board_id}", "owner": owner}

    def lose_next_answers(self, count: int = 1, *, seconds: float = 5.0) -> None:
        """Make the next ``count`` Pins, then hold each answer ``seconds`` (past the client's timeout)."""
        with self._lock:
            self._lost.extend([seconds] * count)

    # --- routes ---------------------------------------------------------------------------------

    def _create(self, req: EmulatedRequest) -> Reply:
        if (denied := self._authorize(req)) is not None:
            return denied
        body = req.json
        if not isinstance(body, dict) or "json" not in req.headers.get("content-type", ""):
            return _invalid("Invalid request body: expected a JSON object")
        board = self.boards.get(str(body.get("board_id") or ""))
        if board is None:
            return Reply(404, json=pinterest_error(2001, "Board not found."))
        if board["owner"] != self.username:
            return Reply(403, json=pinterest_error(29, "You are not permitted to access that resource."))
        if (problem := self._check_fields(body)) is not None:
            return problem
        source = body.get("media_source")
        if not isinstance(source, dict) or source.get("source_type") != "image_url":
            return _invalid("media_source: source_type must be one of image_url, image_base64, video_id, …")
        if (problem := self._check_image(str(source.get("url") or ""))) is not None:
            return problem
        with self._lock:
            pin_id = str(next(self._ids))
            pin = {
                "id": pin_id,
                "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "board_id": board["id"],
                "title": body.get("title") or "",
                "description": body.get("description") or "",
                "alt_text": body.get("alt_text") or "",
                "link": body.get("link") or "",
                "media": {"media_type": "image"},
                "image_url": source["url"],
            }
            self.pins_made[pin_id] = pin
            delay = self._lost.pop(0) if self._lost else 0.0
        self.record("pin", **pin, text=f"{pin['title']}\n{pin['description']}")
        return Reply(201, json=_public(pin), delay=delay)

    def _get_pin(self, req: EmulatedRequest) -> Reply:
        if (denied := self._authorize(req)) is not None:
            return denied
        pin = self.pins_made.get(req.match["id"] if req.match else "")
        if pin is None:
            return Reply(404, json=pinterest_error(50, "Pin not found."))
        return Reply(200, json=_public(pin))

    def _update(self, req: EmulatedRequest) -> Reply:
        if (denied := self._authorize(req)) is not None:
            return denied
        pin, body = self.pins_made.get(req.match["id"] if req.match else ""), req.json
        if pin is None:
            return Reply(404, json=pinterest_error(50, "Pin not found."))
        if not isinstance(body, dict):
            return _invalid("Invalid request body: expected a JSON object")
        if "media_source" in body:
            return _invalid("media_source cannot be changed on an existing Pin")
        if (problem := self._check_fields(body)) is not None:
            return problem
        if "board_id" in body and body["board_id"] not in self.boards:
            return Reply(404, json=pinterest_error(2001, "Board not found."))
        with self._lock:
            pin.update(
                {k: body[k] for k in ("title", "description", "alt_text", "link", "board_id") if k in body}
            )
            self.edits[pin["id"]] = self.edits.get(pin["id"], 0) + 1
        self.record("edit", id=pin["id"], **{k: body[k] for k in body})
        return Reply(200, json=_public(pin))

    def _delete(self, req: EmulatedRequest) -> Reply:
        if (denied := self._authorize(req)) is not None:
            return denied
        pin_id = req.match["id"] if req.match else ""
        with self._lock:
            if self.pins_made.pop(pin_id, None) is None:
                return Reply(404, json=pinterest_error(50, "Pin not found."))
            self.deleted.append(pin_id)
        return Reply(204)

    def _user_account(self, req: EmulatedRequest) -> Reply:
        if (denied := self._authorize(req)) is not None:
            return denied
        return Reply(200, json={"username": self.username, "account_type": "BUSINESS", "id": "5499483499"})

    def _board(self, req: EmulatedRequest) -> Reply:
        if (denied := self._authorize(req)) is not None:
            return denied
        board = self.boards.get(req.match["id"] if req.match else "")
        if board is None:
            return Reply(404, json=pinterest_error(2001, "Board not found."))
        return Reply(
            200, json={"id": board["id"], "name": board["name"], "owner": {"username": board["owner"]}}
        )

    def _board_pins(self, req: EmulatedRequest) -> Reply:
        if (denied := self._authorize(req)) is not None:
            return denied
        board_id = req.match["id"] if req.match else ""
        if board_id not in self.boards:
            return Reply(404, json=pinterest_error(2001, "Board not found."))
        size = min(int(req.params().get("page_size") or 25), 250)
        with self._lock:
            newest = [p for p in reversed(self.pins_made.values()) if p["board_id"] == board_id][:size]
        return Reply(200, json={"items": [_public(p) for p in newest], "bookmark": None})

    def _image(self, req: EmulatedRequest) -> Reply:
        found = self.images.get(req.match["name"] if req.match else "")
        if found is None:
            return Reply(404, body=b"no such image")
        return Reply(200, body=found, headers={"Content-Type": "image/png"})

    # --- helpers --------------------------------------------------------------------------------

    def _authorize(self, req: EmulatedRequest) -> Reply | None:
        if req.headers.get("authorization", "") == f"Bearer {self.token}":
            return None
        return Reply(401, json=AUTH_FAILED)

    def _check_fields(self, body: dict[str, Any]) -> Reply | None:
        for name, limit in LIMITS.items():
            value = body.get(name)
            if value is not None and not isinstance(value, str):
                return _invalid(f"{name}: expected a string")
            if value and len(value) > limit:
                return _invalid(f"{name}: must be at most {limit} characters")
        link = str(body.get("link") or "")
        if link and not link.lower().startswith(("http://", "https://")):
            return _invalid("link: must be an http(s) URL")
        return None

    def _check_image(self, url: str) -> Reply | None:
        """Pinterest fetches the image; here a URL on this emulator must name an image it serves."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path in ("", "/"):
            return _invalid("media_source.url: must be the http(s) URL of an image")
        if url.startswith(f"{self.base_url}/images/") and parts.path.rsplit("/", 1)[-1] not in self.images:
            return _invalid(f"Sorry, we could not fetch the image at {url}")
        return None


def _invalid(message: str) -> Reply:
    return Reply(400, json=pinterest_error(1, message))


def _public(pin: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in pin.items() if key != "image_url"}


def http_date(seconds: float) -> str:
    """An HTTP date ``seconds`` from now (a Retry-After in that form)."""
    return format_datetime(datetime.fromtimestamp(time.time() + seconds, UTC), usegmt=True)


# --- the conformance harness ----------------------------------------------------------------------

FAULTS: dict[str, dict[str, Any]] = {
    # A 5xx on creating a Pin: it may have been made before the failure, so it is uncertain (and
    # ``verify`` looks it up on the board).
    "server_error": {"status": 500, "json": pinterest_error(3, "Internal error")},
    "unavailable": {"status": 503, "body": b"<html><h1>503 Service Unavailable</h1></html>"},
    "rate_limited": {
        "status": 429,
        "json": pinterest_error(8, "Rate limit exceeded."),
        "headers": rate_limit_headers(),
    },
    "bad_token": {"status": 401, "json": AUTH_FAILED},
    "forbidden": {
        "status": 403,
        "json": pinterest_error(29, "You are not permitted to access that resource."),
    },
    "rejected_content": {"status": 400, "json": pinterest_error(1, "Invalid request: link is not allowed")},
}


class Harness(HttpHarness):
    """The "pinterest" side of the shared conformance test: an emulator and targets pointing at it."""

    kind = "pinterest"
    TOKEN_ENV = "SYNDICATOR_TEST_PINTEREST_TOKEN"
    expected: dict[str, type[Exception]] = {
        "server_error": OutcomeUnknown,
        "unavailable": OutcomeUnknown,
        "rate_limited": RateLimited,
        "timeout": OutcomeUnknown,
        "bad_token": TargetBroken,
        "forbidden": TargetBroken,
        "rejected_content": PermanentError,
    }

    def __init__(self, **emulator_options: Any) -> None:
        self.emulator = PinterestEmulator(**emulator_options)

    def __enter__(self) -> Harness:
        self.emulator.start()
        self.set_secret_env(self.TOKEN_ENV, self.emulator.token)
        return self

    def __exit__(self, *exc: object) -> None:
        self.emulator.stop()
        self.restore_secret_env()

    def make_target(self, name: str = "pinterest-test", **settings: Any) -> Any:
        """A saved pinterest Target pinning to the emulator's board, with a 1 s timeout.

        ``fallback_image`` is the emulator's image, so a post without one (the shared tests'
        post) still makes a Pin; a test of the skip sets it to "".
        """
        from syndicator.models import Target

        values = {
            "base_url": self.emulator.base_url,
            "board_id": next(iter(self.emulator.boards)),
            "fallback_image": self.emulator.image_url(),
            "timeout": 1,
            **settings,
        }
        return Target.objects.create(name=name, kind="pinterest", settings=values, secret_env=self.TOKEN_ENV)

    def sent(self) -> list[dict[str, Any]]:
        """The Pins made, each with "text" (title, newline, description), "id" and "link"."""
        return [dict(pin) for pin in self.emulator.pins()]

    # A 5xx or a hang on creating a Pin is uncertain, and ``verify`` settles it: found on the
    # board, or pinned then (every delivery of the outage ends sent).
    outage_settles_hangs = True

    def secrets(self) -> list[str]:
        return [self.emulator.token]

    def post_text(self, external_id: str) -> str | None:
        """The Pin's title, a newline and its description (as ``sent()``'s "text"); None once deleted."""
        pin = self.emulator.pins_made.get(external_id)
        return None if pin is None else f"{pin['title']}\n{pin['description']}"

    def edit_count(self, external_id: str) -> int:
        """How many PATCHes changed the Pin (Pinterest sets no limit on edits)."""
        return self.emulator.edits.get(external_id, 0)

    def transient_reply(self) -> Reply:
        """ "Nothing made, try again": a 429 with Retry-After, the only documented refusal that
        makes nothing (a 5xx is uncertain)."""
        return Reply(429, json=pinterest_error(8, "Rate limit exceeded."), headers=rate_limit_headers(1))

    def script_outage(self, hang: float) -> None:
        """Two 5xx, a 429 with Retry-After, a hang: each on the first try of a Pin (by its link),
        so the look-up and the one pin that settle an uncertain one get through."""
        replies = [
            Reply(500, json=pinterest_error(3, "Internal error")),
            Reply(503, body=b"<html><h1>503 Service Unavailable</h1></html>"),
            Reply(429, json=pinterest_error(8, "Rate limit exceeded."), headers=rate_limit_headers(1)),
            Reply(504, body=b"", delay=hang),  # hangs; no Pin made
        ]
        self.fail_first_tries(
            replies,
            lambda r: (
                str((r.json or {}).get("link") or "") if r.method == "POST" and r.path == "/v5/pins" else None
            ),
        )

    def inject(self, mode: str) -> None:
        """Make the next request fail the way ``mode`` names (see ``expected``)."""
        if mode == "timeout":
            self.emulator.hang_next(seconds=5)
        elif mode in FAULTS:
            self.emulator.fail_next(**FAULTS[mode])
        else:
            raise ValueError(f"unknown mode {mode!r}; modes: {', '.join(self.expected)}")
