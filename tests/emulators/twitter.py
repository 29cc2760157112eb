"""An emulator of the X API v2 endpoints syndicator uses, and the conformance Harness for "twitter".

    with XEmulator() as x:
        x.base_url                  # point a target's base_url here
        x.fail_next(status=503)     # scripted faults, from tests.emulators.base
        x.tweets()                  # the tweets it accepted, in order

Routes: POST /2/tweets (with edit_options.previous_post_id: an edit), GET and DELETE
/2/tweets/{id}, GET /2/users/me, POST /2/media/upload (simple, multipart) and
GET /images/{name} (images for the adapter to download). Requests need an OAuth 1.0a header
naming the configured consumer key and access token; the signature is not verified, since the
adapter's URL rewrite changes what is signed (TARGETS.md section 3, approach A).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import unquote

from twitter_text import parse_tweet

from syndicator.errors import OutcomeUnknown, PermanentError, RateLimited, TargetBroken, TransientError
from tests.emulators.base import EmulatedRequest, Emulator, HttpHarness, Reply

CONSUMER_KEY = "x-emulator-consumer-key"
ACCESS_TOKEN = "1234567890-x-emulator-access-token"
USERNAME = "syndicator_test"
PROBLEM = {"Content-Type": "application/problem+json"}
TWEPOCH_MS = 1288834974657  # X's snowflake epoch
EDIT_WINDOW, MAX_EDITS = 30 * 60, 5  # docs.x.com "Edit Posts"
# A valid 1×1 white PNG (built with zlib and struct): an image X would accept.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000b49444154789c63f80f040009fb03fdfb5e6b2b0000000049454e44ae426082"
)


def problem(status: int, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    """An RFC 7807 problem body the way X v2 shapes its errors."""
    return {"title": title, "detail": detail, "type": "about:blank", "status": status, **extra}


UNAUTHORIZED = problem(401, "Unauthorized", "Unauthorized")
DUPLICATE = problem(403, "Forbidden", "You are not allowed to create a Tweet with duplicate content.")
FORBIDDEN = problem(
    403,
    "Forbidden",
    "You are not permitted to perform this action.",
)
TOO_LONG = {
    "errors": [{"message": "Your Tweet text is too long.", "parameters": {"text": []}}],
    **problem(
        400,
        "Invalid Request",
        "One or more parameters to your request was invalid.",
        type="https://api.twitter.com/2/problems/invalid-request",
    ),
}


class XEmulator(Emulator):
    """POST /2/tweets, GET /2/users/me and POST /2/media/upload on 127.0.0.1."""

    def __init__(self, *, consumer_key: str = CONSUMER_KEY, access_token: str = ACCESS_TOKEN) -> None:
        super().__init__()
        self.consumer_key, self.access_token = consumer_key, access_token
        self.user = {"id": access_token.split("-")[0], "name": "Syndicator Test", "username": USERNAME}
        self.images: dict[str, tuple[bytes, str]] = {"photo.png": (PNG, "image/png")}
        self.media: dict[str, dict[str, Any]] = {}  # uploaded media by id
        self.upload_status: int | None = None  # answer uploads with this error status when set
        self.rate_limit = 100
        self._remaining = itertools.count(self.rate_limit - 1, -1)
        self._texts: set[str] = set()
        self.live: dict[str, str] = {}  # tweet id → text, while the tweet exists
        self.deleted: list[str] = []
        # Edits (docs.x.com "Edit Posts"): each edit is a new id; every id of a post maps to its
        # chain, oldest first, and the chain's first post time bounds the 30-minute window.
        self.chains: dict[str, list[str]] = {}
        self.posted_at: dict[str, float] = {}  # original id → when it was posted
        self.now = time.time  # a test may move the clock past the edit window
        self._sequence = itertools.count()
        self._ids_lock = threading.Lock()
        self.route("POST", r"/2/tweets", self._create_tweet)
        self.route("DELETE", r"/2/tweets/(?P<id>\d+)", self._delete_tweet)
        self.route("GET", r"/2/tweets/(?P<id>\d+)", self._get_tweet)
        self.route("GET", r"/2/users/me", self._me)
        self.route("POST", r"/2/media/upload", self._upload)
        self.route("GET", r"/images/(?P<name>[^/]+)", self._image)

    def tweets(self) -> list[dict[str, Any]]:
        """The tweets accepted so far, in order."""
        return [item for item in self.accepted if item["kind"] == "tweet"]

    def image_url(self, name: str = "photo.png") -> str:
        """The URL of an image this emulator serves."""
        return f"{self.base_url}/images/{name}"

    # --- handlers -------------------------------------------------------------------------------

    def _create_tweet(self, request: EmulatedRequest) -> Reply:
        if (denied := self._authorize(request)) is not None:
            return denied
        body = request.json if isinstance(request.json, dict) else {}
        text = body.get("text")
        media_ids = [str(m) for m in (body.get("media") or {}).get("media_ids", [])]
        if not isinstance(text, str) or not (text.strip() or media_ids):
            detail = "Post text or media is required."
            return Reply(400, json=problem(400, "Invalid Request", detail), headers=PROBLEM)
        if parse_tweet(text).weightedLength > 280:
            return Reply(400, json=TOO_LONG, headers=PROBLEM)
        if unknown := [m for m in media_ids if m not in self.media]:
            detail = f"Your media IDs are invalid: {', '.join(unknown)}"
            return Reply(400, json=problem(400, "Invalid Request", detail), headers=PROBLEM)
        previous = str((body.get("edit_options") or {}).get("previous_post_id") or "")
        if previous:
            return self._edit_tweet(previous, text, media_ids)
        with self._ids_lock:
            if text in self._texts:
                return Reply(403, json=DUPLICATE, headers=PROBLEM)
            self._texts.add(text)
            tweet_id = self._snowflake()
            self.live[tweet_id] = text
            self.chains[tweet_id] = [tweet_id]
            self.posted_at[tweet_id] = self.now()
        self.record("tweet", id=tweet_id, text=text, media_ids=media_ids)
        data = {"id": tweet_id, "text": text, "edit_history_tweet_ids": [tweet_id]}
        return Reply(201, json={"data": data}, headers=self._rate_headers())

    def _edit_tweet(self, previous: str, text: str, media_ids: list[str]) -> Reply:
        """An edit of the newest version of a post, within 30 minutes and 5 edits; a new id. The
        refusals' words are the emulator's own (X's are not documented)."""
        with self._ids_lock:
            chain = self.chains.get(previous)
            if chain is None or chain[-1] not in self.live:
                return Reply(404, json=problem(404, "Not Found Error", "Could not find the post to edit."))
            if chain[-1] != previous:
                detail = "Only the most recent version of a post can be edited."
                return Reply(400, json=problem(400, "Invalid Request", detail), headers=PROBLEM)
            if self.now() - self.posted_at[chain[0]] > EDIT_WINDOW or len(chain) > MAX_EDITS:
                detail = "This post is no longer eligible for edit (30 minutes, 5 edits)."
                return Reply(403, json=problem(403, "Forbidden", detail), headers=PROBLEM)
            new_id = self._snowflake()
            del self.live[previous]
            self.live[new_id] = text
            chain.append(new_id)
            self.chains[new_id] = chain
        self.record("edit", id=new_id, previous=previous, text=text, media_ids=media_ids)
        data = {"id": new_id, "text": text, "edit_history_tweet_ids": list(chain)}
        return Reply(200, json={"data": data}, headers=self._rate_headers())

    def _get_tweet(self, request: EmulatedRequest) -> Reply:
        """The newest version of a post (X answers the newest for any id of an edited post), with
        edit_controls when asked for."""
        if (denied := self._authorize(request)) is not None:
            return denied
        tweet_id = request.match["id"] if request.match else ""
        with self._ids_lock:
            chain = self.chains.get(tweet_id)
            if chain is None or chain[-1] not in self.live:
                detail = f"Could not find tweet with id: [{tweet_id}]."
                return Reply(404, json=problem(404, "Not Found Error", detail), headers=PROBLEM)
            newest = chain[-1]
            data: dict[str, Any] = {
                "id": newest,
                "text": self.live[newest],
                "edit_history_tweet_ids": list(chain),
            }
            if "edit_controls" in str(request.params().get("tweet.fields") or ""):
                until = self.posted_at[chain[0]] + EDIT_WINDOW
                data["edit_controls"] = {
                    "is_edit_eligible": True,
                    "editable_until": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(until)),
                    "edits_remaining": max(MAX_EDITS - (len(chain) - 1), 0),
                }
        return Reply(200, json={"data": data}, headers=self._rate_headers())

    def edit_count(self, tweet_id: str) -> int:
        """How many times the post with this id (any of its versions) was edited."""
        chain = self.chains.get(tweet_id)
        return len(chain) - 1 if chain else 0

    def newest_text(self, tweet_id: str) -> str | None:
        """The newest version's text of the post with this id; None once deleted."""
        chain = self.chains.get(tweet_id)
        return self.live.get(chain[-1]) if chain else None

    def _delete_tweet(self, request: EmulatedRequest) -> Reply:
        """{"data": {"deleted": true}}; a tweet that does not exist (never, or deleted) is X's 404
        problem "Not Found Error" (the exact answer for a deleted one is not documented)."""
        if (denied := self._authorize(request)) is not None:
            return denied
        tweet_id = request.match["id"] if request.match else ""
        with self._ids_lock:
            chain = self.chains.get(tweet_id)
            if chain is None or chain[-1] not in self.live:
                detail = f"Could not find tweet with id: [{tweet_id}]."
                return Reply(404, json=problem(404, "Not Found Error", detail), headers=PROBLEM)
            del self.live[chain[-1]]  # deleting any version deletes the whole chain
            self.deleted.append(tweet_id)
        return Reply(200, json={"data": {"deleted": True}}, headers=self._rate_headers())

    def _me(self, request: EmulatedRequest) -> Reply:
        if (denied := self._authorize(request)) is not None:
            return denied
        return Reply(200, json={"data": dict(self.user)}, headers=self._rate_headers())

    def _upload(self, request: EmulatedRequest) -> Reply:
        if (denied := self._authorize(request)) is not None:
            return denied
        if self.upload_status is not None:
            status = self.upload_status
            return Reply(
                status, json=problem(status, "Upload failed", "Media upload failed."), headers=PROBLEM
            )
        fields = _multipart(request)
        media, category = fields.get("media"), fields.get("media_category", (b"", ""))[0].decode()
        if media is None or not media[0] or category != "tweet_image":
            detail = "A multipart 'media' file and media_category=tweet_image are required."
            return Reply(400, json=problem(400, "Invalid Request", detail), headers=PROBLEM)
        media_id = self._snowflake()
        self.media[media_id] = {"bytes": media[0], "content_type": media[1], "category": category}
        self.record("media", id=media_id, size=len(media[0]), content_type=media[1])
        data = {
            "id": media_id,
            "media_key": f"3_{media_id}",
            "size": len(media[0]),
            "expires_after_secs": 86400,
            "image": {"image_type": media[1]},
        }
        return Reply(200, json={"data": data})

    def _image(self, request: EmulatedRequest) -> Reply:
        found = self.images.get(request.match["name"] if request.match else "")
        if found is None:
            return Reply(404, body=b"no such image")
        return Reply(200, body=found[0], headers={"Content-Type": found[1]})

    # --- helpers --------------------------------------------------------------------------------

    def _authorize(self, request: EmulatedRequest) -> Reply | None:
        """None when the OAuth 1.0a header names the configured key and token, else a 401."""
        params = oauth_params(request.headers.get("authorization", ""))
        if params.get("oauth_consumer_key") == self.consumer_key and params.get("oauth_token") == (
            self.access_token
        ):
            return None
        return Reply(401, json=UNAUTHORIZED, headers=PROBLEM)

    def _snowflake(self) -> str:
        """A snowflake-shaped id: milliseconds since X's epoch, then a sequence number."""
        millis = int(time.time() * 1000) - TWEPOCH_MS
        return str((millis << 22) | (next(self._sequence) & 0xFFF))

    def _rate_headers(self) -> dict[str, str]:
        return {
            "x-rate-limit-limit": str(self.rate_limit),
            "x-rate-limit-remaining": str(max(next(self._remaining), 0)),
            "x-rate-limit-reset": str(int(time.time()) + 900),
        }


