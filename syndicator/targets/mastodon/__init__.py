"""The Mastodon target: ``POST /api/v1/statuses`` on the target's instance, with a bearer token.

Limits: an instance sets its own (``/api/v2/instance`` → ``configuration.statuses``). ``targets
check`` reads them and stores them in the target's settings (``max_characters``,
``characters_reserved_per_url``), where syndicator.formatting finds them; until then a stock
instance's 500/23 apply. Stored rather than fetched while rendering because a message is rendered
in the worker, in the repost form and in the API's length check alike, a render must not fail on
the network (delivery.py calls a rendering error permanent), and an instance's limits change only
when its admin changes them.

Idempotency: every attempt of a delivery sends the same ``Idempotency-Key``. Mastodon remembers a
key per account for an hour after the status was made (PostStatusService: ``redis.setex(
"idempotency:status:<account>:<key>", 3_600, status.id)``) and answers a repeat with that status.
So an uncertain delivery is settled by sending it again (``verify``), as long as its earliest
attempt that may have posted started less than IDEMPOTENCY_WINDOW ago; after that a re-send could
post twice, and it waits for an admin.

Errors: one table, ``ERRORS`` below, by HTTP status (Mastodon's API answers ``{"error": …}``
without codes of its own); ``_error`` turns an answer into the exception through it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx
from django.conf import settings
from django.utils import timezone

from syndicator.clock import db_now
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
from syndicator.targets.config import URL, Duration, Pacing, RateLimit, Setting
from syndicator.targets.faults import ErrorTable, Rule, json_object, retry_after
from syndicator.targets.images import download_image
from syndicator.targets.mastodon.text import MAX_CHARACTERS as MASTODON_MAX
from syndicator.targets.mastodon.text import RULES as TEXT_RULES
from syndicator.targets.mastodon.text import URL_LENGTH as MASTODON_URL_LENGTH

if TYPE_CHECKING:
    from syndicator.formatting import Message
    from syndicator.models import Delivery

log = logging.getLogger(__name__)

POST_STATUS = "/api/v1/statuses"
MEDIA_UPLOAD = "/api/v2/media"
IMAGE_MAX_BYTES = 16 * 1024 * 1024  # a stock instance's media_attachments.image_size_limit
VISIBILITIES = ("public", "unlisted", "private", "direct")
# Mastodon keeps an idempotency key 3600 s after the status was made; the margin covers clock
# skew and a first request that took long to be processed.
IDEMPOTENCY_TTL = 3600.0
IDEMPOTENCY_WINDOW = IDEMPOTENCY_TTL - 300.0
ALT_TEXT_MAX = 1500  # MediaAttachment description limit
MEDIA_POLL_INTERVAL = 0.5

# The error table, by HTTP status: Mastodon's API documentation ("Error responses" of each method),
# row by row. A 5xx means the request reached the instance, which may have made the status before
# failing: it is uncertain, and settled by a re-send under the same Idempotency-Key (module
# docstring). Only posting the status is a publishing call: elsewhere a 5xx is a plain retry.
UNSURE = "the status may or may not be posted"
ERRORS = ErrorTable(
    by_status={
        400: Rule(PermanentError, "request refused", "a parameter is malformed"),
        401: Rule(
            TargetBroken, "token rejected", "issue a new access token (scopes write:statuses, write:media)"
        ),
        403: Rule(
            TargetBroken,
            "posting refused",
            "the account may be suspended or disabled, or the token lacks a scope",
        ),
        404: Rule(TargetBroken, "not found", "check base_url: it does not serve the Mastodon API"),
        410: Rule(TargetBroken, "account gone", "the account was deleted"),
        422: Rule(PermanentError, "status rejected", "not retrying this content"),
        # Mastodon's rate limits (300 calls / 5 min per account; 30 media uploads / 30 min) answer
        # 429 with X-RateLimit-Reset, an ISO 8601 time (docs.joinmastodon.org/api/rate-limits).
        429: Rule(RateLimited, "rate limited"),
        500: Rule(OutcomeUnknown, "internal server error", UNSURE),
        502: Rule(OutcomeUnknown, "bad gateway", UNSURE),
        503: Rule(OutcomeUnknown, "unavailable", UNSURE),
        504: Rule(OutcomeUnknown, "gateway timeout", UNSURE),
    },
    # A redirect: base_url points at the wrong place (or an http → https hop).
    unlisted_3xx=Rule(TargetBroken, "redirected to {location}", "check base_url"),
    unlisted_4xx=Rule(PermanentError, "request refused", "not retrying"),
    unlisted_5xx=Rule(OutcomeUnknown, "server error", UNSURE),
)
RATE_LIMIT_HEADERS = ("x-ratelimit-reset", "retry-after")


@register
class MastodonAdapter(HttpAdapter):
    """Post a status to a Mastodon account, with the post's image when enabled."""

    kind = "mastodon"
    label = "Mastodon"
    documented_secrets = ("MASTODON_TOKEN",)  # README: connecting the networks
    text = TEXT_RULES
    errors = ERRORS
    # PUT /api/v1/statuses/:id edits a status (Mastodon 3.5+, with an edit history); DELETE removes it.
    capabilities = Capabilities(
        edit=True, delete=True, note="edits its statuses (kept in their history) and deletes them"
    )
    idempotent = False  # a re-send is safe only within the key's hour: ``verify`` decides
    verify_note = (
        "Mastodon keeps an Idempotency-Key for about an hour only, and that hour has passed: a re-send "
        "could post twice. An admin checks the account, then retries the delivery or leaves it"
    )
    verify_plan = (
        "it will be sent again shortly with the same Idempotency-Key, which the instance honours "
        "for about an hour, so it cannot appear twice"
    )
    # A re-send that fails is repeated (syndicator.recovery) only within the key's window.
    verify_horizon = IDEMPOTENCY_WINDOW
    verify_horizon_note = (
        "the instance keeps an Idempotency-Key for about an hour, and a re-send after that could post twice"
    )
    pacing = Pacing(rate_limits=(RateLimit("account", 300, 300, "docs.joinmastodon.org/api/rate-limits"),))
    settings_spec = (
        # No default: every target names its own instance (HttpAdapter inherits only timeout).
        Setting("base_url", "The instance, e.g. https://mastodon.social", type=URL, required=True),
        Setting("visibility", "Who sees the status", default="public", choices=VISIBILITIES),
        # Off by default: Mastodon shows no link card for a status with media, and the card already
        # shows the article's image with its title.
        Setting("image", "Attach the post's image (uploaded via /api/v2/media)", type=bool, default=False),
        Setting(
            "media_wait",
            "Seconds to wait for the instance to process the image",
            type=Duration,
            default=10.0,
            minimum=0,
        ),
        Setting(
            "max_characters",
            "Status limit of the instance (set by targets check)",
            type=int,
            default=MASTODON_MAX,
            minimum=1,
        ),
        Setting(
            "characters_reserved_per_url",
            "What a URL counts on the instance (set by targets check)",
            type=int,
            default=MASTODON_URL_LENGTH,
            minimum=0,
        ),
    )

    # --- the contract ---------------------------------------------------------------------------

    def send(self, message: Message, delivery: Delivery) -> SendResult:
        """Post the status (with its image when enabled); return its id and URL."""
        token = self.secret()
        with self._client(token) as api:
            wants_image = self.setting("image") and bool(message.image_url)
            media_ids = self._upload_image(api, token, message, delivery) if wants_image else []
            body: dict[str, Any] = {"status": message.text, "visibility": self.setting("visibility")}
            if language := _language(message.language):
                body["language"] = language
            if media_ids:
                body["media_ids"] = media_ids
            headers = {"Idempotency-Key": idempotency_key(delivery)}
            status, code = self._call(
                api, token, "POST", POST_STATUS, publishing=True, json=body, headers=headers
            )
        status_id = str(status.get("id") or "")
        if not status_id:
            # Something may be public, and we cannot point at it.
            raise self.no_id(f"POST {POST_STATUS}", code, publishing=True)
        details = {"media_ids": media_ids} if media_ids else {}
        return SendResult(status_id, str(status.get("url") or status.get("uri") or ""), details)

    def verify(self, delivery: Delivery) -> SendResult | None:
        """Settle an uncertain delivery by sending it again under the same Idempotency-Key.

        Within the key's window the instance answers with the status the lost attempt made, or
        makes it now if that attempt made none: either way exactly one status. Past the window,
        raise OutcomeUnknown saying so; the delivery waits for an admin.
        """
        from syndicator.recovery import maybe_posted_since  # recovery imports the adapters

        since = maybe_posted_since(delivery)
        # The attempt's start is the database's time, and so is "now" here (syndicator/clock.py):
        # a worker whose clock runs behind must not re-send past the key's hour.
        now = db_now()
        if since is not None and now - since > timedelta(seconds=IDEMPOTENCY_WINDOW):
            started = timezone.localtime(since).strftime("%Y-%m-%d %H:%M:%S %Z")
            raise OutcomeUnknown(
                f"Mastodon: not re-sent: the attempt that may have posted started at {started}, more than "
                f"{IDEMPOTENCY_WINDOW / 60:.0f} minutes ago, so the instance may have forgotten its "
                f"Idempotency-Key. {self.verify_note}"
            )
        try:
            result = self.send(self.render(delivery), delivery)
        except DeliveryError as exc:
            until = timezone.localtime((since or now) + timedelta(seconds=IDEMPOTENCY_WINDOW))
            # Within the window a re-send whose outcome is unknown (a 5xx, a lost answer) is as safe
            # to repeat as the first: the instance answers a repeat with the status the key made.
            # So it is a plain retry, which syndicator.recovery repeats with backoff until then.
            again = TransientError if isinstance(exc, OutcomeUnknown) else type(exc)
            raise again(
                f"re-sending under the same Idempotency-Key failed: {exc}; a re-send before "
                f"{until:%H:%M %Z} is still safe (same key), later it could post twice",
                http_status=exc.http_status,
                retry_after=exc.retry_after,
            ) from None
        result.details["resent_with_idempotency_key"] = True
        return result

    def check(self) -> str:
        """Verify the token (verify_credentials); read the instance's limits into the settings."""
        token = self.secret()
        with self._client(token) as api:
            account, _ = self._call(
                api, token, "GET", "/api/v1/accounts/verify_credentials", publishing=False
            )
            instance, _ = self._call(api, token, "GET", "/api/v2/instance", publishing=False)
        acct = str(account.get("acct") or account.get("username") or "")
        if not acct:
            raise TargetBroken("Mastodon: verify_credentials answered without an account name")
        limits = self._store_limits(instance)
        domain = str(instance.get("domain") or "")
        where = f"@{acct}@{domain}" if domain else f"@{acct}"
        return (
            f"ok: posting as {where}; statuses up to {limits['max_characters']} characters, "
            f"a URL counts {limits['characters_reserved_per_url']}"
        )

    # --- helpers --------------------------------------------------------------------------------

    def _client(self, token: str) -> httpx.Client:
        return http.client(
            self.base_url(), timeout=self.timeout(), headers={"Authorization": f"Bearer {token}"}
        )

    def _call(
        self, api: httpx.Client, token: str, method: str, path: str, *, publishing: bool, **kwargs: Any
    ) -> tuple[dict[str, Any], int]:
        """One API call: its JSON object and status, or the DeliveryError its answer means.

        ``publishing``: whether the call can make something public (only posting a status can).
        """
        action = f"{method} {path}"
        try:
            response = http.request(api, method, path, publishing=publishing, **kwargs)
        except DeliveryError as exc:  # transport failures, already redacted; say which call
            exc.args = (f"Mastodon {action}: {_scrub(str(exc), token)}",)
            raise
        if not response.is_success:
            raise self._error(response, action, token, publishing=publishing)
        answer = json_object(response.content)
        if not answer:
            raise self.no_id(action, response.status_code, publishing=publishing)
        return answer, response.status_code

    def _upload_image(self, api: httpx.Client, token: str, message: Message, delivery: Delivery) -> list[str]:
        """Upload the image and wait for the instance to process it; [] (no image) if any step fails.

        POST /api/v2/media answers 202 while the file is processed; a status naming it before then
        is refused (422 "not finished processing"), so GET /api/v1/media/:id is polled until 200.
        """
        try:
            content, content_type = download_image(
                message.image_url,
                timeout=self.timeout() or settings.SYNDICATOR_TARGET_TIMEOUT,
                max_bytes=IMAGE_MAX_BYTES,
            )
            alt = " ".join(str(getattr(delivery.post, "title", "") or "").split())[:ALT_TEXT_MAX]
            files = {"file": ("image", content, content_type)}
            # An upload makes nothing public: a lost answer is a plain failure (the status goes
            # out without the image), never an uncertain delivery.
            response = http.request(
                api, "POST", MEDIA_UPLOAD, publishing=False, files=files, data={"description": alt}
            )
            if response.status_code not in (200, 202):
                raise self._error(response, f"POST {MEDIA_UPLOAD}", token, publishing=False)
            media_id = str(json_object(response.content).get("id") or "")
            if not media_id:
                raise ValueError("the media upload answered without an id")
            deadline = time.monotonic() + float(self.setting("media_wait") or 0)
            while response.status_code != 200:  # 202 from the upload, then 206 from the look-ups
                if time.monotonic() >= deadline:
                    raise ValueError(
                        f"the instance was still processing the image after {self.setting('media_wait')} s"
                    )
                time.sleep(MEDIA_POLL_INTERVAL)
                response = http.request(api, "GET", f"/api/v1/media/{media_id}", publishing=False)
                if response.status_code not in (200, 206):
                    raise self._error(response, "GET /api/v1/media/:id", token, publishing=False)
        except TargetBroken:
            raise  # a dead token fails the status too: say so now
        except Exception as exc:  # the image is optional: the status goes out without it
            detail = _scrub(str(exc), token)[:300]
            log.warning(
                "Mastodon target %s: image not attached (%s: %s)",
                self.target.name,
                type(exc).__name__,
                detail,
            )
            return []
        return [media_id]

    def _error(self, response: httpx.Response, action: str, token: str, *, publishing: bool) -> DeliveryError:
        """The DeliveryError an error answer means, by ERRORS, with Mastodon's words (redacted)."""
        status = response.status_code
        error = self.network_error(
            ERRORS.rule(status),
            action,
            publishing=publishing,
            http_status=status,
            said=_scrub(_said(response), token),
            retry_after=retry_after(response.headers, RATE_LIMIT_HEADERS),
            location=repr(_scrub(response.headers.get("location", ""), token)[:200]),
        )
        error.args = (_scrub(str(error), token),)
        return error

    def _store_limits(self, instance: dict[str, Any]) -> dict[str, int]:
        """Keep the instance's status limits in the target's settings, for the formatting layer."""
        from syndicator.models import Target

        statuses = ((instance.get("configuration") or {}).get("statuses")) or {}
        limits = {
            "max_characters": _positive(statuses.get("max_characters"), MASTODON_MAX),
            "characters_reserved_per_url": _positive(
                statuses.get("characters_reserved_per_url"), MASTODON_URL_LENGTH
            ),
        }
        current = Target.objects.get(pk=self.target.pk)
        if any(current.settings.get(key) != value for key, value in limits.items()):
            current.settings.update(limits)
            current.save(update_fields=["settings"])
        self.target.settings.update(limits)
        return limits


