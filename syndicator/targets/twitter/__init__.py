"""The X (Twitter) target: tweepy's Client (API v2) with OAuth 1.0a user context.

tweepy hard-codes https://api.twitter.com and sends no timeout (TARGETS.md section 3), so the
client gets a ``requests.Session`` of ours ("approach A") that rewrites the host to the target's
``base_url`` and puts a timeout on every call. tweepy 4.17 has no v2 media upload, so an image
goes to ``POST /2/media/upload`` through that same session, signed with tweepy's OAuth1 handler.

Errors follow TARGETS.md's X table, mapped in one place (``_classify``); tweepy leaves
``requests`` errors unwrapped, so the transport side is mapped here too, in the spirit of
``syndicator.targets.http``: never sent → TransientError, maybe sent → OutcomeUnknown.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import requests
import tweepy
import urllib3.exceptions
from django.conf import settings

from syndicator.errors import (
    DeliveryError,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    TargetBroken,
    TransientError,
)
from syndicator.redact import redact
from syndicator.targets.base import Adapter, Capabilities, SendResult, register
from syndicator.targets.config import URL, Duration, Setting
from syndicator.targets.images import download_image
from syndicator.targets.twitter.text import RULES as TEXT_RULES

if TYPE_CHECKING:
    from syndicator.formatting import Message
    from syndicator.models import Delivery

log = logging.getLogger(__name__)

TWEEPY_HOST = "https://api.twitter.com"  # what tweepy's BaseClient.request prefixes every route with
IMAGE_MAX_BYTES = 5 * 1024 * 1024  # X's limit for a tweet image (docs.x.com media best practices)
# A 429 without reset headers: X's windows are 15 minutes; wait a minute rather than hammer it.
RATE_LIMIT_FALLBACK = 60.0
# The 24-hour caps (posts per user / per app) show only in these headers (TARGETS.md section 3).
DAILY_LIMITS = ("x-user-limit-24hour", "x-app-limit-24hour")
DUPLICATE_CODES = {187}  # v1.1's "Status is a duplicate"; v2 sends no code, only the detail text

# HTTP status → (error class, what it means, what to do). TARGETS.md's X table, row by row.
# 5xx: X answered, so the request reached it. 503 is "over capacity, try again later" (X's
# response-code docs): refused before any work, so a retry is safe. 500/502/504 come from deeper
# in the stack ("something is broken", "down or being upgraded", "internal failure"): the tweet
# may exist, and a blind retry could post it twice, so the delivery waits as uncertain; an admin's
# retry is then safe because X refuses the identical text as a duplicate (403, below).
STATUS_TABLE: dict[int, tuple[type[DeliveryError], str, str]] = {
    400: (PermanentError, "tweet rejected", "the content or a media id is invalid"),
    401: (TargetBroken, "credentials rejected", "re-issue the API key/secret and access token"),
    403: (TargetBroken, "posting refused", "check the app has Read+Write access and is not suspended"),
    404: (PermanentError, "not found", "the endpoint or a referenced object does not exist"),
    500: (OutcomeUnknown, "internal server error", "the tweet may or may not be posted"),
    502: (OutcomeUnknown, "down or being upgraded", "the tweet may or may not be posted"),
    503: (TransientError, "over capacity", "nothing was posted; retrying later"),
    504: (OutcomeUnknown, "gateway timeout inside X", "the tweet may or may not be posted"),
}


class RedirectSession(requests.Session):
    """A session that sends tweepy's requests to ``base_url`` and never waits without a timeout."""

    def __init__(self, base_url: str, timeout: float) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        # (connect, read): a connect that hangs is cut sooner, a slow answer gets the full time.
        self.timeout = (min(timeout, 10.0), timeout)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        """Rewrite tweepy's fixed host to the target's base URL; add the default timeout."""
        url = url.decode() if isinstance(url, bytes) else url
        if url.startswith(TWEEPY_HOST):
            url = self.base_url + url[len(TWEEPY_HOST) :]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        # X never redirects its API; following one would drop the OAuth header (requests strips it
        # on a host change) and turn a POST into a GET. A redirect is reported, not followed.
        kwargs.setdefault("allow_redirects", False)
        return super().request(method, url, *args, **kwargs)


