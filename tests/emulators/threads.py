"""A loopback emulator of Meta's Threads API (publishing), and the conformance Harness for "threads".

    with ThreadsEmulator() as api:
        api.base_url                          # point a target's base_url here
        api.fail_step_next("publish", json=threads_error(2, "..."))   # only that step fails
        api.lose_next_answers(step="publish")  # published, the answer never arrives
        api.posts()                            # what was published, oldest first

Routes, under a version prefix (/v1.0): POST /{user}/threads (a media container), POST
/{user}/threads_publish?creation_id=…, GET /{id}?fields=… (a container's status or a post),
GET /{user}/threads (the user's posts, newest first), GET /{user}/threads_publishing_limit,
GET /me and DELETE /{media-id}. It checks requests as the service does
(docs/threads-api.md): an access token (parameter or Bearer header) that belongs
to the user in the path; TEXT needs ``text``, IMAGE an ``image_url``; text ≤ 500 characters
(emojis as UTF-8 bytes); at most 5 links; a container that exists, is the user's, is FINISHED,
was not published before and is younger than 24 hours; 250 posts per 24 hours. Publishing a
container twice is refused (the real answer is not documented: docs, "not confirmed").
Errors have the Graph shape {"error": {message, type, code, error_subcode, fbtrace_id}}.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
import unicodedata
from typing import Any

from syndicator.errors import OutcomeUnknown, PermanentError, RateLimited, TargetBroken, TransientError
from tests.emulators.base import EmulatedRequest, Emulator, HttpHarness, Reply

USER_ID = "17841401234567890"
USERNAME = "nejat_society"
TOKEN = "THAAemuThreadsToken9fQ2xLpV"
TEXT_MAX = 500
LINKS_MAX = 5
CONTAINER_TTL = 24 * 3600.0
QUOTA_TOTAL, QUOTA_DURATION = 250, 86400
# "The Delete endpoint has a rate limit of 100 deletes per day per account" (Meta, "Delete Posts");
# the error answered past it is not documented: the emulator answers code 4 (throttling).
DELETES_PER_DAY = 100
STEPS = ("container", "publish", "status", "list", "limit", "me", "delete")
_URL = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)
_trace_ids = itertools.count(1)


def threads_error(
    code: int, message: str, *, subcode: int | None = None, type: str = "OAuthException"
) -> dict:
    """A Threads (Graph-shaped) error body."""
    error: dict[str, Any] = {"message": message, "type": type, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    error["fbtrace_id"] = f"AemuThreads{next(_trace_ids):05d}"
    return {"error": error}


def threads_length(text: str) -> int:
    """Characters as Threads counts them: an emoji (a symbol outside the BMP, or So) as its UTF-8 bytes."""
    return sum(len(ch.encode()) if ord(ch) > 0xFFFF or unicodedata.category(ch) == "So" else 1 for ch in text)


INVALID_TOKEN = threads_error(190, "Error validating access token: Session has expired.", subcode=463)
NOT_FOUND_SUBCODE = 4279009


def _not_found(object_id: str) -> dict[str, Any]:
    return threads_error(
        24, f"Media Not Found: The media with id {object_id} cannot be found", subcode=NOT_FOUND_SUBCODE
    )


class ThreadsEmulator(Emulator):
    """One Threads profile's publishing endpoints on 127.0.0.1."""

    def __init__(self, *, user_id: str = USER_ID, token: str = TOKEN, username: str = USERNAME) -> None:
        super().__init__()
        self.user_id, self.token, self.username = user_id, token, username
        self.tokens: dict[str, str] = {token: user_id}  # valid token → its user
        self.containers: dict[str, dict[str, Any]] = {}
        self.media: dict[str, dict[str, Any]] = {}
        self.deleted: list[str] = []
        self.delete_times: list[float] = []  # when each delete was done, for the 100-a-day limit
        self.processing_polls = 0  # status reads an IMAGE container answers IN_PROGRESS
        self.quota_total = QUOTA_TOTAL
        self.now = time.time  # a test may replace the clock (container expiry, the 24 h window)
        self._step_faults: dict[str, list[Reply]] = {step: [] for step in STEPS}
        self._lost: dict[str, list[float]] = {step: [] for step in STEPS}
        self._ids = itertools.count(17890000000000000 + int(time.time()) % 100000 * 1000)
        self._lock = threading.Lock()
        v, obj = r"/v\d+\.\d+", r"(?P<id>[\w]+)"
        self.route("POST", rf"{v}/{obj}/threads", self._create_container)
        self.route("POST", rf"{v}/{obj}/threads_publish", self._publish)
        self.route("GET", rf"{v}/{obj}/threads_publishing_limit", self._publishing_limit)
        self.route("GET", rf"{v}/{obj}/threads", self._list)
        self.route("GET", rf"{v}/me", self._me)
        self.route("GET", rf"{v}/{obj}", self._get_object)
        self.route("DELETE", rf"{v}/{obj}", self._delete)

    # --- test controls --------------------------------------------------------------------------

    def posts(self) -> list[dict[str, Any]]:
        """The posts published so far, oldest first (a container published twice counts once)."""
        return [item for item in self.accepted if item["kind"] == "post"]

    def fail_step_next(
        self,
        step: str,
        count: int = 1,
        *,
        status: int = 400,
        json: Any = None,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        """The next ``count`` requests of one step fail with this reply; the others go through."""
        body = json if json is not None else threads_error(2, "Service temporarily unavailable", type="")
        with self._lock:
            self._step_faults[step].extend(
                Reply(status=status, json=body, headers=dict(headers or {}), delay=delay)
                for _ in range(count)
            )

    def lose_next_answers(self, count: int = 1, *, seconds: float = 5.0, step: str = "publish") -> None:
        """The next ``count`` requests of ``step`` are carried out, and their answer held ``seconds``."""
        with self._lock:
            self._lost[step].extend([seconds] * count)

    def revoke(self, token: str) -> None:
        """The token stops working (code 190)."""
        with self._lock:
            self.tokens.pop(token, None)

    def add_user(self, user_id: str, token: str) -> None:
        """Another profile with its own token (its containers are not this user's)."""
        with self._lock:
            self.tokens[token] = user_id

    # --- routes ---------------------------------------------------------------------------------

    def _create_container(self, req: EmulatedRequest) -> Reply:
        if (denied := self._begin(req, "container", owner=req.match["id"] if req.match else "")) is not None:
            return denied
        user, params = self._user(req), req.params()
        media_type = str(params.get("media_type") or "")
        text = str(params.get("text") or "")
        if media_type not in ("TEXT", "IMAGE"):
            return _refuse(
                f"(#100) Param media_type must be one of TEXT, IMAGE (emulated), got {media_type!r}"
            )
        if media_type == "TEXT" and not text.strip():
            return _refuse("(#100) The parameter text is required for media_type TEXT")
        image_url = str(params.get("image_url") or "")
        if media_type == "IMAGE" and not image_url.lower().startswith(("http://", "https://")):
            return _refuse("(#100) The parameter image_url is required for media_type IMAGE")
        if threads_length(text) > TEXT_MAX:
            return _refuse(f"(#100) Param text must be at most {TEXT_MAX} characters long", subcode=2207052)
        link = str(params.get("link_attachment") or "")
        if link and (media_type != "TEXT" or not link.lower().startswith(("http://", "https://"))):
            return _refuse("(#100) link_attachment must be an http(s) URL on a TEXT post")
        if len(set(_URL.findall(text)) | ({link} if link else set())) > LINKS_MAX:
            return _refuse("THREADS_API__LINK_LIMIT_EXCEEDED: a post may have at most 5 links")
        with self._lock:
            container_id = str(next(self._ids))
            self.containers[container_id] = {
                "id": container_id,
                "owner": user,
                "media_type": media_type,
                "text": text,
                "image_url": image_url,
                "link_attachment": link,
                "created_at": self.now(),
                "polls_left": self.processing_polls if media_type == "IMAGE" else 0,
                "media_id": "",
            }
        return self._answer("container", Reply(200, json={"id": container_id}))

    def _publish(self, req: EmulatedRequest) -> Reply:
        if (denied := self._begin(req, "publish", owner=req.match["id"] if req.match else "")) is not None:
            return denied
        user, creation_id = self._user(req), str(req.params().get("creation_id") or "")
        if not creation_id:
            return _refuse("(#100) The parameter creation_id is required")
        with self._lock:
            container = self.containers.get(creation_id)
            if container is None or container["owner"] != user:
                return Reply(400, json=_not_found(creation_id))
            state = self._status(container)
            if state == "PUBLISHED":
                return _refuse(f"(#100) The media container {creation_id} has already been published")
            if state != "FINISHED":
                return _refuse(
                    f"(#9007) The media container {creation_id} is not ready to be published ({state})",
                    code=9007,
                )
            since = self.now() - QUOTA_DURATION
            if (
                sum(1 for m in self.media.values() if m["owner"] == user and m["created_at"] > since)
                >= self.quota_total
            ):
                return Reply(400, json=threads_error(4, "(#4) The user has reached the publishing limit"))
            media_id = str(next(self._ids))
            shortcode = f"C{int(media_id) % 10**9:09d}"
            post = {
                "id": media_id,
                "owner": user,
                "text": container["text"],
                "created_at": self.now(),
                "permalink": f"https://www.threads.net/@{self.username}/post/{shortcode}",
                "shortcode": shortcode,
                "media_type": "TEXT_POST" if container["media_type"] == "TEXT" else "IMAGE",
                "link_attachment_url": container["link_attachment"],
                "creation_id": creation_id,
            }
            self.media[media_id] = post
            container["media_id"] = media_id
        self.record(
            "post",
            id=media_id,
            text=post["text"],
            creation_id=creation_id,
            permalink=post["permalink"],
            link_attachment=post["link_attachment_url"],
            image_url=container["image_url"],
        )
        return self._answer("publish", Reply(200, json={"id": media_id}))

    def _get_object(self, req: EmulatedRequest) -> Reply:
        object_id = req.match["id"] if req.match else ""
        step = "status" if object_id in self.containers else "list"
        if (denied := self._begin(req, step)) is not None:
            return denied
        user, fields = self._user(req), _fields(req, "id")
        with self._lock:
            if (container := self.containers.get(object_id)) is not None and container["owner"] == user:
                state = self._status(container, poll=True)
                found = {"id": object_id, "status": state}
                if state == "ERROR":
                    found["error_message"] = "UNKNOWN"
            elif (post := self.media.get(object_id)) is not None and post["owner"] == user:
                found = self._media_fields(post)
            else:
                return Reply(400, json=_not_found(object_id))
        return Reply(200, json={key: value for key, value in found.items() if key in fields or key == "id"})

    def _list(self, req: EmulatedRequest) -> Reply:
        if (denied := self._begin(req, "list", owner=req.match["id"] if req.match else "")) is not None:
            return denied
        user, fields, params = self._user(req), _fields(req, "id"), req.params()
        limit = min(int(params.get("limit") or 25), 100)
        since = float(params.get("since") or 0)
        with self._lock:
            mine = [p for p in self.media.values() if p["owner"] == user and p["created_at"] >= since]
        newest = sorted(mine, key=lambda p: p["created_at"], reverse=True)[:limit]
        data = [{k: v for k, v in self._media_fields(p).items() if k in fields or k == "id"} for p in newest]
        return Reply(200, json={"data": data, "paging": {}})

    def _publishing_limit(self, req: EmulatedRequest) -> Reply:
        if (denied := self._begin(req, "limit", owner=req.match["id"] if req.match else "")) is not None:
            return denied
        user, since = self._user(req), self.now() - QUOTA_DURATION
        with self._lock:
            usage = sum(1 for m in self.media.values() if m["owner"] == user and m["created_at"] > since)
        config = {"quota_total": self.quota_total, "quota_duration": QUOTA_DURATION}
        return Reply(200, json={"data": [{"quota_usage": usage, "config": config}]})

    def _me(self, req: EmulatedRequest) -> Reply:
        if (denied := self._begin(req, "me")) is not None:
            return denied
        return Reply(200, json={"id": self._user(req), "username": self.username})

    def _delete(self, req: EmulatedRequest) -> Reply:
        if (denied := self._begin(req, "delete")) is not None:
            return denied
        media_id = req.match["id"] if req.match else ""
        with self._lock:
            post = self.media.get(media_id)
            if post is None or post["owner"] != self._user(req):
                return Reply(400, json=_not_found(media_id))
            since = self.now() - QUOTA_DURATION
            if sum(1 for at in self.delete_times if at > since) >= DELETES_PER_DAY:
                return Reply(400, json=threads_error(4, "(#4) The user has reached the delete limit"))
            del self.media[media_id]
            self.deleted.append(media_id)
            self.delete_times.append(self.now())
        return Reply(200, json={"success": True, "deleted_id": media_id})

    # --- helpers --------------------------------------------------------------------------------

    def _begin(self, req: EmulatedRequest, step: str, *, owner: str | None = None) -> Reply | None:
        """A scripted fault of this step, else the token check (and that ``owner`` is the token's user)."""
        with self._lock:
            if self._step_faults[step]:
                return self._step_faults[step].pop(0)
            user = self.tokens.get(_token(req))
        if not _token(req):
            return Reply(
                400, json=threads_error(2500, "An active access token must be used to query information.")
            )
        if user is None:
            return Reply(400, json=INVALID_TOKEN)
        if owner is not None and owner not in ("me", user):
            return Reply(400, json=_not_found(owner))
        return None

    def _user(self, req: EmulatedRequest) -> str:
        return self.tokens.get(_token(req), "")

    def _answer(self, step: str, reply: Reply) -> Reply:
        """The reply, held past the client's timeout when this step's answer is to be lost."""
        with self._lock:
            delay = self._lost[step].pop(0) if self._lost[step] else 0.0
        return Reply(reply.status, json=reply.json, headers=reply.headers, delay=delay) if delay else reply

    def _status(self, container: dict[str, Any], *, poll: bool = False) -> str:
        if container["media_id"]:
            return "PUBLISHED"
        if self.now() - container["created_at"] > CONTAINER_TTL:
            return "EXPIRED"
        if container["polls_left"] > 0:
            if poll:
                container["polls_left"] -= 1
            return "IN_PROGRESS"
        return "FINISHED"

    def _media_fields(self, post: dict[str, Any]) -> dict[str, Any]:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(post["created_at"]))
        return {
            "id": post["id"],
            "text": post["text"],
            "permalink": post["permalink"],
            "timestamp": stamp,
            "username": self.username,
            "shortcode": post["shortcode"],
            "media_type": post["media_type"],
            "link_attachment_url": post["link_attachment_url"],
        }


