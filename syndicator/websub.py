"""WebSub (W3C Recommendation, 2018-01-23), the subscriber's side: subscribe to the hub a feed
names, answer the hub's verification of intent, take signed content, renew, unsubscribe.

    poll finds a hub ──ensure──▶ POST hub.mode=subscribe ──202──▶ pending
    hub GETs the callback (same topic and mode, a challenge) ──echo──▶ subscribed until …
    hub POSTs the feed, X-Hub-Signature = HMAC(hub.secret, body) ──▶ stored as a poll would
    ``maintain`` (beat): renew before the lease ends; a hub that never verifies, a lease that ran
    out, or a denial → failed, and the feed is polled normally at once; a removed or disabled
    feed, or one whose hub or topic changed → unsubscribe.

Spec facts relied on (https://www.w3.org/TR/websub/): a hub answers a (un)subscription request
with 202 Accepted (§5.1.2); it verifies intent with a GET carrying hub.mode, hub.topic,
hub.challenge and, for subscribe, hub.lease_seconds, which the subscriber answers 2xx with the
challenge, or 404 when it did not ask for it (§5.3.1); a denial is a GET with hub.mode=denied and
hub.reason (§5.2); hub.secret is under 200 bytes (§5.1.1); content carries X-Hub-Signature:
method=hex, method one of sha1, sha256, sha384, sha512 (§8.1), and a body whose signature is
missing or wrong is ignored but may still be acknowledged with 2xx (§8.2), which is what we do.

The callback URL holds a random key per subscription; the hub.secret is derived from that key
and SECRET_KEY, so no secret is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from syndicator import scheduling
from syndicator.errors import FeedError
from syndicator.models import Feed, PushSubscription
from syndicator.redact import redact

log = logging.getLogger(__name__)

State = PushSubscription.State
SIGNATURE_METHODS = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "sha384": hashlib.sha384,
    "sha512": hashlib.sha512,
}
_LIVE = (State.PENDING, State.SUBSCRIBED, State.FAILED)


@dataclass(frozen=True)
class PushState:
    """What the feeds list, the feed page and the API show of a feed's push."""

    state: str  # none, pending, subscribed, failed
    expires_at: datetime | None = None
    reason: str = ""

    def __str__(self) -> str:
        if self.state == "subscribed" and self.expires_at:
            return f"subscribed until {self.expires_at:%Y-%m-%d %H:%M} UTC"
        return f"failed: {self.reason}" if self.state == "failed" else self.state


def enabled() -> bool:
    """Whether push can work: hubs need a public URL to call us back at."""
    return bool(settings.SYNDICATOR_PUSH_ENABLED)


def hub_secret(subscription: PushSubscription) -> str:
    """The hub.secret of a subscription (hex, 64 characters: under the spec's 200 bytes)."""
    message = f"syndicator-websub:{subscription.callback_key}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


def callback_url(subscription: PushSubscription) -> str:
    """Where the hub calls us for this subscription."""
    path = reverse("websub-callback", args=[subscription.callback_key])
    return settings.SYNDICATOR_PUBLIC_URL.rstrip("/") + path


def current(feed: Feed) -> PushSubscription | None:
    """The feed's subscription that decides its push state (not one being unsubscribed)."""
    return PushSubscription.objects.filter(feed=feed, state__in=_LIVE).order_by("-id").first()


def push_state(feed: Feed, subscription: PushSubscription | None = None) -> PushState:
    """A feed's push state: none, pending, subscribed until …, failed with the reason."""
    sub = subscription or current(feed)
    if sub is None:
        return PushState("none")
    if sub.state == State.SUBSCRIBED:
        return PushState("subscribed", sub.expires_at)
    return PushState(sub.state, reason=sub.last_error if sub.state == State.FAILED else "")


