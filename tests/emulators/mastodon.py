"""An emulator of the Mastodon API endpoints syndicator uses, and the conformance Harness for "mastodon".

    with MastodonEmulator(max_characters=500, url_length=23) as social:
        social.base_url             # point a target's base_url here
        social.fail_next(status=503)  # scripted faults, from tests.emulators.base
        social.lose_next_answers()  # the next status is made, its answer never arrives
        social.statuses()           # the statuses it made, in order
        social.history(status_id)   # a status's versions, as GET /api/v1/statuses/:id/history

Routes: POST /api/v1/statuses, PUT and DELETE /api/v1/statuses/:id, GET /api/v1/statuses/:id and
its /history, GET /api/v1/accounts/verify_credentials, GET /api/v2/instance, POST /api/v2/media,
GET /api/v1/media/:id and GET /images/{name} (images to download). It checks requests as Mastodon
does: a bearer token; form or JSON fields; the length rule (grapheme clusters, every http(s) URL
as ``url_length``, found by twitter-text's extractor as Mastodon's StatusLengthValidator does); an
Idempotency-Key answered with the status it made, per token; media that has finished processing.
Edits as UpdateStatusService makes them: the media are the ``media_ids`` the edit names (none
named: none kept), an edit that changes nothing makes no version, the first edit also keeps the
original as a version; a deleted status answers 404 "Record not found" to everything.
"""

from __future__ import annotations

import itertools
import threading
import time
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any

from twitter_text.extract_urls import extract_urls_with_indices

from syndicator.errors import OutcomeUnknown, PermanentError, RateLimited, TargetBroken
from tests.emulators.base import EmulatedRequest, Emulator, HttpHarness, Reply
from tests.emulators.twitter import PNG, _multipart

TOKEN = "mastodon-emulator-token-5f1c2a9e7d"
DOMAIN = "social.example.org"
USERNAME = "syndicator_test"
VISIBILITIES = ("public", "unlisted", "private", "direct")
NOT_READY = "Cannot attach files that have not finished processing. Try again in a moment!"
INVALID_TOKEN = {"error": "The access token is invalid"}
NOT_FOUND = {"error": "Record not found"}  # Api::BaseController's answer to RecordNotFound
MAX_MEDIA = 4  # media_attachments.validations.too_many


def grapheme_length(text: str) -> int:
    """Grapheme clusters, near enough: marks, joiners, variation selectors and what a ZWJ joins
    do not start a new cluster (Mastodon counts with Ruby's each_grapheme_cluster)."""
    count, joined = 0, False
    for ch in text:
        extends = unicodedata.category(ch)[0] == "M" or ch in "\u200c\u200d\ufe0e\ufe0f"
        if not extends and not joined:
            count += 1
        joined = ch == "\u200d"
    return count


def status_length(text: str, url_length: int) -> int:
    """A status's length as Mastodon's StatusLengthValidator counts it."""
    spans = [url["indices"] for url in extract_urls_with_indices(text, extract_urls_without_protocol=False)]
    rest, last = [], 0
    for start, end in spans:
        rest.append(text[last:start])
        last = end
    rest.append(text[last:])
    return grapheme_length("".join(rest)) + url_length * len(spans)