def _token(req: EmulatedRequest) -> str:
    scheme, _, value = req.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return str(req.params().get("access_token") or "")


def _fields(req: EmulatedRequest, default: str) -> set[str]:
    return {f.strip() for f in str(req.params().get("fields") or default).split(",") if f.strip()}


def _refuse(message: str, *, code: int = 100, subcode: int | None = None) -> Reply:
    return Reply(400, json=threads_error(code, message, subcode=subcode))


# --- the conformance harness ----------------------------------------------------------------------

# mode → (the step it hits, or "" for the next request whatever it is; the reply).
FAULTS: dict[str, tuple[str, dict[str, Any]]] = {
    # A 500 on publishing: Threads may have published before failing, so it is uncertain.
    "server_error": (
        "publish",
        {"status": 500, "json": threads_error(1, "An unknown error occurred", type="")},
    ),
    "rate_limited": ("", {"status": 400, "json": threads_error(4, "(#4) Application request limit reached")}),
    "bad_token": ("", {"status": 400, "json": INVALID_TOKEN}),
    "forbidden": (
        "",
        {"status": 400, "json": threads_error(10, "(#10) Application does not have permission")},
    ),
    "rejected_content": (
        "container",
        {"status": 400, "json": threads_error(100, "(#100) Invalid parameter")},
    ),
    "transient": (
        "publish",
        {"status": 500, "json": threads_error(2, "Service temporarily unavailable", type="")},
    ),
}


