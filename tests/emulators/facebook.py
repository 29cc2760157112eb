"""A loopback emulator of the Facebook Graph API (Page publishing), and the conformance Harness.

    with GraphEmulator(page_id="104", token="EAAB-page") as graph:
        ...                                        # point a target's base_url at graph.base_url
        graph.accepted                             # [{"kind": "post", "page_id", "text", "link", ...}]
        graph.fail_next(json=graph_error(368, "..."))   # any Graph error, once
        graph.fail_permalink_next()                # only the permalink lookup fails
        graph.lose_answer_next()                   # the post is made, the answer is a bare 502
        graph.post(post_id)                        # a post as it is now; None once deleted

What it checks, like Graph: a version prefix (/v25.0/…), the access token (form field
``access_token``, or an ``Authorization: Bearer``/``OAuth`` header), which Page a token may post
to, ``message`` or ``link`` on /feed and ``url`` on /photos, and the same message twice on one
Page (code 506). Edits (POST /{post-id} ``message``) and deletes (DELETE /{post-id}, DELETE
/{photo-id}) need the token of the post's Page; an object that is not there (never made, or
deleted) answers code 100, subcode 33. A photo post's message is its photo's caption; deleting the
post leaves the photo (the pessimistic reading: what Graph does is not documented), deleting the
photo deletes its post. Error bodies have Graph's shape: {"error": {message, type, code,
error_subcode, fbtrace_id}}.
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Any

from syndicator.errors import OutcomeUnknown, PermanentError, RateLimited, TargetBroken, TransientError
from tests.emulators.base import EmulatedRequest, Emulator, HttpHarness, Reply

PAGE_ID = "104729118273645"
PAGE_NAME = "Nejat Society"
TOKEN = "EAAGemuPageTokenZx81vQ0kLmNp"
VERSIONED = r"/v\d+\.\d+"

_trace_ids = itertools.count(1)


def graph_error(
    code: int,
    message: str,
    *,
    subcode: int | None = None,
    type: str = "OAuthException",
    is_transient: bool | None = None,
) -> dict[str, Any]:
    """A Graph API error body."""
    error: dict[str, Any] = {"message": message, "type": type, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    if is_transient is not None:
        error["is_transient"] = is_transient
    error["fbtrace_id"] = f"AemuTrace{next(_trace_ids):05d}"
    return {"error": error}


def buc_usage(page_id: str, minutes: float) -> dict[str, str]:
    """An X-Business-Use-Case-Usage header saying the Page regains access in ``minutes``."""
    usage = {"type": "pages", "call_count": 100, "total_cputime": 9, "total_time": 14}
    value = {page_id: [{**usage, "estimated_time_to_regain_access": minutes}]}
    return {"X-Business-Use-Case-Usage": json.dumps(value)}


INVALID_TOKEN = (
    "Error validating access token: The session has been invalidated because the user changed "
    "their password or Facebook has changed the session for security reasons."
)


def _fail(status: int, body: dict[str, Any]) -> Reply:
    return Reply(status=status, json=body)


class GraphEmulator(Emulator):
    """Graph API for Pages on 127.0.0.1: /feed, /photos, /{post-id}, /me, /{page-id}/feed."""

    def __init__(self, *, page_id: str = PAGE_ID, token: str = TOKEN, page_name: str = PAGE_NAME) -> None:
        super().__init__()
        self.page_id = page_id
        self.pages: dict[str, str] = {}  # page id → name
        self.tokens: dict[str, str] = {}  # valid Page token → the page it belongs to
        self.posts: dict[str, list[dict[str, Any]]] = {}  # page id → its posts, oldest first
        self.photos: dict[str, dict[str, Any]] = {}  # photo id → {"page_id", "post_id", "url"}
        self.edits: dict[str, int] = {}  # post id → edits that changed its message
        self.deleted: list[str] = []  # ids of the objects deleted, in order
        self._ids = itertools.count(7001)
        self._permalink_faults: list[Reply] = []
        self._lost_answers: list[int] = []  # statuses of the next answers to lose
        self.add_page(page_id, page_name, token)
        page = r"(?P<page>[\w.-]+)"
        self.route("POST", rf"{VERSIONED}/{page}/feed", self._post_feed)
        self.route("POST", rf"{VERSIONED}/{page}/photos", self._post_photo)
        self.route("GET", rf"{VERSIONED}/me", self._me)
        self.route("GET", rf"{VERSIONED}/{page}/feed", self._list_feed)
        self.route("GET", rf"{VERSIONED}/(?P<post>\d+_\d+)", self._get_post)
        self.route("POST", rf"{VERSIONED}/(?P<post>\d+_\d+)", self._edit_post)
        self.route("DELETE", rf"{VERSIONED}/(?P<post>\d+_\d+)", self._delete_post)
        self.route("DELETE", rf"{VERSIONED}/(?P<photo>\d+)", self._delete_photo)
        for method in ("GET", "POST", "DELETE"):  # anything else, the way Graph answers it
            self.route(method, r".*", self._unknown_path)

    # --- test controls --------------------------------------------------------------------------

    def add_page(self, page_id: str, name: str, token: str) -> None:
        """Another Page, with its own valid token."""
        with self._lock:
            self.pages[page_id] = name
            self.tokens[token] = page_id

    def revoke(self, token: str) -> None:
        """The token stops working (answers code 190, subcode 460, like a changed password)."""
        with self._lock:
            self.tokens.pop(token, None)

    def fail_permalink_next(
        self, count: int = 1, *, status: int = 500, json: Any = None, delay: float = 0.0
    ) -> None:
        """The next `count` GET /{post-id} lookups fail (default: code 2, service error)."""
        body = json if json is not None else graph_error(2, "Service temporarily unavailable", type="")
        with self._lock:
            self._permalink_faults.extend(Reply(status=status, json=body, delay=delay) for _ in range(count))

    def lose_answer_next(self, count: int = 1, *, status: int = 502) -> None:
        """The next `count` posts are made, but their answer is a bare 5xx (lost on the way back)."""
        with self._lock:
            self._lost_answers.extend([status] * count)

    def post(self, post_id: str) -> dict[str, Any] | None:
        """The post with this id as it is now, or None (never made, or deleted)."""
        with self._lock:
            found = [p for posts in self.posts.values() for p in posts if p["id"] == post_id]
        return dict(found[0]) if found else None

    def dispatch(self, request: EmulatedRequest) -> Reply:
        """As Emulator.dispatch, then replace a successful POST's answer if one is to be lost."""
        reply = super().dispatch(request)
        with self._lock:
            if request.method == "POST" and reply.status == 200 and self._lost_answers:
                return Reply(status=self._lost_answers.pop(0), body=b"Bad Gateway")
        return reply

    # --- routes ---------------------------------------------------------------------------------

    def _post_feed(self, req: EmulatedRequest) -> Reply:
        page = req.match["page"] if req.match else ""
        if denied := self._authorize(req, page):
            return denied
        form = req.form
        message, link = form.get("message", ""), form.get("link", "")
        if not message and not link:
            return _fail(400, graph_error(100, "(#100) Invalid parameter: missing message or link"))
        if link and not link.startswith(("http://", "https://")):
            return _fail(400, graph_error(100, "(#100) Invalid parameter: link is not a URL"))
        with self._lock:
            if message and any(p["message"] == message for p in self.posts.get(page, [])):
                return _fail(400, graph_error(506, "(#506) Duplicate status message"))
        post = self._publish(page, message, link=link)
        self.record("post", page_id=page, text=message, link=link, post_id=post["id"], photo=False)
        return Reply(json={"id": post["id"]})

    def _post_photo(self, req: EmulatedRequest) -> Reply:
        page = req.match["page"] if req.match else ""
        if denied := self._authorize(req, page):
            return denied
        form = req.form
        url, caption = form.get("url", ""), form.get("caption", "")
        if not url:
            return _fail(400, graph_error(324, "(#324) Requires upload file"))
        if not url.startswith(("http://", "https://")):
            return _fail(400, graph_error(100, "(#100) Invalid parameter: url is not a URL"))
        post = self._publish(page, caption, image_url=url)
        photo_id = str(next(self._ids))
        with self._lock:
            self.photos[photo_id] = {"page_id": page, "post_id": post["id"], "url": url}
            post["photo_id"] = photo_id
        self.record(
            "post",
            page_id=page,
            text=caption,
            image_url=url,
            post_id=post["id"],
            photo_id=photo_id,
            photo=True,
        )
        return Reply(json={"id": photo_id, "post_id": post["id"]})

    def _me(self, req: EmulatedRequest) -> Reply:
        token = _token(req)
        with self._lock:
            page = self.tokens.get(token)
            name = self.pages.get(page or "", "")
        if not token:
            return _fail(400, graph_error(2500, "An active access token must be used to query information."))
        if page is None:
            return _fail(400, graph_error(190, INVALID_TOKEN, subcode=460))
        return Reply(json={"id": page, "name": name})

    def _list_feed(self, req: EmulatedRequest) -> Reply:
        page = req.match["page"] if req.match else ""
        if denied := self._authorize(req, page):
            return denied
        limit = int(req.form.get("limit") or 25)
        with self._lock:
            newest = list(reversed(self.posts.get(page, [])))[:limit]
        data = [{key: p[key] for key in ("id", "message", "permalink_url", "created_time")} for p in newest]
        return Reply(json={"data": data, "paging": {}})

    def _get_post(self, req: EmulatedRequest) -> Reply:
        post_id = req.match["post"] if req.match else ""
        with self._lock:
            fault = self._permalink_faults.pop(0) if self._permalink_faults else None
        if fault is not None:
            return fault
        if denied := self._authorize(req, None):
            return denied
        with self._lock:
            found = [p for posts in self.posts.values() for p in posts if p["id"] == post_id]
        if not found:
            return _fail(400, _no_object(post_id))
        return Reply(json={"id": post_id, "permalink_url": found[0]["permalink_url"]})

    def _edit_post(self, req: EmulatedRequest) -> Reply:
        """POST /{post-id} with ``message``: {"success": true}; the same message again changes nothing."""
        post_id = req.match["post"] if req.match else ""
        page = post_id.split("_")[0]
        if denied := self._authorize(req, page):
            return denied
        form = req.form
        if "message" not in form:
            return _fail(
                400, graph_error(100, "(#100) Parameters do not match any fields that can be updated")
            )
        with self._lock:
            post = next((p for p in self.posts.get(page, []) if p["id"] == post_id), None)
            if post is None:
                return _fail(400, _no_object(post_id))
            if post["message"] != form["message"]:
                post["message"] = form["message"]
                self.edits[post_id] = self.edits.get(post_id, 0) + 1
        self.record("edit", page_id=page, post_id=post_id, text=form["message"])
        return Reply(json={"success": True})

    def _delete_post(self, req: EmulatedRequest) -> Reply:
        """DELETE /{post-id}: {"success": true}; a post that is not there is code 100/33."""
        post_id = req.match["post"] if req.match else ""
        page = post_id.split("_")[0]
        if denied := self._authorize(req, page):
            return denied
        with self._lock:
            posts = self.posts.get(page, [])
            if not any(p["id"] == post_id for p in posts):
                return _fail(400, _no_object(post_id))
            self.posts[page] = [p for p in posts if p["id"] != post_id]
            self.deleted.append(post_id)
        return Reply(json={"success": True})

    def _delete_photo(self, req: EmulatedRequest) -> Reply:
        """DELETE /{photo-id}: the photo and the post it made."""
        photo_id = req.match["photo"] if req.match else ""
        with self._lock:
            photo = self.photos.get(photo_id)
        if photo is None:
            if denied := self._authorize(req, None):
                return denied
            return _fail(400, _no_object(photo_id))
        if denied := self._authorize(req, photo["page_id"]):
            return denied
        with self._lock:
            self.photos.pop(photo_id, None)
            page = photo["page_id"]
            self.posts[page] = [p for p in self.posts.get(page, []) if p["id"] != photo["post_id"]]
            self.deleted.append(photo_id)
        return Reply(json={"success": True})

    def _unknown_path(self, req: EmulatedRequest) -> Reply:
        parts = req.path.strip("/").split("/")
        if not parts[0].startswith("v") or len(parts) < 2:  # no version prefix
            return _fail(400, graph_error(2500, f"Unknown path components: {req.path}"))
        return _fail(400, _no_object("/".join(parts[1:])))

    # --- helpers --------------------------------------------------------------------------------

    def _authorize(self, req: EmulatedRequest, page: str | None) -> Reply | None:
        """None if the request's token is valid (and, for a page, belongs to it); else Graph's error."""
        token = _token(req)
        with self._lock:
            owner = self.tokens.get(token)
            known = page is None or page in self.pages
        if not token:
            return _fail(400, graph_error(2500, "An active access token must be used to query information."))
        if owner is None:
            return _fail(400, graph_error(190, INVALID_TOKEN, subcode=460))
        if not known:
            return _fail(400, _no_object(page or ""))
        if page is not None and owner != page:
            message = "(#200) If posting to a page, requires pages_read_engagement and pages_manage_posts"
            return _fail(403, graph_error(200, message))
        return None

    def _publish(self, page: str, message: str, **extra: str) -> dict[str, Any]:
        number = next(self._ids)
        post = {
            "id": f"{page}_{number}",
            "message": message,
            "permalink_url": f"https://www.facebook.com/{page}/posts/{number}",
            "created_time": f"2026-01-01T00:00:{number % 60:02d}+0000",
            **extra,
        }
        with self._lock:
            self.posts.setdefault(page, []).append(post)
        return post