class MastodonEmulator(Emulator):
    """The statuses, media, account and instance endpoints of one Mastodon instance on 127.0.0.1."""

    def __init__(self, *, token: str = TOKEN, max_characters: int = 500, url_length: int = 23) -> None:
        super().__init__()
        self.token = token
        self.max_characters, self.url_length = max_characters, url_length
        self.account = {"id": "109000000000000001", "username": USERNAME, "acct": USERNAME}
        self.images: dict[str, tuple[bytes, str]] = {"photo.png": (PNG, "image/png")}
        self.media: dict[str, dict[str, Any]] = {}
        self.processing_polls = 0  # look-ups of a new upload answered 206 before it is ready
        self.rate_limit = 300
        self._remaining = itertools.count(self.rate_limit - 1, -1)
        self._keys: dict[tuple[str, str], dict[str, Any]] = {}  # (token, Idempotency-Key) → status
        self.live: dict[str, dict[str, Any]] = {}  # status id → the status, until it is deleted
        self.edits: dict[str, list[dict[str, Any]]] = {}  # status id → its StatusEdits (once edited)
        self.deleted: list[str] = []
        self._lost_answers = 0
        self._lost_for = 0.0
        self._ids = itertools.count(int(time.time() * 1000) << 16)
        self._lock = threading.Lock()
        self.route("POST", r"/api/v1/statuses", self._create_status)
        self.route("PUT", r"/api/v1/statuses/(?P<id>\w+)", self._update_status)
        self.route("DELETE", r"/api/v1/statuses/(?P<id>\w+)", self._delete_status)
        self.route("GET", r"/api/v1/statuses/(?P<id>\w+)", self._get_status)
        self.route("GET", r"/api/v1/statuses/(?P<id>\w+)/history", self._history)
        self.route("GET", r"/api/v1/accounts/verify_credentials", self._verify_credentials)
        self.route("GET", r"/api/v2/instance", self._instance)
        self.route("POST", r"/api/v2/media", self._upload)
        self.route("GET", r"/api/v1/media/(?P<id>\d+)", self._media)
        self.route("GET", r"/images/(?P<name>[^/]+)", self._image)

    def statuses(self) -> list[dict[str, Any]]:
        """The statuses made so far, in order (a repeated Idempotency-Key makes none)."""
        return [item for item in self.accepted if item["kind"] == "status"]

    def history(self, status_id: str) -> list[dict[str, Any]] | None:
        """The versions GET /api/v1/statuses/:id/history answers (oldest first); None once deleted."""
        with self._lock:
            status = self.live.get(status_id)
            if status is None:
                return None
            return [
                dict(e) for e in self.edits.get(status_id) or [self._snapshot(status, status["created_at"])]
            ]

    def image_url(self, name: str = "photo.png") -> str:
        """The URL of an image this emulator serves."""
        return f"{self.base_url}/images/{name}"

    def lose_next_answers(self, count: int = 1, *, seconds: float = 5.0) -> None:
        """Make the next ``count`` statuses, then hold each answer ``seconds`` (past the client's timeout)."""
        with self._lock:
            self._lost_answers, self._lost_for = count, seconds

    # --- handlers -------------------------------------------------------------------------------

    def _create_status(self, request: EmulatedRequest) -> Reply:
        if (denied := self._authorize(request)) is not None:
            return denied
        params = request.params()
        text = params.get("status")
        text = text if isinstance(text, str) else ""
        media_ids = params.get("media_ids") or params.get("media_ids[]") or []
        media_ids = [str(m) for m in (media_ids if isinstance(media_ids, list) else [media_ids])]
        key = request.headers.get("idempotency-key", "")
        with self._lock:
            if key and (made := self._keys.get((self.token, key))) is not None:
                return Reply(200, json=made, headers=self._rate_headers())  # PostStatusService's early return
        if not text.strip() and not media_ids:
            return self._invalid("Validation failed: Text can't be blank")
        if (length := status_length(text, self.url_length)) > self.max_characters:
            return self._invalid(f"Validation failed: Text character limit of {self.max_characters} exceeded")
        visibility = params.get("visibility") or "public"
        if visibility not in VISIBILITIES:
            return self._invalid(f"Validation failed: Visibility is not included in the list ({visibility})")
        if any(m not in self.media for m in media_ids):
            return self._invalid("Validation failed: media not found")
        if any(self.media[m]["polls_left"] > 0 for m in media_ids):
            return self._invalid(NOT_READY)
        with self._lock:
            status_id = str(next(self._ids))
            status = {
                "id": status_id,
                "created_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "url": f"https://{DOMAIN}/@{USERNAME}/{status_id}",
                "uri": f"https://{DOMAIN}/users/{USERNAME}/statuses/{status_id}",
                "visibility": visibility,
                "language": params.get("language"),
                "content": text,
                "spoiler_text": str(params.get("spoiler_text") or ""),
                "sensitive": bool(params.get("sensitive")),
                "edited_at": None,
                "media_attachments": [self.media[m]["entity"] for m in media_ids],
            }
            for m in media_ids:
                self.media[m]["status_id"] = status_id
            self.live[status_id] = status
            if key:
                self._keys[(self.token, key)] = status
            lost, self._lost_answers = self._lost_answers > 0, max(self._lost_answers - 1, 0)
        self.record(
            "status",
            id=status_id,
            text=text,
            length=length,
            visibility=visibility,
            language=params.get("language"),
            media_ids=media_ids,
            idempotency_key=key,
        )
        return Reply(200, json=status, headers=self._rate_headers(), delay=self._lost_for if lost else 0.0)

    def _update_status(self, request: EmulatedRequest) -> Reply:
        """PUT /api/v1/statuses/:id as UpdateStatusService does it (module docstring)."""
        if (denied := self._authorize(request)) is not None:
            return denied
        status_id = request.match["id"] if request.match else ""
        params = request.params()
        named = params.get("media_ids") or params.get("media_ids[]") or []
        media_ids = [str(m) for m in (named if isinstance(named, list) else [named])]
        with self._lock:
            status = self.live.get(status_id)
            if status is None:
                return Reply(404, json=NOT_FOUND, headers=self._rate_headers())
            if len(media_ids) > MAX_MEDIA:
                return self._invalid("Validation failed: You cannot attach more than 4 files")
            # The account's media, not attached elsewhere (validate_media!: status_id nil or this one).
            usable = [m for m in media_ids if self.media.get(m, {}).get("status_id") in (None, status_id)]
            if any(self.media[m]["polls_left"] > 0 for m in usable):
                return self._invalid(NOT_READY)
            text = params["status"] if isinstance(params.get("status"), str) else status["content"]
            if not text.strip() and not usable:
                return self._invalid("Validation failed: Text can't be blank")
            if status_length(text, self.url_length) > self.max_characters:
                return self._invalid(
                    f"Validation failed: Text character limit of {self.max_characters} exceeded"
                )
            changed = {
                "content": text,
                "spoiler_text": str(params.get("spoiler_text", status["spoiler_text"]) or ""),
                "sensitive": bool(params.get("sensitive", status["sensitive"])),
                "language": params.get("language") or status["language"],
                "media_attachments": [self.media[m]["entity"] for m in usable],
            }
            if all(status[k] == v for k, v in changed.items()):
                return Reply(200, json=dict(status), headers=self._rate_headers())  # NoChangesSubmitted
            versions = self.edits.setdefault(status_id, [])
            if not versions:  # create_previous_edit!: the original, as it was when posted
                versions.append(self._snapshot(status, status["created_at"]))
            for attachment in status["media_attachments"]:
                self.media[attachment["id"]].pop("status_id", None)
            status.update(changed, edited_at=_now())
            for m in usable:
                self.media[m]["status_id"] = status_id
            versions.append(self._snapshot(status, status["edited_at"]))
            answer = dict(status)
        self.record("edit", id=status_id, text=text, media_ids=usable, language=changed["language"])
        return Reply(200, json=answer, headers=self._rate_headers())

    def _delete_status(self, request: EmulatedRequest) -> Reply:
        """DELETE /api/v1/statuses/:id: the status with its source text; 404 once it is gone."""
        if (denied := self._authorize(request)) is not None:
            return denied
        status_id = request.match["id"] if request.match else ""
        with self._lock:
            status = self.live.pop(status_id, None)
            if status is None:
                return Reply(404, json=NOT_FOUND, headers=self._rate_headers())
            self.edits.pop(status_id, None)
            self.deleted.append(status_id)
        return Reply(200, json={**status, "text": status["content"]}, headers=self._rate_headers())

    def _get_status(self, request: EmulatedRequest) -> Reply:
        with self._lock:
            status = self.live.get(request.match["id"] if request.match else "")
            answer = dict(status) if status is not None else None
        if answer is None:
            return Reply(404, json=NOT_FOUND)
        return Reply(200, json=answer, headers=self._rate_headers())

    def _history(self, request: EmulatedRequest) -> Reply:
        """Every version, the original first (a never edited status: itself, as one version)."""
        versions = self.history(request.match["id"] if request.match else "")
        if versions is None:
            return Reply(404, json=NOT_FOUND)
        return Reply(200, json=versions, headers=self._rate_headers())

    def _verify_credentials(self, request: EmulatedRequest) -> Reply:
        if (denied := self._authorize(request)) is not None:
            return denied
        return Reply(200, json=dict(self.account), headers=self._rate_headers())

    def _instance(self, request: EmulatedRequest) -> Reply:
        # Public on a real instance: no token needed.
        configuration = {
            "statuses": {
                "max_characters": self.max_characters,
                "max_media_attachments": 4,
                "characters_reserved_per_url": self.url_length,
            }
        }
        return Reply(200, json={"domain": DOMAIN, "title": "Emulated", "configuration": configuration})

    def _upload(self, request: EmulatedRequest) -> Reply:
        if (denied := self._authorize(request)) is not None:
            return denied
        parts = _multipart(request)
        file, description = parts.get("file"), parts.get("description", (b"", ""))[0].decode()
        if file is None or not file[0]:
            return self._invalid("Validation failed: File can't be blank")
        if len(description) > 1500:
            return self._invalid("Validation failed: Description is too long (maximum is 1500 characters)")
        with self._lock:
            media_id = str(next(self._ids))
        ready = self.processing_polls <= 0
        entity = {
            "id": media_id,
            "type": "image",
            "url": f"https://{DOMAIN}/media/{media_id}.png" if ready else None,
            "preview_url": f"https://{DOMAIN}/media/{media_id}-small.png",
            "description": description or None,
        }
        self.media[media_id] = {"entity": entity, "polls_left": self.processing_polls, "bytes": file[0]}
        self.record("media", id=media_id, size=len(file[0]), content_type=file[1], description=description)
        return Reply(200 if ready else 202, json=entity)

    def _media(self, request: EmulatedRequest) -> Reply:
        if (denied := self._authorize(request)) is not None:
            return denied
        found = self.media.get(request.match["id"] if request.match else "")
        if found is None:
            return Reply(404, json={"error": "Record not found"})
        if found["polls_left"] > 0:
            found["polls_left"] -= 1
            if found["polls_left"] > 0:
                return Reply(206, json=found["entity"])
        found["entity"]["url"] = f"https://{DOMAIN}/media/{found['entity']['id']}.png"
        return Reply(200, json=found["entity"])

    def _image(self, request: EmulatedRequest) -> Reply:
        found = self.images.get(request.match["name"] if request.match else "")
        if found is None:
            return Reply(404, body=b"no such image")
        return Reply(200, body=found[0], headers={"Content-Type": found[1]})

    # --- helpers --------------------------------------------------------------------------------

    def _snapshot(self, status: dict[str, Any], at: str) -> dict[str, Any]:
        """A StatusEdit of the status as it is now (Status#build_snapshot)."""
        return {
            "content": status["content"],
            "spoiler_text": status["spoiler_text"],
            "sensitive": status["sensitive"],
            "created_at": at,
            "account": dict(self.account),
            "media_attachments": [dict(m) for m in status["media_attachments"]],
            "emojis": [],
        }

    def _authorize(self, request: EmulatedRequest) -> Reply | None:
        """None when the bearer token is the configured one, else Mastodon's 401."""
        if request.headers.get("authorization", "") == f"Bearer {self.token}":
            return None
        return Reply(401, json=INVALID_TOKEN, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})

    def _invalid(self, error: str) -> Reply:
        return Reply(422, json={"error": error}, headers=self._rate_headers())

    def _rate_headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(max(next(self._remaining), 0)),
            "X-RateLimit-Reset": rate_limit_reset(300),
        }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def rate_limit_reset(seconds: float) -> str:
    """An X-RateLimit-Reset value ``seconds`` from now, ISO 8601 as Mastodon writes it."""
    at = datetime.now(UTC) + timedelta(seconds=seconds)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Harness(HttpHarness):
    """The "mastodon" side of the shared conformance test: an emulator and targets pointing at it."""

    kind = "mastodon"
    TOKEN_ENV = "SYNDICATOR_TEST_MASTODON_TOKEN"  # the harness's own: a real token stays untouched
    expected: dict[str, type[Exception]] = {
        "server_error": OutcomeUnknown,  # 500: the instance may have made the status
        "unavailable": OutcomeUnknown,  # 503 came from the instance too; the key settles it
        "rate_limited": RateLimited,
        "timeout": OutcomeUnknown,
        "bad_token": TargetBroken,
        "forbidden": TargetBroken,
        "rejected_content": PermanentError,
    }

    def __init__(self, **emulator_options: Any) -> None:
        self.emulator = MastodonEmulator(**emulator_options)

    def __enter__(self) -> Harness:
        self.emulator.start()
        self.set_secret_env(self.TOKEN_ENV, self.emulator.token)
        return self

    def __exit__(self, *exc: object) -> None:
        self.emulator.stop()
        self.restore_secret_env()

    def make_target(self, name: str = "mastodon-test", **settings: Any):  # -> Target
        """A saved mastodon Target pointing at the emulator, with a 1 s timeout."""
        from syndicator.models import Target

        values = {"base_url": self.emulator.base_url, "timeout": 1, **settings}
        return Target.objects.create(name=name, kind="mastodon", settings=values, secret_env=self.TOKEN_ENV)

    def transient_reply(self) -> Reply:
        """Mastodon has no 5xx that means "nothing posted": its adapter calls a 503 on posting
        uncertain and settles it by re-sending under the same Idempotency-Key (so the fault suite
        fails a key once)."""
        return Reply(503, json={"error": "Service Unavailable"})

    outage_settles_hangs = True  # a 5xx or a hang on posting is re-sent under its Idempotency-Key
    settled_note = "resent_with_idempotency_key"
    outage_lookups = 3  # its 502, 503 and hang (the 429 is a plain wait)
    flaky_is_uncertain = True

    def script_outage(self, hang: float) -> None:
        # Only first sends fail; the re-send that settles an uncertain one must get through (one
        # look-up per uncertain delivery), whichever order the worker takes them in.
        limited = {
            "X-RateLimit-Limit": "300",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": rate_limit_reset(2),
        }
        replies = [
            Reply(502, body=b"<html><title>502 Bad Gateway</title></html>"),
            Reply(503, json={"error": "Service Unavailable"}),
            Reply(429, json={"error": "Too many requests"}, headers=limited),
            Reply(504, body=b"", delay=hang),  # hangs, no status made
        ]
        self.fail_first_tries(
            replies,
            lambda r: r.headers.get("idempotency-key", "") if r.path == "/api/v1/statuses" else None,
        )

    def secrets(self) -> list[str]:
        return [TOKEN]

    def sent(self) -> list[dict[str, Any]]:
        """The statuses the emulator made, each with "text", "id" and "media_ids"."""
        return self.emulator.statuses()

    def post_text(self, external_id: str) -> str | None:
        """The status's text now; None once deleted (or never made)."""
        status = self.emulator.live.get(external_id)
        return None if status is None else str(status["content"])

    def edit_count(self, external_id: str) -> int:
        """How many edits changed the status (its history holds one version more: the original)."""
        versions = self.emulator.history(external_id)
        return len(versions) - 1 if versions else 0

    def inject(self, mode: str) -> None:
        """Make the next request fail the way ``mode`` names (see ``expected``)."""
        faults: dict[str, dict[str, Any]] = {
            "server_error": {
                "status": 500,
                "json": {"error": "We're sorry, but something went wrong on our end."},
            },
            "unavailable": {
                "status": 503,
                "body": b"<html><h1>503 Service Temporarily Unavailable</h1></html>",
            },
            "rate_limited": {
                "status": 429,
                "json": {"error": "Too many requests"},
                "headers": {
                    "X-RateLimit-Limit": "300",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": rate_limit_reset(3),
                },
            },
            "bad_token": {"status": 401, "json": INVALID_TOKEN},
            "forbidden": {"status": 403, "json": {"error": "Your login is currently disabled"}},
            "rejected_content": {
                "status": 422,
                "json": {"error": "Validation failed: Text character limit of 500 exceeded"},
            },
        }
        if mode == "timeout":
            self.emulator.hang_next(seconds=5)
        elif mode in faults:
            self.emulator.fail_next(**faults[mode])
        else:
            raise ValueError(f"unknown mode {mode!r}; modes: {', '.join(self.expected)}")
