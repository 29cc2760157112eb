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
docs/threads-api.md. Errors: the ERRORS table, by Graph error code.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import httpx

from syndicator.errors import (
    DeliveryError,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    TargetBroken,
    TransientError,
)
from syndicator.redact import redact
from syndicator.targets import http
from syndicator.targets.base import Capabilities, HttpAdapter, SendResult, register
from syndicator.targets.config import Setting
from syndicator.targets.faults import ErrorTable, Rule, json_object
from syndicator.targets.threads.text import RULES

if TYPE_CHECKING:
    from syndicator.formatting import Message
    from syndicator.models import Delivery

API = "https://graph.threads.net/v1.0"
QUOTA_WAIT = 3600.0  # the 24 h window moves and its reset time is not given: look again in an hour
LOOKUP_LIMIT = 50  # recent posts read to find a published container's post
CLOCK_SKEW = 300  # seconds the look-up reaches back before the first attempt (clocks differ)
CONTAINER_MARK = "[threads container {}]"
_CONTAINER = re.compile(r"\[threads container (\d+)\]")

_WAIT = "waiting before retrying"
_PERMISSION = Rule(TargetBroken, "permission missing", "grant threads_basic and threads_content_publish")
# Graph error code → what it means (Graph's error-handling guide; code 24 "Media Not Found" on a
# fresh container from the Threads reports cited in the docs). Codes 32 and 613 are assumed as on
# Graph. Code 1 ("unknown error") on publishing may hide a published post: uncertain; code 2 is
# "service down": nothing was done.
ERRORS = ErrorTable(
    by_code={
        1: Rule(OutcomeUnknown, "unknown error", "it may or may not have been published"),
        2: Rule(TransientError, "service temporarily unavailable", "retrying later"),
        4: Rule(RateLimited, "app request limit reached", _WAIT),
        17: Rule(RateLimited, "user request limit reached", _WAIT),
        32: Rule(RateLimited, "request limit reached", _WAIT),
        613: Rule(RateLimited, "rate limit", _WAIT),
        10: _PERMISSION,
        **{code: _PERMISSION for code in range(200, 300)},
        100: Rule(
            PermanentError, "invalid parameter", "Threads does not accept this content; not retrying it"
        ),
        190: Rule(TargetBroken, "token rejected", "put a new long-lived access token in {env}"),
    },
    by_text=(
        ("media not found", Rule(TransientError, "container not found yet", "publishing it again later")),
    ),
)