class Harness(HttpHarness):
    """The Threads target against a ThreadsEmulator, for the shared conformance test."""

    kind = "threads"
    TOKEN_ENV = "SYNDICATOR_TEST_THREADS_TOKEN"
    expected: dict[str, type[Exception]] = {
        "server_error": OutcomeUnknown,
        "rate_limited": RateLimited,
        "timeout": OutcomeUnknown,  # the publish call hangs: the post may be out
        "bad_token": TargetBroken,
        "forbidden": TargetBroken,
        "rejected_content": PermanentError,
        "transient": TransientError,  # code 2 on publishing: nothing was done, the container is kept
    }

    def __init__(self, **emulator_options: Any) -> None:
        self.emulator = ThreadsEmulator(**emulator_options)

    def __enter__(self) -> Harness:
        self.emulator.start()
        self.set_secret_env(self.TOKEN_ENV, self.emulator.token)
        return self

    def __exit__(self, *exc: object) -> None:
        self.emulator.stop()
        self.restore_secret_env()

    def make_target(self, name: str = "threads-test", **settings: Any) -> Any:
        """A saved threads Target publishing as the emulator's profile, with a 1 s timeout."""
        from syndicator.models import Target

        values = {
            "base_url": f"{self.emulator.base_url}/v1.0",
            "user_id": self.emulator.user_id,
            "timeout": 1,
            **settings,
        }
        return Target.objects.create(name=name, kind="threads", settings=values, secret_env=self.TOKEN_ENV)

    def sent(self) -> list[dict[str, Any]]:
        """The published posts, oldest first; each has "text", "id" (the media id) and "creation_id"."""
        return [dict(post) for post in self.emulator.posts()]

    # A 5xx or a hang on publishing is uncertain, and settled through the recorded container:
    # published then if it never was, found if it was (every delivery of the outage ends sent).
    outage_settles_hangs = True
    not_found_note = "is PUBLISHED, but its post is not among"

    def secrets(self) -> list[str]:
        return [self.emulator.token]

    def post_text(self, external_id: str) -> str | None:
        """The post's text while it is published; None once deleted."""
        post = self.emulator.media.get(external_id)
        return None if post is None else str(post["text"])

    def edit_count(self, external_id: str) -> int:
        """0: Threads posts cannot be edited through the API."""
        return 0

    def transient_reply(self) -> Reply:
        """ "Failed, nothing published, try again": code 2 on either step; the retry publishes the
        recorded container or makes one."""
        return Reply(500, json=threads_error(2, "Service temporarily unavailable", type=""))

    def script_outage(self, hang: float) -> None:
        """Two 5xx, a throttling error (code 4: Threads gives no wait, so the fallback applies), a
        hang: each on the first publish of a container, the step that can leave a post uncertain
        (the publish that settles one must get through)."""
        unknown = threads_error(1, "An unknown error occurred", type="")
        replies = [
            Reply(500, json=unknown),
            Reply(500, json=unknown),
            Reply(400, json=threads_error(4, "(#4) Application request limit reached")),
            Reply(504, json={}, delay=hang),  # hangs; nothing published
        ]
        self.fail_first_tries(
            replies,
            lambda r: (
                str(r.params().get("creation_id") or "")
                if r.method == "POST" and r.path.endswith("/threads_publish")
                else None
            ),
        )

    def inject(self, mode: str) -> None:
        """Make the step of ``mode`` fail (see ``expected``); "timeout" hangs the publish call."""
        if mode == "timeout":
            self.emulator.fail_step_next("publish", status=504, json={}, delay=5)
        elif mode in FAULTS:
            step, reply = FAULTS[mode]
            if step:
                self.emulator.fail_step_next(step, **reply)
            else:
                self.emulator.fail_next(**reply)
        else:
            raise ValueError(f"unknown mode {mode!r}; modes: {', '.join(self.expected)}")