def _token(req: EmulatedRequest) -> str:
    """The access token: an Authorization header (Bearer or OAuth), else the access_token field."""
    scheme, _, value = req.headers.get("authorization", "").partition(" ")
    if scheme.lower() in ("bearer", "oauth") and value.strip():
        return value.strip()
    return req.form.get("access_token", "")


def _no_object(object_id: str) -> dict[str, Any]:
    message = (
        f"Unsupported request. Object with ID '{object_id}' does not exist, cannot be loaded due to "
        "missing permissions, or does not support this operation."
    )
    return graph_error(100, message, subcode=33, type="GraphMethodException")


# --- the conformance harness ----------------------------------------------------------------------

# mode → how the emulator fails the next request; "timeout" hangs past the harness's 1 s timeout.
FAULTS: dict[str, dict[str, Any]] = {
    # A bare 5xx: TARGETS.md says retry with backoff, so TransientError (a retry that reposts
    # identical text gets a 506, which the adapter resolves to the earlier post).
    "server_error": {"status": 500, "body": b"Internal Server Error"},
    "rate_limited": {
        "status": 400,
        "json": graph_error(32, "(#32) Page request limit reached", is_transient=True),
        "headers": buc_usage(PAGE_ID, 1),
    },
    "bad_token": {"status": 400, "json": graph_error(190, INVALID_TOKEN, subcode=460)},
    "rejected_content": {"status": 400, "json": graph_error(100, "(#100) Invalid parameter")},
    "duplicate": {"status": 400, "json": graph_error(506, "(#506) Duplicate status message")},
    "policy_block": {
        "status": 400,
        "json": graph_error(368, "The action attempted has been deemed abusive or is otherwise disallowed"),
    },
}


