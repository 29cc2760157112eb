"""The Threads target: Meta's two-step container flow, with the profile's 250-posts-a-day limit.

    POST /{user-id}/threads          media_type=TEXT, text (≤ 500), link_attachment → {"id": creation_id}
    POST /{user-id}/threads_publish  creation_id                                   → {"id": media_id}

A container is not public, so only the publishing call can leave a post uncertain. Every failure
after a container exists says which one (``[threads container <id>]`` in the attempt's message),
and the next attempt or ``verify`` reads the container's status before doing anything: FINISHED
is published (it never was, so one post), PUBLISHED is looked up among the profile's posts by its
text, EXPIRED (24 h) or ERROR is replaced by a new container. Publishing the same container twice
is never tried (what Threads answers is not documented). Before a new container the publishing
limit (``threads_publishing_limit``) is read: a used-up quota is RateLimited, for QUOTA_WAIT,
since the moving window's reset time is not given. Facts and sources:
docs/networks-pinterest-threads.md. Errors are mapped by CODE_TABLE, in one place (``_error``).
"""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING, Any

import httpx
from django.conf import settings

from syndicator.errors import (
    DeliveryError,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    TargetBroken,
    TransientError,
)
from syndicator.formatting import Message
from syndicator.redact import redact
from syndicator.targets import http
from syndicator.targets.base import Adapter, SendResult, Setting, register
from syndicator.textrules import CONTROL_CHARS, truncate

if TYPE_CHECKING:
    from syndicator.models import Delivery

API = "https://graph.threads.net/v1.0"
TEMPLATE = "threads.txt.j2"
TEXT_MAX = 500  # Threads Posts, Limitations: 500 characters, emojis counted as UTF-8 bytes
QUOTA_WAIT = 3600.0  # the 24 h window moves and its reset time is not given: look again in an hour
RATE_LIMIT_FALLBACK = 300.0  # Graph's throttling codes carry no wait: "wait and retry"
LOOKUP_LIMIT = 50  # recent posts read to find a published container's post
CONTAINER_MARK = "[threads container {}]"
_CONTAINER = re.compile(r"\[threads container (\d+)\]")
NOT_FOUND_SUBCODE = 4279009  # code 24 on publishing: the fresh container is not visible yet

# Graph error code → (error class, what it means, what to do). Graph's error-handling guide, and
# for code 24/4279009 the Threads reports cited in the docs. Codes 32 and 613 are assumed as on Graph.
CODE_TABLE: dict[int, tuple[type[DeliveryError], str, str]] = {
    1: (TransientError, "unknown error", "retrying later"),
    2: (TransientError, "service temporarily unavailable", "retrying later"),
    4: (RateLimited, "app request limit reached", "waiting before retrying"),
    17: (RateLimited, "user request limit reached", "waiting before retrying"),
    32: (RateLimited, "request limit reached", "waiting before retrying"),
    613: (RateLimited, "rate limit", "waiting before retrying"),
    10: (TargetBroken, "permission denied", "grant threads_basic and threads_content_publish"),
    24: (TransientError, "container not found yet", "publishing the same container again later"),
    100: (PermanentError, "invalid parameter", "Threads does not accept this content; not retrying it"),
    190: (TargetBroken, "token rejected", "issue a new long-lived access token"),
}


def threads_length(text: str) -> int:
    """A post's length as Threads counts it, the cautious reading: an emoji as its UTF-8 bytes."""
    return sum(len(ch.encode()) if ord(ch) > 0xFFFF or unicodedata.category(ch) == "So" else 1 for ch in text)


