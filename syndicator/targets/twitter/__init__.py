"""The X (Twitter) target: tweepy's Client (API v2) with OAuth 1.0a user context.

tweepy hard-codes https://api.twitter.com and sends no timeout (TARGETS.md section 3), so the
client gets a ``requests.Session`` of ours ("approach A") that rewrites the host to the target's
``base_url`` and puts a timeout on every call. tweepy 4.17 has no v2 media upload, so an image
goes to ``POST /2/media/upload`` through that same session, signed with tweepy's OAuth1 handler.

Errors follow TARGETS.md's X table, declared once in ``errors.py`` (``ERRORS``); tweepy leaves
``requests`` errors unwrapped, so the transport side is mapped here too, in the spirit of
``syndicator.targets.http``: never sent → TransientError, maybe sent → OutcomeUnknown (publishing
calls only; a lost look-up is a plain TransientError).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import requests
import tweepy
from django.conf import settings

from syndicator.errors import DeliveryError, EditRefused, PermanentError, TargetBroken
from syndicator.redact import redact
from syndicator.targets.base import Capabilities, HttpAdapter, SendResult, register
from syndicator.targets.config import URL, Setting
from syndicator.targets.faults import RATE_LIMIT_FALLBACK
from syndicator.targets.images import download_image
from syndicator.targets.twitter.errors import ERRORS, rate_limit_wait, transport_error
from syndicator.targets.twitter.text import RULES as TEXT_RULES

if TYPE_CHECKING:
    from syndicator.formatting import Message
    from syndicator.models import Delivery

__all__ = ["ERRORS", "IMAGE_MAX_BYTES", "RATE_LIMIT_FALLBACK", "TwitterAdapter"]

log = logging.getLogger(__name__)

TWEEPY_HOST = "https://api.twitter.com"  # what tweepy's BaseClient.request prefixes every route with
IMAGE_MAX_BYTES = 5 * 1024 * 1024  # X's limit for a tweet image (docs.x.com media best practices)
CREATE_TWEET = "POST /2/tweets"
GET_ME = "GET /2/users/me"
DELETE_TWEET = "DELETE /2/tweets/:id"
GET_TWEET = "GET /2/tweets/:id"
EDIT_TWEET = "POST /2/tweets (edit)"
EDIT_WINDOW = 30 * 60  # docs.x.com "Edit Posts": 30 minutes from the original post, 5 edits
MAX_EDITS = 5


class RedirectSession(requests.Session):
    """A session that sends tweepy's requests to ``base_url`` and never waits without a timeout."""

    def __init__(self, base_url: str, timeout: float) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        # (connect, read): a connect that hangs is cut sooner, a slow answer gets the full time.
        self.timeout = (min(timeout, 10.0), timeout)
        # The last answer's status: tweepy's Response does not carry it, a "2xx without an id" does.
        self.last_status: int | None = None

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
        response = super().request(method, url, *args, **kwargs)
        self.last_status = response.status_code
        return response


