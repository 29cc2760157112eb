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

Errors are mapped by STATUS_TABLE below, in one place (``_error``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
from django.conf import settings
from django.utils import timezone

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
from syndicator.targets.base import Adapter, Capabilities, SendResult, register
from syndicator.targets.config import URL, Duration, Setting
from syndicator.targets.images import download_image
from syndicator.targets.mastodon.text import MAX_CHARACTERS as MASTODON_MAX
from syndicator.targets.mastodon.text import RULES as TEXT_RULES
from syndicator.targets.mastodon.text import URL_LENGTH as MASTODON_URL_LENGTH

if TYPE_CHECKING:
    from syndicator.formatting import Message
    from syndicator.models import Delivery

log = logging.getLogger(__name__)

IMAGE_MAX_BYTES = 16 * 1024 * 1024  # a stock instance's media_attachments.image_size_limit
VISIBILITIES = ("public", "unlisted", "private", "direct")
# Mastodon keeps an idempotency key 3600 s after the status was made; the margin covers clock
# skew and a first request that took long to be processed.
IDEMPOTENCY_TTL = 3600.0
IDEMPOTENCY_WINDOW = IDEMPOTENCY_TTL - 300.0
RATE_LIMIT_FALLBACK = 60.0  # a 429 without X-RateLimit-Reset: wait a minute rather than hammer it
ALT_TEXT_MAX = 1500  # MediaAttachment description limit
MEDIA_POLL_INTERVAL = 0.5

# HTTP status → (error class, what it means, what to do). Mastodon's API documentation, row by row.
# A 5xx means the request reached the instance, which may have made the status before failing: it
# is uncertain, and settled by a re-send under the same Idempotency-Key (module docstring).
STATUS_TABLE: dict[int, tuple[type[DeliveryError], str, str]] = {
    400: (PermanentError, "request refused", "a parameter is malformed"),
    401: (TargetBroken, "token rejected", "issue a new access token (scopes write:statuses, write:media)"),
    403: (
        TargetBroken,
        "posting refused",
        "the account may be suspended or disabled, or the token lacks a scope",
    ),
    404: (TargetBroken, "not found", "check base_url: it does not serve the Mastodon API"),
    410: (TargetBroken, "account gone", "the account was deleted"),
    422: (PermanentError, "status rejected", "not retrying this content"),
    500: (OutcomeUnknown, "internal server error", "the status may or may not be posted"),
    502: (OutcomeUnknown, "bad gateway", "the status may or may not be posted"),
    503: (OutcomeUnknown, "unavailable", "the status may or may not be posted"),
    504: (OutcomeUnknown, "gateway timeout", "the status may or may not be posted"),
}


@register
class MastodonAdapter(Adapter):
    """Post a status to a Mastodon account, with the post's image when enabled."""

    kind = "mastodon"
    label = "Mastodon"
    documented_secrets = ("MASTODON_TOKEN",)  # README: connecting the networks
    text = TEXT_RULES
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
    settings_spec = (
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
            "timeout",
            "Seconds to wait for each API call (default SYNDICATOR_TARGET_TIMEOUT)",
            type=Duration,
            minimum=0.001,
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
            media_ids = (
                self._upload_image(api, token, message, delivery) if self._wants_image(message) else []
            )
            body: dict[str, Any] = {"status": message.text, "visibility": self._visibility()}
            if language := _language(message.language):
                body["language"] = language
            if media_ids:
                body["media_ids"] = media_ids
            headers = {"Idempotency-Key": idempotency_key(delivery)}
            status = self._call(
                api, token, "POST", "/api/v1/statuses", "posting the status", json=body, headers=headers
            )
        status_id = str(status.get("id") or "")
        if not status_id:
            # 2xx without an id: something may be public, and we cannot point at it.
            raise OutcomeUnknown("Mastodon: the answer to POST /api/v1/statuses carried no status id")
        details = {"media_ids": media_ids} if media_ids else {}
        return SendResult(status_id, str(status.get("url") or status.get("uri") or ""), details)

    def verify(self, delivery: Delivery) -> SendResult | None:
        """Settle an uncertain delivery by sending it again under the same Idempotency-Key.

        Within the key's window the instance answers with the status the lost attempt made, or
        makes it now if that attempt made none: either way exactly one status. Past the window,
        raise OutcomeUnknown saying so; the delivery waits for an admin.
        """
        since = maybe_posted_since(delivery)
        if since is not None and timezone.now() - since > timedelta(seconds=IDEMPOTENCY_WINDOW):
            started = timezone.localtime(since).strftime("%Y-%m-%d %H:%M:%S %Z")
            raise OutcomeUnknown(
                f"Mastodon: not re-sent: the attempt that may have posted started at {started}, more than "
                f"{IDEMPOTENCY_WINDOW / 60:.0f} minutes ago, so the instance may have forgotten its "
                f"Idempotency-Key. {self.verify_note}"
            )
        try:
            result = self.send(self.render(delivery), delivery)
        except DeliveryError as exc:
            until = timezone.localtime((since or timezone.now()) + timedelta(seconds=IDEMPOTENCY_WINDOW))
            raise type(exc)(
                f"re-sending under the same Idempotency-Key failed: {exc}; an admin's retry before "
                f"{until:%H:%M %Z} is still safe (same key), later it could post twice",
                http_status=exc.http_status,
            ) from None
        result.details["resent_with_idempotency_key"] = True
        return result

    def check(self) -> str:
        """Verify the token (verify_credentials); read the instance's limits into the settings."""
        token = self.secret()
        with self._client(token) as api:
            try:
                account = self._call(
                    api, token, "GET", "/api/v1/accounts/verify_credentials", "checking the token"
                )
                instance = self._call(api, token, "GET", "/api/v2/instance", "reading the instance's limits")
            except OutcomeUnknown as exc:  # a read that timed out posted nothing
                raise TransientError(str(exc), http_status=exc.http_status) from None
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
            self._base_url(), timeout=self._timeout(), headers={"Authorization": f"Bearer {token}"}
        )

    def _base_url(self) -> str:
        base = str(self.setting("base_url") or "").strip().rstrip("/")
        if not base.lower().startswith(("http://", "https://")):
            raise TargetBroken(
                f"Mastodon target {self.target.name!r}: base_url must be the instance's https URL"
            )
        return base

    def _timeout(self) -> float:
        value = self.setting("timeout")
        try:
            return float(value) if value not in (None, "") else settings.SYNDICATOR_TARGET_TIMEOUT
        except (TypeError, ValueError):
            return settings.SYNDICATOR_TARGET_TIMEOUT

    def _visibility(self) -> str:
        value = str(self.setting("visibility") or "public")
        if value not in VISIBILITIES:
            raise TargetBroken(f"Mastodon: visibility {value!r} is not one of {', '.join(VISIBILITIES)}")
        return value

    def _wants_image(self, message: Message) -> bool:
        value = self.setting("image")
        enabled = (
            value.strip().lower() in ("1", "true", "yes", "on") if isinstance(value, str) else bool(value)
        )
        return enabled and bool(message.image_url)

    def _call(
        self, api: httpx.Client, token: str, method: str, path: str, action: str, **kwargs: Any
    ) -> dict[str, Any]:
        """One API call: its JSON object, or the DeliveryError its answer means."""
        response = http.request(api, method, path, **kwargs)
        if response.status_code >= 300 or response.status_code == 206:
            raise _error(response, action, token)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            cls = OutcomeUnknown if method == "POST" else TransientError
            raise cls(f"Mastodon: {action}: the answer ({response.status_code}) is not a JSON object")
        return answer

    def _upload_image(self, api: httpx.Client, token: str, message: Message, delivery: Delivery) -> list[str]:
        """Upload the image and wait for the instance to process it; [] (no image) if any step fails.

        POST /api/v2/media answers 202 while the file is processed; a status naming it before then
        is refused (422 "not finished processing"), so GET /api/v1/media/:id is polled until 200.
        """
        try:
            content, content_type = download_image(
                message.image_url, timeout=self._timeout(), max_bytes=IMAGE_MAX_BYTES
            )
            alt = " ".join(str(getattr(delivery.post, "title", "") or "").split())[:ALT_TEXT_MAX]
            files = {"file": ("image", content, content_type)}
            response = http.request(api, "POST", "/api/v2/media", files=files, data={"description": alt})
            if response.status_code not in (200, 202):
                raise _error(response, "uploading the image", token)
            media_id = str(response.json().get("id") or "")
            if not media_id:
                raise ValueError("the media upload answered without an id")
            deadline = time.monotonic() + float(self.setting("media_wait") or 0)
            while response.status_code != 200:  # 202 from the upload, then 206 from the look-ups
                if time.monotonic() >= deadline:
                    raise ValueError(
                        f"the instance was still processing the image after {self.setting('media_wait')} s"
                    )
                time.sleep(MEDIA_POLL_INTERVAL)
                response = http.request(api, "GET", f"/api/v1/media/{media_id}")
                if response.status_code not in (200, 206):
                    raise _error(response, "waiting for the image", token)
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


def maybe_posted_since(delivery: Delivery) -> datetime | None:
    """When the delivery's earliest attempt that may have posted started (since an admin's retry)."""
    from syndicator.models import DeliveryAttempt

    Outcome = DeliveryAttempt.Outcome
    return (
        DeliveryAttempt.objects.filter(
            delivery_id=delivery.pk,
            number__gt=delivery.budget_start,
            outcome__in=(Outcome.UNKNOWN, Outcome.LOST),
        )
        .order_by("started_at")
        .values_list("started_at", flat=True)
        .first()
    )


# --- error mapping -------------------------------------------------------------------------------


def _error(response: httpx.Response, action: str, token: str) -> DeliveryError:
    """The DeliveryError an HTTP answer means (STATUS_TABLE; 429 with its reset time)."""
    status = response.status_code
    said = _scrub(_said(response), token)
    if status == 429:
        wait = retry_after(response.headers)
        return RateLimited(
            f"Mastodon: rate limited (429) while {action}: retry in {wait:.0f} s ({said})",
            retry_after=wait,
            http_status=429,
        )
    if status < 300 or status == 206:
        return TransientError(f"Mastodon: unexpected answer {status} while {action}", http_status=status)
    if status < 400:  # a redirect: base_url points at the wrong place (or an http → https hop)
        where = _scrub(response.headers.get("location", ""), token)[:200]
        return TargetBroken(
            f"Mastodon: redirected ({status}) to {where!r} while {action}: check base_url", http_status=status
        )
    default = (OutcomeUnknown, "server error", "the status may or may not be posted")
    if status < 500:
        default = (PermanentError, "request refused", "not retrying")
    cls, meaning, advice = STATUS_TABLE.get(status, default)
    if cls is OutcomeUnknown and not action.startswith("posting"):
        cls = TransientError  # only posting the status makes anything public
    return cls(f"Mastodon: {meaning} ({status}) while {action}: {said}; {advice}", http_status=status)


def retry_after(headers: httpx.Headers, now: datetime | None = None) -> float:
    """Seconds until X-RateLimit-Reset (an ISO 8601 time), else Retry-After, else a minute."""
    reset = headers.get("x-ratelimit-reset", "").strip()
    if reset:
        try:
            at = datetime.fromisoformat(reset.replace("Z", "+00:00"))
        except ValueError:
            at = None
        if at is not None and at.tzinfo is not None:
            return max((at - (now or timezone.now())).total_seconds(), 1.0)
    seconds = headers.get("retry-after", "").strip()
    try:
        return max(float(seconds), 1.0)
    except ValueError:
        return RATE_LIMIT_FALLBACK


def _said(response: httpx.Response) -> str:
    """Mastodon's own words for an error: {"error": …, "error_description": …}, else the body's start."""
    try:
        body = response.json()
    except ValueError:
        return " ".join(response.text.split())[:200]
    if isinstance(body, dict):
        parts = [str(body.get(key)) for key in ("error", "error_description") if body.get(key)]
        if parts:
            return "; ".join(parts)[:300]
    return str(body)[:200]


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