def ensure(feed: Feed, *, now: datetime | None = None) -> PushSubscription | None:
    """Subscribe the feed at its hub if it names one and has no live subscription to it (or a
    failed one old enough to try again); an old subscription to another hub or topic is ended."""
    now = now or timezone.now()
    if not enabled() or not feed.enabled or not feed.hub_url:
        return None
    topic = feed.self_url or feed.url
    sub = current(feed)
    if sub is not None and (sub.hub_url, sub.topic_url) != (feed.hub_url, topic):
        _unsubscribe(sub, now)  # the hub or the topic moved: re-subscribe below
        sub = None
    if sub is not None:
        retry = timedelta(seconds=settings.SYNDICATOR_WEBSUB_RETRY_AFTER)
        if sub.state != State.FAILED or (sub.requested_at and now - sub.requested_at < retry):
            return sub
        sub.delete()  # a fresh callback key and secret for the new attempt
    try:
        with transaction.atomic():
            sub = PushSubscription.objects.create(
                feed=feed, hub_url=feed.hub_url, topic_url=topic, callback_key=secrets.token_urlsafe(32)
            )
    except IntegrityError:  # subscribed a moment ago by another process
        return current(feed)
    _request(sub, "subscribe", now)
    return sub


def _request(sub: PushSubscription, mode: str, now: datetime) -> bool:
    """Send a subscribe or unsubscribe request; record it as pending, or failed with the reason."""
    fields = {"hub.mode": mode, "hub.topic": sub.topic_url, "hub.callback": callback_url(sub)}
    if mode == "subscribe":
        fields |= {"hub.secret": hub_secret(sub), "hub.lease_seconds": str(settings.SYNDICATOR_WEBSUB_LEASE)}
    PushSubscription.objects.filter(pk=sub.pk).update(pending_mode=mode, requested_at=now)
    sub.pending_mode, sub.requested_at = mode, now
    from syndicator.feedhttp import post_form  # httpx (~50 ms): not for a CLI that only lists

    try:
        status, text = post_form(sub.hub_url, fields)
    except FeedError as exc:
        reason = f"hub unreachable: {exc}"
    else:
        if status == 202 or 200 <= status < 300:  # 202 per §5.1.2; some hubs answer 204
            log.info("feed %s: %s request accepted by the hub", sub.feed_id, mode)
            if mode == "subscribe" and sub.state != State.SUBSCRIBED:
                _set(sub, state=State.PENDING, last_error="")
            return True
        reason = f"hub answered HTTP {status}" + (f": {text}" if text else "")
    _fail(sub, redact(reason)[:2000], keep_lease=sub.state == State.SUBSCRIBED, now=now)
    return False


def _unsubscribe(sub: PushSubscription, now: datetime) -> None:
    """Ask the hub to end a subscription; the row stays until the hub confirms (or gives up)."""
    if sub.state in (State.PENDING, State.SUBSCRIBED) or sub.pending_mode:
        _set(sub, state=State.UNSUBSCRIBING)
        _request(sub, "unsubscribe", now)
    else:
        sub.delete()


def _set(sub: PushSubscription, **changes: object) -> None:
    PushSubscription.objects.filter(pk=sub.pk).update(**changes)
    for name, value in changes.items():
        setattr(sub, name, value)


def _fail(sub: PushSubscription, reason: str, *, now: datetime, keep_lease: bool = False) -> None:
    """Record a failed request; unless a lease still runs, the feed goes back to normal polling."""
    if sub.state == State.UNSUBSCRIBING:
        log.info("subscription %s: unsubscribe not confirmed (%s); forgotten", sub.pk, reason)
        sub.delete()
        return
    if keep_lease and sub.expires_at and sub.expires_at > now:
        _set(sub, pending_mode="", last_error=reason)  # renewal failed; the lease still holds
    else:
        _set(sub, state=State.FAILED, pending_mode="", last_error=reason)
        _resume_polling(sub.feed_id, now)
    log.warning("feed %s: WebSub subscription failed: %s", sub.feed_id, reason)


def _resume_polling(feed_id: int | None, now: datetime) -> None:
    """Poll a feed whose push ended at once, and from then on at its normal interval."""
    if feed_id is not None:
        Feed.objects.filter(pk=feed_id, next_poll_at__gt=now).update(next_poll_at=now)
        scheduling.wake_on_commit(scheduling.FEEDS)


# --- the hub calls us --------------------------------------------------------------------------


