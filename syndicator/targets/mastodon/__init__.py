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

Edits and deletes (docs.joinmastodon.org/methods/statuses, "Edit a status" and "Delete a status"):
``PUT /api/v1/statuses/:id`` (Mastodon 3.5+, ``language`` since 4.0) takes the text, spoiler_text,
sensitive, language, media_ids[] and a poll, not the visibility, which stays as posted. The instance
keeps every version (``GET /api/v1/statuses/:id/history``), and an edit that changes nothing makes
no version (UpdateStatusService rescues NoChangesSubmittedError), so repeating an edit is harmless.
The media of an edit are the ``media_ids`` it names: the send keeps its media ids and the image
they were made from in ``sent_details``, and an edit names them again while the image is the same.
``DELETE /api/v1/statuses/:id``; Mastodon's 404 ("Record not found": gone, or not ours) means
nothing is left to delete, and nothing left to edit (EditRefused).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx
from django.conf import settings
from django.utils import timezone

from syndicator.clock import db_now
from syndicator.errors import (
    DeliveryError,
    EditRefused,
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
STATUS = "/api/v1/statuses/{}"  # PUT edits, DELETE deletes (docs.joinmastodon.org/methods/statuses)
MEDIA_UPLOAD = "/api/v2/media"
IMAGE_MAX_BYTES = 16 * 1024 * 1024  # a stock instance's media_attachments.image_size_limit
VISIBILITIES = ("public", "unlisted", "private", "direct")
# Mastodon keeps an idempotency key 3600 s after the status was made; the margin covers clock
# skew and a first request that took long to be processed.
IDEMPOTENCY_TTL = 3600.0
IDEMPOTENCY_WINDOW = IDEMPOTENCY_TTL - 300.0
ALT_TEXT_MAX = 1500  # MediaAttachment description limit
MEDIA_POLL_INTERVAL = 0.5
# A status id in a URL path: Mastodon's are digits (snowflakes); other servers of the same API use
# letters too. Nothing else may reach the path.
_STATUS_ID = re.compile(r"[0-9A-Za-z]{1,64}")

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
        edit=True,
        delete=True,
        note="edits its statuses at any time (each version kept in the status's history) and deletes them",
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
        # What an edit or delete needs: the status, and its media with the image they came from
        # (an edit names the media again while the image is the same: module docstring).
        details: dict[str, Any] = {"status_id": status_id}
        if media_ids:
            details.update(media_ids=media_ids, image_url=message.image_url)
        return SendResult(status_id, str(status.get("url") or status.get("uri") or ""), details)

    def edit(self, message: Message, delivery: Delivery) -> SendResult:
        """PUT /api/v1/statuses/:id with the new text, the language as a send gives it, and the media
        the status should keep (module docstring). Safe to repeat: an edit that changes nothing
        makes no new version. A status that is gone (Mastodon's 404) cannot be edited: EditRefused.
        """
        status_id = _status_id(delivery)
        token, path = self.secret(), STATUS.format(status_id)
        with self._client(token) as api:
            media_ids, image_url = self._edit_media(api, token, message, delivery)
            # No visibility: PUT does not take it (the status keeps its own); no spoiler_text or
            # sensitive: the send set none, and leaving them out leaves them as they are.
            body: dict[str, Any] = {"status": message.text, "media_ids": media_ids}
            if language := _language(message.language):
                body["language"] = language
            response = self._request(api, token, "PUT", path, publishing=False, json=body)
        if _record_not_found(response):
            said = _scrub(_said(response), token)
            raise EditRefused(
                f"Mastodon edit: status {status_id} no longer exists (404: {said}): it was deleted, "
                "or the instance is older than Mastodon 3.5 and cannot edit"
            )
        status = self._answer(response, f"PUT {path}", token, publishing=False)
        if str(status.get("id") or "") != status_id:
            raise self.no_id(f"PUT {path}", response.status_code, publishing=False)
        details = {k: v for k, v in delivery.sent_details.items() if k not in ("media_ids", "image_url")}
        details["status_id"] = status_id
        if media_ids:
            details.update(media_ids=media_ids, image_url=image_url)
        url = str(status.get("url") or status.get("uri") or delivery.external_url or "")
        return SendResult(status_id, url, details)

    def delete(self, delivery: Delivery) -> None:
        """DELETE /api/v1/statuses/:id. Mastodon's 404 ("Record not found") for a status already
        deleted counts as deleted; a 404 that is not Mastodon's answer (base_url wrong) does not."""
        status_id = _status_id(delivery)
        token, path = self.secret(), STATUS.format(status_id)
        with self._client(token) as api:
            response = self._request(api, token, "DELETE", path, publishing=False)
        if response.is_success or _record_not_found(response):
            return
        raise self._error(response, f"DELETE {path}", token, publishing=False)

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
        response = self._request(api, token, method, path, publishing=publishing, **kwargs)
        return self._answer(response, f"{method} {path}", token, publishing=publishing), response.status_code

    def _request(
        self, api: httpx.Client, token: str, method: str, path: str, *, publishing: bool, **kwargs: Any
    ) -> httpx.Response:
        """One request; a transport failure raised as its DeliveryError, naming the call."""
        try:
            return http.request(api, method, path, publishing=publishing, **kwargs)
        except DeliveryError as exc:  # transport failures, already redacted; say which call
            exc.args = (f"Mastodon {method} {path}: {_scrub(str(exc), token)}",)
            raise

    def _answer(
        self, response: httpx.Response, action: str, token: str, *, publishing: bool
    ) -> dict[str, Any]:
        """A success answer's JSON object, or the DeliveryError the answer means."""
        if not response.is_success:
            raise self._error(response, action, token, publishing=publishing)
        answer = json_object(response.content)
        if not answer:
            raise self.no_id(action, response.status_code, publishing=publishing)
        return answer

    def _edit_media(
        self, api: httpx.Client, token: str, message: Message, delivery: Delivery
    ) -> tuple[list[str], str]:
        """The media ids an edit names, and the image they show.

        The same image as sent (or a send that did not record its image): the status's own media
        ids, since an edit without them would remove the attachment. Another image: uploaded as a
        send would (on failure the status goes without one, as a send would). No image: none.
        """
        sent = delivery.sent_details or {}
        kept = [str(m) for m in sent.get("media_ids") or []]
        if not (self.setting("image") and message.image_url):
            return [], ""
        if kept and sent.get("image_url", message.image_url) == message.image_url:
            return kept, message.image_url
        media_ids = self._upload_image(api, token, message, delivery)
        return media_ids, message.image_url if media_ids else ""

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


def _status_id(delivery: Delivery) -> str:
    """The id of the delivery's status, from what its send recorded."""
    status_id = str((delivery.sent_details or {}).get("status_id") or delivery.external_id or "").strip()
    if not _STATUS_ID.fullmatch(status_id):
        raise PermanentError(f"Mastodon: the delivery names no status id ({status_id[:80]!r})")
    return status_id


def _record_not_found(response: httpx.Response) -> bool:
    """Mastodon's own 404 ({"error": "Record not found"}: the status does not exist, or is not
    ours), as opposed to a web server's page for a path it does not serve."""
    return response.status_code == 404 and bool(json_object(response.content).get("error"))


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