def idempotency_key(delivery: Delivery) -> str:
    """The delivery's Idempotency-Key: the same for each of its attempts, unique across deliveries."""
    created = delivery.created_at.isoformat() if delivery.created_at else ""
    digest = hashlib.sha256(f"syndicator-delivery:{delivery.pk}:{created}".encode()).hexdigest()
    return f"syndicator-{digest[:40]}"


# --- helpers ---------------------------------------------------------------------------------------


def _said(response: httpx.Response) -> str:
    """Mastodon's own words for an error: {"error": …, "error_description": …}, else the body's start."""
    body = json_object(response.content)
    parts = [str(body.get(key)) for key in ("error", "error_description") if body.get(key)]
    if parts:
        return "; ".join(parts)[:300]
    return " ".join(response.text.split())[:200]


def _language(value: str) -> str:
    """The ISO 639 code Mastodon takes ("fa" from "fa-IR"), or "" to let the instance decide."""
    primary = (value or "").strip().lower().replace("_", "-").split("-")[0]
    return primary if primary.isalpha() and 2 <= len(primary) <= 3 else ""


def _positive(value: object, default: int) -> int:
    try:
        number = int(str(value))
    except (TypeError, ValueError):
        return default
    return number if number > 0 else default


def _scrub(text: str, token: str) -> str:
    """Text without the token, and redacted like every log line."""
    return redact(text.replace(token, "<redacted>") if token else text)