@register
class TwitterAdapter(HttpAdapter):
    """Post to an X account through API v2 (tweepy), with an optional image."""

    kind = "twitter"
    label = "X / Twitter"
    default_base_url = TWEEPY_HOST
    text = TEXT_RULES
    errors = ERRORS
    # X API v2: DELETE /2/tweets/:id; POST /2/tweets with edit_options.previous_post_id edits a post
    # (docs.x.com "Create or Edit Post"), within 30 minutes of the original, 5 times, each edit a
    # new post id (docs.x.com "Edit Posts").
    capabilities = Capabilities(
        edit=True,
        delete=True,
        edit_window=EDIT_WINDOW,
        max_edits=MAX_EDITS,
        note="edits a post within 30 minutes of posting, at most 5 times; deletes posts",
    )
    settings_spec = (
        Setting("username", "Account handle without @, for tweet URLs (else x.com/i/web/status/ID)"),
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
                raise self._error(exc, CREATE_TWEET, publishing=True) from None
        finally:
            client.session.close()
        tweet_id = str((response.data or {}).get("id") or "")
        if not tweet_id:
            # X answered 2xx without an id: something may be public, and we cannot point at it.
            raise self.no_id(CREATE_TWEET, client.session.last_status, publishing=True)
        details = {"tweet_id": tweet_id, **({"media_ids": media_ids} if media_ids else {})}
        return SendResult(external_id=tweet_id, external_url=self._tweet_url(tweet_id), details=details)

    def edit(self, message: Message, delivery: Delivery) -> SendResult:
        """Edit the tweet: read its newest version first (GET /2/tweets/:id answers the newest of an
        edited post, with ``edit_controls``), then POST /2/tweets with ``edit_options.
        previous_post_id`` naming it. Safe to repeat: when the newest version already reads as
        ``message`` (an edit whose answer was lost), it is returned, not edited again. Outside
        X's window or past its 5 edits: EditRefused, before anything is sent."""
        tweet_id = str(delivery.sent_details.get("tweet_id") or delivery.external_id or "").strip()
        if not tweet_id.isdigit():
            raise PermanentError(f"{self.label}: the delivery names no tweet id ({tweet_id!r})")
        client = self._client()
        try:
            try:
                fields = {"tweet.fields": "edit_history_tweet_ids,edit_controls"}
                found = client.request("GET", f"/2/tweets/{tweet_id}", params=fields, user_auth=True)
            except tweepy.NotFound:
                raise EditRefused(f"{self.label} edit: the post {tweet_id} no longer exists (404)") from None
            except Exception as exc:
                raise self._error(exc, GET_TWEET, publishing=False) from None
            newest = (_json(found).get("data") or {}) if found is not None else {}
            newest_id = str(newest.get("id") or tweet_id)
            details = {**delivery.sent_details, "tweet_id": newest_id}
            if newest.get("text") == message.text:
                return SendResult(newest_id, self._tweet_url(newest_id), details)
            self._editable(newest.get("edit_controls") or {}, tweet_id)
            body = {"text": message.text, "edit_options": {"previous_post_id": newest_id}}
            if media := delivery.sent_details.get("media_ids"):
                body["media"] = {"media_ids": [str(m) for m in media]}
            try:
                answer = client.request("POST", "/2/tweets", json=body, user_auth=True)
            except tweepy.HTTPException as exc:
                if (
                    exc.response.status_code in (400, 403)
                    and "edit" in " ".join(map(str, exc.api_messages)).lower()
                ):
                    said = self._scrub("; ".join(str(m) for m in exc.api_messages))[:300]
                    raise EditRefused(
                        f"{self.label} edit: {redact(said)} ({exc.response.status_code})"
                    ) from None
                raise self._error(exc, EDIT_TWEET, publishing=False) from None
            except Exception as exc:
                raise self._error(exc, EDIT_TWEET, publishing=False) from None
        finally:
            client.session.close()
        new_id = str((_json(answer).get("data") or {}).get("id") or "")
        if not new_id:
            raise self.no_id(EDIT_TWEET, client.session.last_status, publishing=False)
        details["tweet_id"] = new_id
        return SendResult(new_id, self._tweet_url(new_id), details)

    def _editable(self, controls: dict, tweet_id: str) -> None:
        """EditRefused when X's edit_controls say the post can no longer be edited."""
        if controls.get("is_edit_eligible") is False:
            raise EditRefused(f"{self.label} edit: X says post {tweet_id} cannot be edited")
        if str(controls.get("edits_remaining", "")).strip() == "0":
            raise EditRefused(f"{self.label} edit: post {tweet_id} was edited {MAX_EDITS} times, X's limit")
        until = str(controls.get("editable_until") or "")
        try:
            closes = datetime.fromisoformat(until.replace("Z", "+00:00")) if until else None
        except ValueError:
            closes = None
        if closes is not None and closes <= datetime.now(UTC):
            raise EditRefused(
                f"{self.label} edit: X edits a post only within 30 minutes of posting (closed {until})"
            )

    def delete(self, delivery: Delivery) -> None:
        """DELETE /2/tweets/:id (tweepy's delete_tweet). A tweet already gone (404, or an answer of
        ``"deleted": false``) counts as deleted: nothing of it is left to show."""
        tweet_id = str(delivery.sent_details.get("tweet_id") or delivery.external_id or "").strip()
        if not tweet_id.isdigit():
            raise PermanentError(f"{self.label}: the delivery names no tweet id ({tweet_id!r})")
        client = self._client()
        try:
            client.delete_tweet(tweet_id, user_auth=True)
        except tweepy.NotFound:
            return
        except Exception as exc:
            raise self._error(exc, DELETE_TWEET, publishing=False) from None
        finally:
            client.session.close()

    def check(self) -> str:
        """Ask X who the credentials belong to: GET /2/users/me."""
        client = self._client()
        try:
            response = client.get_me(user_auth=True)
        except Exception as exc:
            raise self._error(exc, GET_ME, publishing=False) from None
        finally:
            client.session.close()
        username = getattr(response.data, "username", "") if response.data else ""
        if not username:
            raise TargetBroken(f"{self.label} {GET_ME}: answered without a username")
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
        client.session = RedirectSession(self.base_url(), self._timeout())
        return client

    def _timeout(self) -> float:
        """The target's timeout (a bad value pauses the target), else SYNDICATOR_TARGET_TIMEOUT."""
        return self.timeout() or settings.SYNDICATOR_TARGET_TIMEOUT

    def _error(self, exc: Exception, action: str, *, publishing: bool) -> DeliveryError:
        """The DeliveryError for an exception from tweepy or requests, by the table; redacted."""
        if isinstance(exc, DeliveryError):
            return exc
        if isinstance(exc, tweepy.HTTPException):
            response = exc.response
            status = response.status_code
            said = "; ".join(str(m) for m in exc.api_messages)[:300] or response.reason or ""
            said = self._scrub(said)
            codes = [code for code in exc.api_codes if code in ERRORS.by_code]
            return self.network_error(
                ERRORS.rule(status, codes[0] if codes else None, said),
                action,
                publishing=publishing,
                http_status=status,
                said=redact(said),
                retry_after=rate_limit_wait(response.headers) if status == 429 else None,
                where=redact(response.headers.get("location", ""))[:200],
            )
        # requests/urllib3 errors (tweepy leaves them unwrapped), or anything else mid-call: a lost
        # answer unless the request provably never left.
        return transport_error(exc, self.label, action, publishing=publishing)

    def _scrub(self, text: str) -> str:
        """X's words with this target's four secrets taken out: an answer may echo a token back,
        and ``redact`` knows only the shapes of secrets, not these values."""
        for name in ("api_key_env", "api_secret_env", "access_token_env", "access_secret_env"):
            try:
                value = self.secret(name)
            except TargetBroken:
                continue
            if value:
                text = text.replace(value, "<redacted>")
        return text

    def _tweet_url(self, tweet_id: str) -> str:
        username = str(self.setting("username") or "").strip().lstrip("@")
        if username:
            return f"https://x.com/{username}/status/{tweet_id}"
        return f"https://x.com/i/web/status/{tweet_id}"

    def _wants_image(self, message: Message) -> bool:
        return bool(self.setting("image")) and bool(message.image_url)

    def _upload_image(self, client: tweepy.Client, image_url: str) -> list[str]:
        """Download the image and upload it to X; [] (a text-only tweet) if any step fails."""
        try:
            content, content_type = download_image(
                image_url, timeout=self._timeout(), max_bytes=IMAGE_MAX_BYTES
            )
            upload_base = str(self.setting("upload_base_url") or self.base_url()).rstrip("/")
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


def _json(response: Any) -> dict:
    """A requests.Response's JSON object, or {}."""
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
