"""Whether a feed or a target is healthy, derived from its recent history rather than stored.

The CLI lists, the admin and (later) metrics all ask here, so they never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from syndicator.models import Delivery, DeliveryAttempt, Feed, Target

Kind = DeliveryAttempt.Kind
Outcome = DeliveryAttempt.Outcome

# A feed that failed this many polls in a row is "failing"; fewer is a "warning".
FEED_FAILING_AFTER = 3
# A target whose last this-many attempts all failed is "failing".
TARGET_RECENT_ATTEMPTS = 5
# Deliveries that need a person (failed, uncertain) count against a target for this long.
ATTENTION_WINDOW = timedelta(days=1)


@dataclass(frozen=True)
class Health:
    """A verdict: ok, warning, failing, paused, disabled or new, and why."""

    state: str
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.state in {"ok", "new"}


def feed_health(feed: Feed) -> Health:
    """A feed's health from its last polls."""
    if not feed.enabled:
        return Health("disabled", "polling is switched off")
    if feed.last_status == Feed.Status.NEW:
        return Health("new", "not polled yet")
    if feed.consecutive_failures >= FEED_FAILING_AFTER:
        return Health("failing", f"{feed.consecutive_failures} polls in a row failed: {feed.last_error}")
    if feed.consecutive_failures:
        return Health("warning", f"last poll failed: {feed.last_error}")
    return Health("ok")


def target_health(target: Target) -> Health:
    """A target's health from its state, its recent attempts and deliveries waiting on a person."""
    if not target.enabled:
        return Health("disabled", "switched off")
    if target.paused_at:
        return Health("paused", target.paused_reason or "paused")
    # A look-up of an uncertain delivery that could not find its post says nothing about the
    # target (a successful one does: it found the post published); nor does a person's retry or
    # cancel (a verdict on whether it went out does).
    failed_look_up = Q(kind=Kind.LOOKUP) & ~Q(outcome=Outcome.SENT)
    decision = Q(kind=Kind.VERDICT) & ~Q(outcome__in=(Outcome.MARKED_SENT, Outcome.MARKED_NOT_SENT))
    attempts = DeliveryAttempt.objects.filter(delivery__target=target, finished_at__isnull=False)
    if target.resumed_at is not None:
        # An admin resumed it, saying the cause is fixed: as for the failing streak
        # (recovery.failing_streak), only what happened since counts.
        attempts = attempts.filter(started_at__gte=target.resumed_at)
    recent = list(
        attempts.exclude(failed_look_up | decision)
        .order_by("-finished_at")
        .values_list("outcome", "message")[:TARGET_RECENT_ATTEMPTS]
    )
    # An admin's "marked as sent" is a send that happened (syndicator.decisions.mark_uncertain).
    sent = (Outcome.SENT, Outcome.MARKED_SENT)
    if len(recent) == TARGET_RECENT_ATTEMPTS and all(o not in sent for o, _ in recent):
        return Health("failing", f"the last {len(recent)} attempts failed: {recent[0][1]}")
    stuck = Delivery.objects.filter(
        target=target,
        status__in=(Delivery.Status.FAILED, Delivery.Status.UNCERTAIN),
        updated_at__gte=timezone.now() - ATTENTION_WINDOW,
    ).count()
    if stuck:
        return Health("warning", f"{stuck} failed or uncertain deliveries in the last day")
    return Health("ok")
