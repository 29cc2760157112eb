"""How long the delivery log keeps its details: SYNDICATOR_RETENTION days (default 365).

A year of a newsroom is ~200,000 attempts and, with a 10,000-subscriber list, tens of millions of
per-recipient email results. Past the retention, an attempt keeps its row and outcome (the log
still says what happened, when, with which HTTP status and error class) but loses its message
text; a per-recipient result of a delivery that is settled and was last changed before then is
deleted. Deliveries themselves, and their rendered text, stay. Applied daily by the beat task
``tasks.maintenance.prune_history`` and by ``syndicator prune [--dry-run]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from syndicator.models import Delivery, DeliveryAttempt, EmailRecipientResult

# Rows changed per statement: short transactions that do not hold locks the workers wait on.
BATCH = 5000
# A delivery in one of these states is not retried automatically, so its per-recipient results no
# longer decide who gets the post (an admin's retry of a year-old email would send to everyone).
SETTLED = (
    Delivery.Status.SENT,
    Delivery.Status.FAILED,
    Delivery.Status.SKIPPED,
    Delivery.Status.CANCELLED,
    Delivery.Status.DELETED,
)


@dataclass(frozen=True)
class Pruned:
    """What a prune cleared (or, on a dry run, would clear)."""

    cutoff: datetime
    attempt_messages: int
    email_results: int


def cutoff(now: datetime | None = None) -> datetime:
    """The instant before which details are dropped."""
    return (now or timezone.now()) - timedelta(days=settings.SYNDICATOR_RETENTION)


def prune(*, now: datetime | None = None, dry_run: bool = False) -> Pruned:
    """Clear old attempts' messages and delete old per-recipient results; the rows that count stay."""
    before = cutoff(now)
    # Both filters run on indexes (attempt_finished, email_result_updated): O(what is pruned).
    messages = DeliveryAttempt.objects.filter(finished_at__lt=before).exclude(message="")
    results = EmailRecipientResult.objects.filter(updated_at__lt=before, delivery__status__in=SETTLED)
    if dry_run:
        return Pruned(before, messages.count(), results.count())
    cleared = deleted = 0
    while ids := list(messages.values_list("pk", flat=True)[:BATCH]):
        with transaction.atomic():
            cleared += DeliveryAttempt.objects.filter(pk__in=ids).update(message="")
    while ids := list(results.values_list("pk", flat=True)[:BATCH]):
        with transaction.atomic():
            deleted += EmailRecipientResult.objects.filter(pk__in=ids).delete()[0]
    return Pruned(before, cleared, deleted)
