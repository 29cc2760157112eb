"""The signed publish webhook: a CMS says "look now", and the feed is polled at once.

Signed the Standard Webhooks way (https://www.standardwebhooks.com/): headers webhook-id,
webhook-timestamp and webhook-signature ("v1,<base64 HMAC-SHA256 of id.timestamp.body>") with a
``whsec_<base64>`` secret; the ``standardwebhooks`` package checks the signature and refuses a
timestamp more than 5 minutes off. A webhook-id seen in the last few minutes is refused too (a
replay). The body is never trusted for content: at most it names the article's URL, which the
poll then looks for (syndicator/tasks: a feed served from a cache may lag a little). The one
thing a signed call is believed on is that an article was unpublished (``post.unpublished``,
``post.trashed``, ``post.deleted``): a feed cannot say so, only stop showing the item
(docs/article-life.md). It names the article by its URL and WordPress guid or shortlink.

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
# What the WordPress plugin sends when a published post leaves "publish" (draft, private,
# pending, trash) or is deleted for good (integrations/wordpress/syndicator-webhook.php).
UNPUBLISH_EVENTS = frozenset({"post.unpublished", "post.trashed", "post.deleted"})


class Refused(Exception):
    """The call is not signed by the feed's secret, is too old, or was seen before (HTTP 401)."""


@dataclass(frozen=True)
class Call:
    """A verified call: which feed, and the article URL it named, if any."""

    feed: Feed
    url: str = ""
    event: str = ""
    # The links and guid the call names the article by (url, guid, shortlink), as sent.
    names: tuple[str, ...] = ()

    @property
    def unpublished(self) -> bool:
        return self.event in UNPUBLISH_EVENTS


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
    data = _json(body)
    event = data.get("type")
    names = tuple(
        value[:2000]
        for key in ("url", "guid", "shortlink")
        if isinstance(value := data.get(key), str) and value
    )
    return Call(
        feed=feed, url=_article_url(body), event=event[:50] if isinstance(event, str) else "", names=names
    )


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


def _json(body: bytes) -> dict:
    """The body as a JSON object, or {} (a "look now" may have no body)."""
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _article_url(body: bytes) -> str:
    """The article URL a body names ({"url": …}), or ""."""
    found = _json(body).get("url")
    return found[:2000] if isinstance(found, str) and found.startswith(("http://", "https://")) else ""


def unpublish(call: Call) -> list[int]:
    """Record the article a verified unpublish call names as unpublished; the posts' ids.

    Only the posts of the call's feed (or articles seen in it) are looked at: a feed's secret
    speaks for that feed. Matched by canonical link or guid key, as across feeds.
    """
    from django.db.models import Q

    from syndicator import canonical, watch
    from syndicator.models import Post

    site = canonical.site_of(call.feed.url)
    keys = {canonical.canonical_url(name) for name in call.names} | {
        canonical.guid_key(name, site) for name in call.names
    }
    keys.discard("")
    if not keys:
        return []
    with transaction.atomic():
        posts = (
            Post.objects.filter(Q(feed=call.feed) | Q(sightings__feed=call.feed))
            .filter(Q(canonical_url__in=keys) | Q(guid_key__in=keys) | Q(guid__in=call.names))
            .distinct()
        )
        articles = {post.same_as_id or post.pk: post for post in posts}
        return [pk for pk, post in articles.items() if watch.unpublish(post, reason=watch.WEBHOOK)]