@register
class ThreadsAdapter(Adapter):
    """Publish a text post with the article's link to a Threads profile."""

    kind = "threads"
    label = "Threads"
    verify_plan = (
        "its container will be looked up shortly: published if it never was, found among the "
        "profile's posts if it was, so it cannot appear twice"
    )
    settings_spec = (
        Setting("user_id", "The Threads user id to publish as ('me': the token's own)", default="me"),
        Setting("base_url", "The API's address, with its version", default=API),
        Setting("timeout", "Seconds to wait for each API call (default SYNDICATOR_TARGET_TIMEOUT)"),
    )

    # --- the contract ---------------------------------------------------------------------------

    def render(self, delivery: Delivery) -> Message:
        """The post's text within 500 characters as Threads counts them, and its link."""
        from syndicator import formatting

        options = {"hashtag_limit": 1, **self.target.settings}  # Threads shows one topic per post
        ctx = formatting._context(delivery.post, self.kind, options)
        override = CONTROL_CHARS.sub("", (delivery.text_override or "").replace("\r\n", "\n")).strip()
        if override:
            render = formatting._override_renderer(self.kind, ctx)
            fields = {"text": truncate(override, TEXT_MAX * 4)}
        else:
            render = formatting._template_renderer(
                TEMPLATE, self.target.template_overrides or {}, ctx, mark_rtl=True
            )
            fields = {"summary": truncate(" ".join(ctx["summary"].split()), TEXT_MAX), "title": ctx["title"]}
        text = formatting._fit(render, fields, ctx["hashtags"], threads_length, TEXT_MAX, TEMPLATE)
        if not text.strip():
            raise PermanentError("the threads message for this post is empty (no title, summary or link)")
        return Message(self.kind, text, ctx["link"], language=ctx["language"], direction=ctx["direction"])

    def send(self, message: Message, delivery: Delivery) -> SendResult:
        """Publish the post: an earlier attempt's container if it has one, else a new container."""
        return self._publish_once(message, delivery, look_up=False)

    def verify(self, delivery: Delivery) -> SendResult | None:
        """Settle an uncertain delivery by its container's status, or by finding its text among the
        profile's recent posts when no container was recorded (the worker died); publish it only
        when nothing shows it went out."""
        return self._publish_once(self.render(delivery), delivery, look_up=True)

    def check(self) -> str:
        """Verify the token (GET /me) and read the publishing quota."""
        token = self.secret()
        with self._client() as api:
            me = self._call(api, token, "GET", "/me", "checking the token", params={"fields": "id,username"})
            used, total = self._quota(api, token)
        return (
            f"ok: publishing as @{me.get('username')} ({me.get('id')}); {used} of {total} posts used in 24 h"
        )

    # --- the flow -------------------------------------------------------------------------------

    def _publish_once(self, message: Message, delivery: Delivery, *, look_up: bool) -> SendResult:
        token = self.secret()
        with self._client() as api:
            creation_id = recorded_container(delivery)
            if creation_id:
                status = self._container_status(api, token, creation_id)
                if status == "PUBLISHED":
                    return self._find(api, token, message, creation_id)
                if status == "FINISHED":  # made, never published: publishing it makes the one post
                    return self._publish(api, token, creation_id, {"reused_container": True})
                if status == "IN_PROGRESS":
                    raise TransientError(
                        f"Threads: container {CONTAINER_MARK.format(creation_id)} is still being processed"
                    )
                # EXPIRED, ERROR or gone: it was never published, a new container replaces it.
            elif look_up and (found := self._search(api, token, message)) is not None:
                return found
            used, total = self._quota(api, token)
            if used >= total:
                raise RateLimited(
                    f"Threads: the profile has published {used} of its {total} posts in the last 24 hours; "
                    f"trying again in {QUOTA_WAIT / 60:.0f} minutes (the window's reset time is not given)",
                    retry_after=QUOTA_WAIT,
                )
            body = {"media_type": "TEXT", "text": message.text}
            if message.link:
                body["link_attachment"] = message.link
            try:
                made = self._call(
                    api, token, "POST", f"/{self._user()}/threads", "creating the container", data=body
                )
            except OutcomeUnknown as exc:  # a container is not public: nothing can be out yet
                raise TransientError(str(exc), http_status=exc.http_status) from None
            creation_id = str(made.get("id") or "")
            if not creation_id:
                raise TransientError("Threads: the container was created without an id; trying again later")
            return self._publish(api, token, creation_id, {})

    def _publish(self, api: httpx.Client, token: str, creation_id: str, details: dict) -> SendResult:
        mark = CONTAINER_MARK.format(creation_id)
        try:
            done = self._call(
                api,
                token,
                "POST",
                f"/{self._user()}/threads_publish",
                f"publishing {mark}",
                params={"creation_id": creation_id},
                publishing=True,
            )
        except DeliveryError as exc:
            raise type(exc)(f"{exc} {mark}", **_attrs(exc)) from None  # the next attempt reuses it
        media_id = str(done.get("id") or "")
        if not media_id:
            raise OutcomeUnknown(f"Threads: publishing answered without a media id {mark}")
        return SendResult(
            media_id, self._permalink(api, token, media_id), {"creation_id": creation_id, **details}
        )

    def _container_status(self, api: httpx.Client, token: str, creation_id: str) -> str:
        try:
            answer = self._call(
                api,
                token,
                "GET",
                f"/{creation_id}",
                "reading the container's status",
                params={"fields": "status,error_message"},
            )
        except (PermanentError, TransientError) as exc:
            gone = not isinstance(exc, (TargetBroken, RateLimited)) and (exc.http_status or 500) < 500
            if not gone:
                raise
            return "GONE"  # not found: never published (a published one keeps its status)
        return str(answer.get("status") or "")

    def _find(self, api: httpx.Client, token: str, message: Message, creation_id: str) -> SendResult:
        found = self._search(api, token, message)
        if found is None:
            raise OutcomeUnknown(
                f"Threads: container {CONTAINER_MARK.format(creation_id)} is PUBLISHED, but its post is not "
                f"among the profile's {LOOKUP_LIMIT} newest: an admin checks the profile"
            )
        found.details["creation_id"] = creation_id
        return found

    def _search(self, api: httpx.Client, token: str, message: Message) -> SendResult | None:
        """The profile's recent post with this text, if there is one."""
        page = self._call(
            api,
            token,
            "GET",
            f"/{self._user()}/threads",
            "looking the post up",
            params={"fields": "id,text,permalink,timestamp", "limit": LOOKUP_LIMIT},
        )
        want = " ".join(message.text.split())
        for post in page.get("data") or []:
            if isinstance(post, dict) and " ".join(str(post.get("text") or "").split()) == want:
                return SendResult(
                    str(post.get("id")), str(post.get("permalink") or ""), {"found_on_profile": True}
                )
        return None

    def _quota(self, api: httpx.Client, token: str) -> tuple[int, int]:
        answer = self._call(
            api,
            token,
            "GET",
            f"/{self._user()}/threads_publishing_limit",
            "reading the publishing limit",
            params={"fields": "quota_usage,config"},
        )
        entry = (answer.get("data") or [{}])[0] if isinstance(answer.get("data"), list) else {}
        config = entry.get("config") or {}
        return _int(entry.get("quota_usage"), 0), _int(config.get("quota_total"), 250)

    def _permalink(self, api: httpx.Client, token: str, media_id: str) -> str:
        """The post's permalink; "" when it cannot be read (the post is out either way)."""
        try:
            post = self._call(
                api, token, "GET", f"/{media_id}", "reading the permalink", params={"fields": "permalink"}
            )
        except DeliveryError:
            return ""
        return str(post.get("permalink") or "")

    # --- plumbing -------------------------------------------------------------------------------

    def _user(self) -> str:
        user = str(self.setting("user_id") or "me").strip()
        if not (user == "me" or user.isdigit()):
            raise TargetBroken(f"Threads target {self.target.name!r}: user_id must be 'me' or a numeric id")
        return user

    def _client(self) -> httpx.Client:
        base = str(self.setting("base_url") or API).strip().rstrip("/")
        if not base.lower().startswith(("http://", "https://")):
            raise TargetBroken(f"Threads target {self.target.name!r}: base_url must be an http(s) URL")
        timeout = self.setting("timeout")
        try:
            seconds = float(timeout) if timeout not in (None, "") else settings.SYNDICATOR_TARGET_TIMEOUT
        except (TypeError, ValueError):
            raise TargetBroken(
                f"Threads target {self.target.name!r}: timeout {timeout!r} is not a number"
            ) from None
        return http.client(base, timeout=seconds)

    def _call(
        self,
        api: httpx.Client,
        token: str,
        method: str,
        path: str,
        action: str,
        *,
        publishing: bool = False,
        params: dict | None = None,
        data: dict | None = None,
    ) -> dict[str, Any]:
        """One call. The token goes as the form field ``access_token`` in POST bodies and as an
        ``Authorization: Bearer`` header on GETs (as the Facebook adapter does), never in a URL:
        URLs end up in logs."""
        try:
            if method == "GET":
                headers = {"Authorization": f"Bearer {token}"}
                response = http.request(api, method, path, params=params, headers=headers)
            else:
                response = http.request(
                    api, method, path, params=params, data={**(data or {}), "access_token": token}
                )
        except OutcomeUnknown as exc:
            if publishing:
                raise
            raise TransientError(str(exc), http_status=exc.http_status) from None  # only publishing posts
        if response.status_code >= 300:
            raise _error(response, action, token, publishing=publishing)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            cls = OutcomeUnknown if publishing else TransientError
            raise cls(f"Threads: {action}: the answer ({response.status_code}) is not a JSON object")
        return answer


