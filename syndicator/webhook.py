"""The signed publish webhook: a CMS says "look now", and the feed is polled at once.

Signed the Standard Webhooks way (https://www.standardwebhooks.com/): headers webhook-id,
webhook-timestamp and webhook-signature ("v1,<base64 HMAC-SHA256 of id.timestamp.body>") with a
``whsec_<base64>`` secret; the ``standardwebhooks`` package checks the signature and refuses a
timestamp more than 5 minutes off. A webhook-id seen in the last few minutes is refused too (a
replay). The body is never trusted for content: at most it names the article's URL, which the
poll then looks for (syndicator/tasks: a feed served from a cache may lag a little).

The secret is derived from the feed's random ``webhook_key`` and SECRET_KEY, so it is never
stored; a new key (``feeds webhook --rotate``) makes a new secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from syndicator.models import Feed

# A webhook-id is remembered this long: past the 5-minute timestamp tolerance on either side.
REPLAY_WINDOW = 11 * 60
MAX_BODY = 64 * 1024  # "look now" and perhaps a URL; nothing a CMS sends needs more


class Refused(Exception):
    """The call is not signed by the feed's secret, is too old, or was seen before (HTTP 401)."""


@dataclass(frozen=True)
class Call:
    """A verified call: which feed, and the article URL it named, if any."""

    feed: Feed
    url: str = ""


def secret(feed: Feed) -> str:
    """The feed's webhook secret (whsec_ and 32 bytes in base64), or "" when it has none."""
    if not feed.webhook_key:
        return ""
    message = f"syndicator-webhook:{feed.pk}:{feed.webhook_key}".encode()
    raw = hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).digest()
    return "whsec_" + base64.b64encode(raw).decode("ascii")


def url(feed: Feed) -> str:
    """Where a CMS POSTs for this feed."""
    return settings.SYNDICATOR_PUBLIC_URL.rstrip("/") + reverse("feed-webhook", args=[feed.pk])


def configure(feed: Feed, *, rotate: bool = False) -> str:
    """Give the feed a webhook (or a new secret with rotate); its secret."""
    if rotate or not feed.webhook_key:
        feed.webhook_key = secrets.token_urlsafe(24)
        Feed.objects.filter(pk=feed.pk).update(webhook_key=feed.webhook_key, webhook_seen={})
    return secret(feed)


def verify(feed: Feed, body: bytes, headers: dict[str, str], *, now: float | None = None) -> Call:
    """The verified call, or Refused with a reason safe to show (never the secret)."""
    key = secret(feed)
    if not key:
        raise Refused("this feed has no webhook (create one with `syndicator feeds webhook`)")
    try:
        Webhook(key).verify(body, headers, json_parse=False)
    except WebhookVerificationError as exc:
        raise Refused(f"signature refused: {exc}") from None
    except (ValueError, UnicodeDecodeError, TypeError):  # a malformed header or a non-UTF-8 body
        raise Refused("signature refused: malformed webhook headers or body") from None
    message_id = {k.lower(): v for k, v in headers.items()}["webhook-id"][:200]
    _remember(feed, message_id, time.time() if now is None else now)
    return Call(feed=feed, url=_article_url(body))


def _remember(feed: Feed, message_id: str, now: float) -> None:
    """Record a webhook-id, or Refused if it was seen within the window (locked: two copies of
    one call arriving together cannot both pass)."""
    with transaction.atomic():
        seen = Feed.objects.select_for_update().values_list("webhook_seen", flat=True).get(pk=feed.pk) or {}
        recent = {mid: at for mid, at in seen.items() if now - at < REPLAY_WINDOW}
        if message_id in recent:
            raise Refused("replayed: this webhook-id was already received")
        recent[message_id] = now
        Feed.objects.filter(pk=feed.pk).update(webhook_seen=recent)


def _article_url(body: bytes) -> str:
    """The article URL a body names ({"url": …}), or ""."""
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return ""
    found = data.get("url") if isinstance(data, dict) else None
    return found[:2000] if isinstance(found, str) and found.startswith(("http://", "https://")) else ""