def verify_intent(key: str, params: dict[str, str], *, now: datetime | None = None) -> str | None:
    """The challenge to echo for a hub's verification GET, or None (answer 404)."""
    now = now or timezone.now()
    sub = PushSubscription.objects.filter(callback_key=key).first()
    mode, topic = params.get("hub.mode", ""), params.get("hub.topic", "")
    if sub is None or topic != sub.topic_url:
        return None
    if mode == "denied":
        _set(sub, pending_mode="")
        _fail(
            sub,
            redact(f"hub denied the subscription: {params.get('hub.reason', '') or 'no reason given'}"),
            now=now,
        )
        return ""
    challenge = params.get("hub.challenge", "")
    if not challenge or mode != sub.pending_mode:
        return None
    if mode == "unsubscribe":
        sub.delete()
        log.info("subscription %s: unsubscribed at the hub", sub.pk)
        return challenge
    try:
        lease = int(params.get("hub.lease_seconds", ""))
    except ValueError:
        lease = settings.SYNDICATOR_WEBSUB_LEASE  # §5.3: required for subscribe; be lenient
    _set(
        sub,
        state=State.SUBSCRIBED,
        pending_mode="",
        lease_seconds=lease,
        expires_at=now + timedelta(seconds=lease),
        last_error="",
    )
    log.info("feed %s: subscribed at its hub for %d s", sub.feed_id, lease)
    # From now on polling is only the safety net (syndicator/rhythm.py).
    safety = now + timedelta(seconds=settings.SYNDICATOR_WEBSUB_SAFETY_INTERVAL)
    if sub.feed_id is not None:  # None: the feed was deleted meanwhile (the row outlives it)
        Feed.objects.filter(pk=sub.feed_id, next_poll_at__lt=safety).update(next_poll_at=safety)
    return challenge


def signature_valid(sub: PushSubscription, body: bytes, header: str) -> bool:
    """Whether X-Hub-Signature (method=hex) is the HMAC of the raw body with the hub.secret."""
    method, _, given = header.strip().partition("=")
    digest = SIGNATURE_METHODS.get(method.strip().lower())
    if digest is None or not given:
        return False
    expected = hmac.new(hub_secret(sub).encode(), body, digest).hexdigest()
    return hmac.compare_digest(expected, given.strip().lower())


# --- the beat's round --------------------------------------------------------------------------


def maintain(*, now: datetime | None = None) -> dict[str, int]:
    """Renew, time out, and end subscriptions as their feeds and leases require; counts by action."""
    now = now or timezone.now()
    counts = {"renewed": 0, "timed_out": 0, "expired": 0, "unsubscribed": 0}
    verify_timeout = timedelta(seconds=settings.SYNDICATOR_WEBSUB_VERIFY_TIMEOUT)
    gone = Q(feed__isnull=True) | Q(feed__enabled=False) | Q(feed__hub_url="")
    for sub in PushSubscription.objects.filter(gone).exclude(state=State.UNSUBSCRIBING):
        _unsubscribe(sub, now)
        counts["unsubscribed"] += 1
    if not enabled():
        return counts
    for sub in PushSubscription.objects.filter(pending_mode__gt="", requested_at__lt=now - verify_timeout):
        seconds = settings.SYNDICATOR_WEBSUB_VERIFY_TIMEOUT
        _fail(sub, f"the hub did not verify the {sub.pending_mode} request within {seconds:g} s", now=now)
        counts["timed_out"] += 1
    subscribed = PushSubscription.objects.filter(state=State.SUBSCRIBED)
    for sub in subscribed.filter(expires_at__lte=now):
        why = f"; renewal failed: {sub.last_error}" if sub.last_error else ""
        _set(sub, pending_mode="")
        _fail(sub, f"the lease ran out{why}"[:2000], now=now)
        counts["expired"] += 1
    for sub in subscribed.filter(pending_mode="", expires_at__gt=now).select_related("feed"):
        # Renew within the last tenth of the lease, and at least two rounds before it ends.
        margin = max((sub.lease_seconds or 0) / 10, 2 * settings.SYNDICATOR_WEBSUB_TICK)
        # expires_at__gt leaves out NULLs; the test tells the type checker so.
        due = sub.expires_at is not None and sub.expires_at - now <= timedelta(seconds=margin)
        if due and not _recently_failed(sub, now):
            _request(sub, "subscribe", now)
            counts["renewed"] += 1
    for feed in Feed.objects.filter(enabled=True).exclude(hub_url=""):
        ensure(feed, now=now)  # re-subscribes a feed whose hub or topic changed, retries failures
    return counts


def _recently_failed(sub: PushSubscription, now: datetime) -> bool:
    """A renewal refused moments ago is not asked again every round."""
    retry = timedelta(seconds=settings.SYNDICATOR_WEBSUB_TICK * 4)
    return bool(sub.last_error and sub.requested_at and now - sub.requested_at < retry)