def recorded_container(delivery: Delivery) -> str:
    """The container an earlier attempt of this delivery made (newest first), or ""."""
    from syndicator.models import DeliveryAttempt

    messages = (
        DeliveryAttempt.objects.filter(delivery_id=delivery.pk)
        .order_by("-number")
        .values_list("message", flat=True)
    )
    for text in messages:
        if match := _CONTAINER.search(text or ""):
            return match[1]
    return ""


def _error(response: httpx.Response, action: str, token: str, *, publishing: bool) -> DeliveryError:
    """The DeliveryError a Threads answer means (CODE_TABLE by the Graph error code)."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):  # no Graph body: a proxy's or the server's own failure
        said = _scrub(" ".join(response.text.split())[:200], token)
        cls = (
            OutcomeUnknown
            if publishing and status >= 500
            else TransientError
            if status >= 500
            else PermanentError
        )
        return cls(f"Threads: HTTP {status} while {action}: {said}", http_status=status)
    code, subcode = _int(error.get("code"), 0), _int(error.get("error_subcode"), 0)
    said = _scrub(
        f"{error.get('message')} (code {code}" + (f", subcode {subcode})" if subcode else ")"), token
    )
    if 200 <= code <= 299:
        cls, meaning, advice = TargetBroken, "permission missing", "grant threads_content_publish"
    elif code == 24 and subcode != NOT_FOUND_SUBCODE:
        cls, meaning, advice = PermanentError, "not found", "not retrying"
    else:
        default = (
            OutcomeUnknown if publishing and status >= 500 else TransientError,
            "error",
            "retrying later",
        )
        if status < 500:
            default = (PermanentError, "request refused", "not retrying")
        cls, meaning, advice = CODE_TABLE.get(code, default)
    if publishing and status >= 500 and cls is TransientError and code != 2:
        cls = OutcomeUnknown  # it failed while publishing: the post may be out (code 2: nothing done)
    message = f"Threads: {meaning} while {action}: {said}; {advice}"
    if cls is RateLimited:
        return RateLimited(message, retry_after=RATE_LIMIT_FALLBACK, http_status=status)
    return cls(message, http_status=status)


def _attrs(exc: DeliveryError) -> dict[str, Any]:
    attrs: dict[str, Any] = {"http_status": exc.http_status}
    if isinstance(exc, RateLimited):
        attrs["retry_after"] = exc.retry_after
    return attrs


def _int(value: object, default: int) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return default


def _scrub(text: str, token: str) -> str:
    return redact(text.replace(token, "<redacted>") if token else text)[:300]