@register
class ThreadsAdapter(HttpAdapter):
    """Publish a text post with the article's link to a Threads profile."""

    kind = "threads"
    label = "Threads"
    text = RULES
    errors = ERRORS
    default_base_url = API
    # DELETE /{threads-media-id} (threads_delete; 100 deletes a day per account: Meta's "Delete
    # Posts" page); Meta documents no call that changes a published post's text.
    capabilities = Capabilities(
        delete=True,
        note="deletes its posts (at most 100 a day per account); the Threads API cannot edit a post",
    )
    documented_secrets = ("THREADS_ACCESS_TOKEN",)  # README: connecting the networks
    verify_plan = (
        "its container will be looked up shortly: published if it never was, found among the "
        "profile's posts if it was, so it cannot appear twice"
    )
    settings_spec = (
        Setting("user_id", "The Threads user id to publish as (me: the token's own)", default="me"),
    )

    # --- the contract ---------------------------------------------------------------------------

    def send(self, message: Message, delivery: Delivery) -> SendResult:
        """Publish the post: an earlier attempt's container if it has one, else a new container."""
        return self._publish_once(message, delivery, look_up=False)

    def verify(self, delivery: Delivery) -> SendResult | None:
        """Settle an uncertain delivery by its container's status, or by finding its text among the
        profile's recent posts when no container was recorded (the worker died); publish it only
        when nothing shows it went out."""
        return self._publish_once(self.render(delivery), delivery, look_up=True)

    def delete(self, delivery: Delivery) -> None:
        """DELETE /{threads-media-id} (needs threads_delete; 100 deletes a day per account, Meta's
        "Delete Posts" page). A post that is already gone ("Media Not Found", code 24) counts as
        deleted; the token goes in the form body, never in the URL."""
        media_id = str(delivery.sent_details.get("media_id") or delivery.external_id or "").strip()
        if not media_id.isdigit():
            raise PermanentError(f"Threads: the delivery names no media id ({media_id!r})")
        token = self.secret()
        with self._client() as api:
            response = http.request(
                api, "DELETE", f"/{media_id}", publishing=False, data={"access_token": token}
            )
        if response.status_code < 300:
            return
        error = json_object(response.content).get("error")
        error = error if isinstance(error, dict) else {}
        gone = _int(error.get("code")) == 24 or "not found" in str(error.get("message") or "").lower()
        if response.status_code == 404 or (gone and response.status_code < 500):
            return
        raise self._error(response, "deleting the post", token, publishing=False)

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
                    return self._find(api, token, message, delivery, creation_id)
                if status == "FINISHED":  # made, never published: publishing it makes the one post
                    return self._publish(api, token, creation_id, {"reused_container": True})
                if status == "IN_PROGRESS":
                    raise TransientError(
                        f"Threads: container {CONTAINER_MARK.format(creation_id)} is still being processed"
                    )
                # EXPIRED, ERROR or gone: never published. A new container replaces it, unless a
                # later one, made by a worker that died before writing it down, is out already.
            if (look_up or creation_id) and (found := self._search(api, token, message, delivery)):
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
            # Not publishing: a container is not public, so a lost answer here is a plain retry.
            made = self._call(
                api, token, "POST", f"/{self._user()}/threads", "creating the container", data=body
            )
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
                "publishing the container",
                params={"creation_id": creation_id},
                publishing=True,
            )
        except DeliveryError as exc:
            # The next attempt (or ``verify``) finds the container by this mark and reuses it.
            raise type(exc)(
                f"{exc} {mark}", http_status=exc.http_status, retry_after=exc.retry_after
            ) from None
        media_id = str(done.get("id") or "")
        if not media_id:
            raise OutcomeUnknown(f"Threads: publishing answered without a media id {mark}")
        return SendResult(
            media_id,
            self._permalink(api, token, media_id),
            {"creation_id": creation_id, "media_id": media_id, **details},
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

    def _find(
        self, api: httpx.Client, token: str, message: Message, delivery: Delivery, creation_id: str
    ) -> SendResult:
        found = self._search(api, token, message, delivery)
        if found is None:
            raise OutcomeUnknown(
                f"Threads: container {CONTAINER_MARK.format(creation_id)} is PUBLISHED, but its post is not "
                f"among the profile's {LOOKUP_LIMIT} newest: an admin checks the profile"
            )
        found.details["creation_id"] = creation_id
        return found

    def _search(
        self, api: httpx.Client, token: str, message: Message, delivery: Delivery
    ) -> SendResult | None:
        """The profile's post with this text made since the delivery's first attempt, if there is
        one (only since then: an earlier post of the same text is another delivery's)."""
        params: dict[str, Any] = {"fields": "id,text,permalink,timestamp", "limit": LOOKUP_LIMIT}
        if (since := first_attempt_at(delivery)) is not None:
            params["since"] = int(since) - CLOCK_SKEW
        page = self._call(api, token, "GET", f"/{self._user()}/threads", "looking the post up", params=params)
        want = " ".join(message.text.split())
        for post in page.get("data") or []:
            if isinstance(post, dict) and " ".join(str(post.get("text") or "").split()) == want:
                found = {"found_on_profile": True, "media_id": str(post.get("id"))}
                return SendResult(str(post.get("id")), str(post.get("permalink") or ""), found)
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
        return http.client(self.base_url(), timeout=self.timeout())

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
        if method == "GET":
            headers = {"Authorization": f"Bearer {token}"}
            response = http.request(api, method, path, publishing=False, params=params, headers=headers)
        else:
            form = {**(data or {}), "access_token": token}
            response = http.request(api, method, path, publishing=publishing, params=params, data=form)
        if response.status_code >= 300:
            raise self._error(response, action, token, publishing=publishing)
        answer = json_object(response.content)
        if not answer:
            raise self.no_id(action, response.status_code, publishing=publishing)
        return answer

    def _error(self, response: httpx.Response, action: str, token: str, *, publishing: bool) -> DeliveryError:
        """The DeliveryError a Threads answer means: ERRORS by its Graph code, text and status."""
        error = json_object(response.content).get("error")
        error = error if isinstance(error, dict) else {}
        code, subcode = _int(error.get("code")), _int(error.get("error_subcode"))
        message = str(error.get("message") or " ".join(response.text.split()))
        said = f"{message} (code {code}" + (f", subcode {subcode})" if subcode else ")") if code else message
        return self.network_error(
            self.errors.rule(response.status_code, code, message),
            action,
            publishing=publishing,
            http_status=response.status_code,
            said=redact(said.replace(token, "<redacted>"))[:300],
        )


def first_attempt_at(delivery: Delivery) -> float | None:
    """When the delivery's first attempt started (Unix time), or None."""
    from syndicator.models import DeliveryAttempt

    started = (
        DeliveryAttempt.objects.filter(delivery_id=delivery.pk)
        .order_by("number")
        .values_list("started_at", flat=True)
        .first()
    )
    return started.timestamp() if started is not None else None


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


def _int(value: object, default: int = 0) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return default