@register
class TwitterAdapter(Adapter):
    """Post to an X account through API v2 (tweepy), with an optional image."""

    kind = "twitter"
    label = "X / Twitter"
    text = TEXT_RULES
    # X API v2: DELETE /2/tweets/:id. No edit endpoint for our tier could be confirmed
    # (docs/networks.md lists what was looked up).
    capabilities = Capabilities(delete=True, note="deletes its posts; editing is not offered by the API")
    settings_spec = (
        Setting("base_url", "API base URL (tests, staging)", type=URL, default=TWEEPY_HOST),
        Setting("username", "Account handle without @, for tweet URLs (else x.com/i/web/status/ID)"),
        Setting(
            "timeout",
            "Seconds to wait for each API call (default SYNDICATOR_TARGET_TIMEOUT)",
            type=Duration,
            minimum=0.001,
        ),
        Setting(
            "image", "Attach the post's image (uploaded via POST /2/media/upload)", type=bool, default=False
        ),
        Setting("upload_base_url", "Base URL of the media upload endpoint (default: base_url)", type=URL),
        Setting("api_key_env", "Env var holding the API key", default="TWITTER_API_KEY", secret=True),
        Setting(
            "api_secret_env", "Env var holding the API secret", default="TWITTER_API_SECRET", secret=True
        ),
        Setting(
            "access_token_env",
            "Env var holding the access token",
            default="TWITTER_ACCESS_TOKEN",
            secret=True,
        ),
        Setting(
            "access_secret_env",
            "Env var holding the access token secret",
            default="TWITTER_ACCESS_SECRET",
            secret=True,
        ),
    )

    # --- the contract ---------------------------------------------------------------------------

    def send(self, message: Message, delivery: Delivery) -> SendResult:
        """Tweet the message (with its image when enabled); return the tweet id and URL."""
        client = self._client()
        try:
            media_ids = self._upload_image(client, message.image_url) if self._wants_image(message) else []
            try:
                response = client.create_tweet(text=message.text, media_ids=media_ids or None)
            except Exception as exc:
                raise _classify(exc, "posting the tweet") from None
        finally:
            client.session.close()
        tweet_id = str((response.data or {}).get("id") or "")
        if not tweet_id:
            # X answered 2xx without an id: something may be public, and we cannot point at it.
            raise OutcomeUnknown("X: the answer to POST /2/tweets carried no tweet id")
        details = {"media_ids": media_ids} if media_ids else {}
        return SendResult(external_id=tweet_id, external_url=self._tweet_url(tweet_id), details=details)

    def check(self) -> str:
        """Ask X who the credentials belong to: GET /2/users/me."""
        client = self._client()
        try:
            response = client.get_me(user_auth=True)
        except Exception as exc:
            error = _classify(exc, "checking the credentials")
            if isinstance(error, OutcomeUnknown):  # a read that timed out posted nothing
                raise TransientError(str(error), http_status=error.http_status) from None
            raise error from None
        finally:
            client.session.close()
        username = getattr(response.data, "username", "") if response.data else ""
        if not username:
            raise TargetBroken("X: GET /2/users/me answered without a username")
        return f"ok: posting as @{username}"

    # --- helpers --------------------------------------------------------------------------------

    def _client(self) -> tweepy.Client:
        """A tweepy Client for this target: user context, our session, never sleeping on a 429."""
        client = tweepy.Client(
            consumer_key=self.secret("api_key_env"),
            consumer_secret=self.secret("api_secret_env"),
            access_token=self.secret("access_token_env"),
            access_token_secret=self.secret("access_secret_env"),
            # True would sleep inside the worker until the reset, or loop at once without the
            # header, and ignores the 24-hour caps (TARGETS.md): the retry policy waits instead.
            wait_on_rate_limit=False,
        )
        client.session = RedirectSession(self._base_url(), self._timeout())
        return client

    def _base_url(self) -> str:
        return str(self.setting("base_url") or TWEEPY_HOST).rstrip("/")

    def _timeout(self) -> float:
        value = self.setting("timeout")
        try:
            return float(value) if value not in (None, "") else settings.SYNDICATOR_TARGET_TIMEOUT
        except (TypeError, ValueError):
            return settings.SYNDICATOR_TARGET_TIMEOUT

    def _tweet_url(self, tweet_id: str) -> str:
        username = str(self.setting("username") or "").strip().lstrip("@")
        if username:
            return f"https://x.com/{username}/status/{tweet_id}"
        return f"https://x.com/i/web/status/{tweet_id}"

    def _wants_image(self, message: Message) -> bool:
        value = self.setting("image")
        enabled = (
            value.strip().lower() in ("1", "true", "yes", "on") if isinstance(value, str) else bool(value)
        )
        return enabled and bool(message.image_url)

    def _upload_image(self, client: tweepy.Client, image_url: str) -> list[str]:
        """Download the image and upload it to X; [] (a text-only tweet) if any step fails."""
        try:
            content, content_type = download_image(
                image_url, timeout=self._timeout(), max_bytes=IMAGE_MAX_BYTES
            )
            upload_base = str(self.setting("upload_base_url") or self._base_url()).rstrip("/")
            auth = tweepy.OAuth1UserHandler(
                client.consumer_key, client.consumer_secret, client.access_token, client.access_token_secret
            ).apply_auth()
            response = client.session.post(
                f"{upload_base}/2/media/upload",
                files={"media": ("image", content, content_type)},
                data={"media_category": "tweet_image"},
                auth=auth,
            )
            if response.status_code >= 300:
                raise ValueError(f"media upload answered HTTP {response.status_code}")
            media_id = str(((response.json() or {}).get("data") or {}).get("id") or "")
            if not media_id:
                raise ValueError("media upload answered without an id")
        except Exception as exc:  # the image is optional: the tweet goes out without it
            detail = redact(str(exc))[:300]
            log.warning(
                "X target %s: image not attached (%s: %s)", self.target.name, type(exc).__name__, detail
            )
            return []
        return [media_id]