class Harness(HttpHarness):
    """The Facebook Page target against a GraphEmulator, for the shared conformance test."""

    not_found_note = "not among the Page's"

    kind = "facebook"
    env_name = "FACEBOOK_PAGE_TOKEN"
    expected: dict[str, type[Exception]] = {
        "server_error": TransientError,
        "rate_limited": RateLimited,
        "timeout": OutcomeUnknown,
        "bad_token": TargetBroken,
        "rejected_content": PermanentError,
        "duplicate": PermanentError,
        "policy_block": TargetBroken,
    }

    def __init__(self, *, page_id: str = PAGE_ID, token: str = TOKEN) -> None:
        self.page_id, self.token = page_id, token
        self.emulator = GraphEmulator(page_id=page_id, token=token)
        self._old_env: str | None = None

    def __enter__(self) -> Harness:
        self.emulator.start()
        self._old_env = os.environ.get(self.env_name)
        os.environ[self.env_name] = self.token
        return self

    def __exit__(self, *exc: object) -> None:
        self.emulator.stop()
        if self._old_env is None:
            os.environ.pop(self.env_name, None)
        else:
            os.environ[self.env_name] = self._old_env

    def make_target(self, name: str = "facebook-test", **settings: Any) -> Any:
        """A saved facebook Target posting to the emulator's Page, with a 1 s timeout."""
        from syndicator.models import Target

        return Target.objects.create(
            kind="facebook",
            name=name,
            secret_env=self.env_name,
            settings={"page_id": self.page_id, "base_url": self.emulator.base_url, "timeout": 1, **settings},
        )

    def transient_reply(self) -> Reply:
        """Graph's code 2, "Service temporarily unavailable": nothing was posted."""
        return Reply(500, json=graph_error(2, "Service temporarily unavailable", type=""))

    def script_outage(self, hang: float) -> None:
        api = self.emulator
        api.fail_next(status=500, body=b"Internal Server Error")
        api.fail_next(status=500, json=graph_error(2, "Service temporarily unavailable", type=""))
        limited = graph_error(32, "(#32) Page request limit reached", is_transient=True)
        api.fail_next(status=400, json=limited, headers=buc_usage(self.page_id, 0.02))  # 1.2 s
        api.hang_next(seconds=hang)
        # The first post that goes through is made, but its answer is lost (a bare 502): the retry
        # meets Graph's duplicate refusal (506), and the adapter finds the earlier post.
        api.lose_answer_next()

    def check_after_outage(self, received: list[Any]) -> None:
        from syndicator.models import Delivery, DeliveryAttempt

        # The post whose answer was lost: sent once, under the id Graph gave it.
        found = DeliveryAttempt.objects.get(message__contains="found_after_duplicate")
        assert found.delivery.status == "sent"
        assert found.delivery.external_id in {item.external_id for item in received}
        # The delivery that hung was looked up, not found, and waits for an admin with the reason.
        hung = Delivery.objects.get(target__kind=self.kind, status="uncertain")
        assert "not among the Page's" in hung.last_error

    def secrets(self) -> list[str]:
        return [TOKEN]

    def sent(self) -> list[dict[str, Any]]:
        """The posts the emulator accepted, oldest first; each has "text" (the message or caption)."""
        return [dict(entry) for entry in self.emulator.accepted if entry["kind"] == "post"]

    def post_text(self, external_id: str) -> str | None:
        """The post's message (a photo post's caption) now; None once deleted."""
        post = self.emulator.post(external_id)
        return None if post is None else str(post["message"])

    def edit_count(self, external_id: str) -> int:
        """How many edits changed the post's message (Graph documents no limit)."""
        return self.emulator.edits.get(external_id, 0)

    def inject(self, mode: str) -> None:
        """Make the next request fail the way ``mode`` names (see ``expected``)."""
        if mode == "timeout":
            self.emulator.hang_next(seconds=5)
        elif mode in FAULTS:
            self.emulator.fail_next(**FAULTS[mode])
        else:
            raise ValueError(f"unknown fault mode {mode!r}; known: {', '.join(self.expected)}")