def oauth_params(header: str) -> dict[str, str]:
    """The parameters of an ``Authorization: OAuth k="v", …`` header, percent-decoded."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "oauth":
        return {}
    params = {}
    for part in rest.split(","):
        key, sep, value = part.strip().partition("=")
        if sep:
            params[unquote(key)] = unquote(value.strip().strip('"'))
    return params


def _multipart(request: EmulatedRequest) -> dict[str, tuple[bytes, str]]:
    """The parts of a multipart/form-data body: name → (bytes, content type)."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        return {}
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + request.body
    )
    parts = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            parts[name] = (part.get_payload(decode=True) or b"", part.get_content_type())
    return parts


class Harness(HttpHarness):
    """The "twitter" side of the shared conformance test: an XEmulator and targets pointing at it."""

    kind = "twitter"
    # Secrets go in env vars of the harness's own, so a developer's real TWITTER_* stay untouched.
    ENV = {
        "api_key_env": ("SYNDICATOR_TEST_X_API_KEY", CONSUMER_KEY),
        "api_secret_env": ("SYNDICATOR_TEST_X_API_SECRET", "x-emulator-consumer-secret"),
        "access_token_env": ("SYNDICATOR_TEST_X_ACCESS_TOKEN", ACCESS_TOKEN),
        "access_secret_env": ("SYNDICATOR_TEST_X_ACCESS_SECRET", "x-emulator-access-secret"),
    }
    expected: dict[str, type[Exception]] = {
        "server_error": OutcomeUnknown,  # 500: X may have posted it (see STATUS_TABLE in twitter.py)
        "unavailable": TransientError,  # 503: over capacity, nothing was posted
        "rate_limited": RateLimited,
        "timeout": OutcomeUnknown,
        "bad_token": TargetBroken,
        "rejected_content": PermanentError,
        "duplicate": PermanentError,
        "forbidden": TargetBroken,
        "not_found": PermanentError,
    }

    def __init__(self) -> None:
        self.emulator = XEmulator()
        self._saved_env: dict[str, str | None] = {}

    def __enter__(self) -> Harness:
        self.emulator.start()
        for env_name, value in self.ENV.values():
            self._saved_env[env_name] = os.environ.get(env_name)
            os.environ[env_name] = value
        return self

    def __exit__(self, *exc: object) -> None:
        self.emulator.stop()
        for env_name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(env_name, None)
            else:
                os.environ[env_name] = value

    def make_target(self, name: str = "twitter-test", **settings: Any):  # -> Target
        """A saved twitter Target pointing at the emulator, with a 1 s timeout."""
        from syndicator.models import Target

        values = {
            "base_url": self.emulator.base_url,
            "username": USERNAME,
            "timeout": 1,
            **{setting: env_name for setting, (env_name, _) in self.ENV.items()},
            **settings,
        }
        return Target.objects.create(name=name, kind="twitter", settings=values)

    def transient_reply(self) -> Reply:
        """503 "Over capacity": nothing was posted."""
        return Reply(503, json=problem(503, "Service Unavailable", "Over capacity"), headers=PROBLEM)

    def script_outage(self, hang: float) -> None:
        api = self.emulator
        api.fail_next(
            2, status=503, json=problem(503, "Service Unavailable", "Over capacity"), headers=PROBLEM
        )
        reset = {"x-rate-limit-remaining": "0", "x-rate-limit-reset": str(int(time.time()) + 2)}
        api.fail_next(status=429, json=problem(429, "Too Many Requests", "Too Many Requests"), headers=reset)
        api.hang_next(seconds=hang)

    def secrets(self) -> list[str]:
        return [value for _, value in self.ENV.values()]

    def post_text(self, external_id: str) -> str | None:
        """The post's newest text (any of its ids); None once deleted (or never made)."""
        return self.emulator.newest_text(external_id)

    def edit_count(self, external_id: str) -> int:
        """How many times the post was edited (X allows 5, within 30 minutes)."""
        return self.emulator.edit_count(external_id)

    def sent(self) -> list[dict[str, Any]]:
        """The tweets the emulator accepted, each with "text", "id" and "media_ids"."""
        return self.emulator.tweets()

    def inject(self, mode: str) -> None:
        """Make the next request fail the way ``mode`` names (see ``expected``)."""
        reset = str(int(time.time()) + 3)
        faults: dict[str, dict[str, Any]] = {
            "server_error": {"status": 500, "json": problem(500, "Internal Server Error", "Internal Error")},
            "unavailable": {
                "status": 503,
                "json": problem(503, "Service Unavailable", "Service Unavailable"),
            },
            "rate_limited": {
                "status": 429,
                "json": problem(429, "Too Many Requests", "Too Many Requests"),
                "headers": {
                    "x-rate-limit-limit": "100",
                    "x-rate-limit-remaining": "0",
                    "x-rate-limit-reset": reset,
                },
            },
            "bad_token": {"status": 401, "json": UNAUTHORIZED},
            "rejected_content": {"status": 400, "json": TOO_LONG},
            "duplicate": {"status": 403, "json": DUPLICATE},
            "forbidden": {"status": 403, "json": FORBIDDEN},
            "not_found": {"status": 404, "json": problem(404, "Not Found Error", "Not Found")},
        }
        if mode == "timeout":
            self.emulator.hang_next(seconds=5)
        elif mode in faults:
            self.emulator.fail_next(
                **{**faults[mode], "headers": {**PROBLEM, **faults[mode].get("headers", {})}}
            )
        else:
            raise ValueError(f"unknown mode {mode!r}; modes: {', '.join(self.expected)}")