# --- error mapping: TARGETS.md section 3, "Errors: retry vs give up" ---------------------------


def _classify(exc: Exception, action: str) -> DeliveryError:
    """The DeliveryError for an exception from tweepy or requests; messages are redacted."""
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, tweepy.TooManyRequests):
        wait = _retry_after(exc.response.headers)
        return RateLimited(
            f"X: rate limited (429) while {action}: retry in {wait:.0f} s", retry_after=wait, http_status=429
        )
    if isinstance(exc, tweepy.HTTPException):
        return _http_error(exc, action)
    if isinstance(exc, requests.ConnectionError) and _never_sent(exc):
        # Connect refused or timed out, DNS, TLS handshake: the request never left.
        return TransientError(f"X: could not reach the API while {action}: {_describe(exc)}")
    if isinstance(exc, requests.RequestException | urllib3.exceptions.HTTPError):
        # Read timeout, connection dropped after sending, a broken answer: it may have been posted.
        return OutcomeUnknown(
            f"X: no complete answer while {action} (it may have been posted): {_describe(exc)}"
        )
    return OutcomeUnknown(f"X: unexpected error while {action}: {_describe(exc)}")


def _http_error(exc: tweepy.HTTPException, action: str) -> DeliveryError:
    """Map an HTTP error status (and X's duplicate-content 403) by STATUS_TABLE."""
    status = exc.response.status_code
    said = "; ".join(str(m) for m in exc.api_messages)[:300] or exc.response.reason or ""
    said = redact(said)
    if status == 403 and _is_duplicate(exc):
        # X refuses identical text; after an attempt whose outcome was unknown, this means the
        # earlier one went out, but X returns no id for it (TARGETS.md: give up, "possibly posted").
        return PermanentError(
            f"X: duplicate content (403) while {action}: an identical tweet exists, so this was "
            f"probably posted already; check the account's timeline ({said})",
            http_status=status,
        )
    default = (OutcomeUnknown, "server error", "the tweet may or may not be posted")
    if status < 400:  # a redirect: nothing was handled, and base_url points at the wrong place
        where = redact(exc.response.headers.get("location", ""))[:200]
        return TargetBroken(
            f"X: redirected ({status}) to {where!r} while {action}: check base_url", http_status=status
        )
    if status < 500:
        default = (PermanentError, "request refused", "not retrying")
    cls, meaning, advice = STATUS_TABLE.get(status, default)
    return cls(f"X: {meaning} ({status}) while {action}: {said}; {advice}", http_status=status)


def _is_duplicate(exc: tweepy.HTTPException) -> bool:
    """Whether a 403 is X's duplicate-content refusal (v2 says so only in its detail text)."""
    if DUPLICATE_CODES & set(exc.api_codes):
        return True
    return any("duplicate content" in str(message).lower() for message in exc.api_messages)


def _retry_after(headers: Any, now: float | None = None) -> float:
    """Seconds until the limit that was hit resets: the 15-minute window, or a 24-hour cap at 0."""
    resets = [_int(headers.get("x-rate-limit-reset"))]
    for prefix in DAILY_LIMITS:
        if _int(headers.get(f"{prefix}-remaining")) == 0:
            resets.append(_int(headers.get(f"{prefix}-reset")))
    known = [reset for reset in resets if reset is not None]
    if not known:
        return RATE_LIMIT_FALLBACK
    # The latest reset: waking at the 15-minute one while a daily cap is spent only meets another 429.
    return max(max(known) - (now if now is not None else time.time()), 1.0)


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _never_sent(exc: requests.ConnectionError) -> bool:
    """Whether a requests ConnectionError happened before the request could leave."""
    if isinstance(
        exc, requests.ConnectTimeout | requests.exceptions.SSLError | requests.exceptions.ProxyError
    ):
        return True
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, urllib3.exceptions.MaxRetryError):
        reason = reason.reason
    # NewConnectionError covers refused connections and DNS failures (NameResolutionError).
    return isinstance(reason, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {redact(str(exc))[:300]}"
