"""Deliveries: create (the outbox), enqueue, claim, send, record, retry, sweep.

This is the one place that changes a delivery's status and writes the delivery log
(``DeliveryAttempt``). Every status change is a conditional UPDATE, so two workers holding the
same task message, or a worker and the sweeper, can never both act on one delivery.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from syndicator.errors import (
    DeliveryError,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    TargetBroken,
    TransientError,
    UserError,
)
from syndicator.models import Delivery, DeliveryAttempt, Post, Target
from syndicator.redact import redact
from syndicator.targets import get_adapter

log = logging.getLogger(__name__)

Status = Delivery.Status
Outcome = DeliveryAttempt.Outcome
CLAIMABLE = (Status.QUEUED, Status.RETRYING)
ACTIVE_TARGET = Q(target__enabled=True, target__paused_at__isnull=True)
SWEEP_BATCH = 500


# --- creating deliveries -----------------------------------------------------------------------


def target_matches(target: Target, post: Post) -> bool:
    """Whether a target's feed, language and category filters accept a post."""
    feed_ids = {f.pk for f in target.feeds.all()}
    if feed_ids and post.feed_id not in feed_ids:
        return False
    languages = {lang.lower() for lang in target.languages}
    if languages and (post.language or "").lower() not in languages:
        return False
    categories = {c.casefold() for c in target.categories}
    return not categories or bool(categories & {c.casefold() for c in post.categories})


def create_auto_deliveries(posts: Iterable[Post]) -> list[Delivery]:
    """Create one delivery per matching enabled target for each post; enqueue them on commit.

    Call inside the transaction that stores the posts: the rows are the outbox, and the task
    messages go out only once they are committed.
    """
    targets = list(Target.objects.filter(enabled=True).prefetch_related("feeds"))
    created = [
        Delivery.objects.create(post=post, target=target, origin=Delivery.Origin.AUTO)
        for post in posts
        for target in targets
        if target_matches(target, post)
    ]
    enqueue_on_commit(created)
    return created


def repost(
    post: Post, targets: Iterable[Target], *, text: str = "", requested_by: str = ""
) -> list[Delivery]:
    """Create manual deliveries of a post to the given targets (an editor's repost)."""
    targets = list(targets)
    if not targets:
        raise UserError("no target to repost to")
    with transaction.atomic():
        created = [
            Delivery.objects.create(
                post=post,
                target=target,
                origin=Delivery.Origin.MANUAL,
                requested_by=requested_by,
                text_override=text,
            )
            for target in targets
        ]
        enqueue_on_commit(created)
    return created


# --- enqueueing ---------------------------------------------------------------------------------


def queue_name(kind: str) -> str:
    """The Celery queue that carries deliveries for one target kind."""
    return f"deliver.{kind}"


def enqueue_on_commit(deliveries: list[Delivery]) -> None:
    """Send the deliveries' task messages once the current transaction commits."""
    pairs = [(d.pk, d.target.kind) for d in deliveries]
    if pairs:
        transaction.on_commit(lambda: enqueue(pairs))


def enqueue(pairs: Iterable[tuple[int, str]]) -> int:
    """Send one deliver task per (delivery id, target kind); return how many went out.

    A broker that is down loses nothing: the rows stay queued and the sweeper sends them later.
    """
    from tasks.deliver import deliver

    sent: list[int] = []
    try:
        for delivery_id, kind in pairs:
            deliver.apply_async(args=[delivery_id], queue=queue_name(kind))
            sent.append(delivery_id)
    except Exception as exc:  # kombu raises many classes for a broker that is away
        log.warning("broker unavailable, %d deliveries wait for the sweeper: %s", len(sent), redact(str(exc)))
    if sent:
        Delivery.objects.filter(pk__in=sent).update(enqueued_at=timezone.now())
    return len(sent)


# --- the retry policy ---------------------------------------------------------------------------


def retry_delay(
    failures: int, retry_after: float | None = None, *, policy: dict | None = None
) -> float | None:
    """Seconds to wait after the given number of failed attempts, or None to give up.

    Policy (settings.SYNDICATOR_RETRY): backoff schedule, jitter, max_attempts, max_delay.
    A network's ``retry_after`` is a floor, honoured even past max_delay.
    """
    policy = policy or settings.SYNDICATOR_RETRY
    if failures >= policy["max_attempts"]:
        return None
    schedule = policy["backoff"]
    base = schedule[min(failures, len(schedule)) - 1] if failures > 0 else schedule[0]
    jitter = policy.get("jitter", 0)
    delay = min(base * random.uniform(1 - jitter, 1 + jitter), policy["max_delay"])
    return max(delay, retry_after or 0)


# --- claim, send, record ------------------------------------------------------------------------


def claim(delivery_id: int, *, now: datetime | None = None) -> bool:
    """Atomically move a due delivery of an active target to `sending`; False if there is none."""
    now = now or timezone.now()
    lease = timedelta(seconds=settings.SYNDICATOR_SEND_LEASE)
    return bool(
        Delivery.objects.filter(pk=delivery_id, status__in=CLAIMABLE)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .filter(pk__in=Delivery.objects.filter(ACTIVE_TARGET, pk=delivery_id).values("pk"))
        .update(status=Status.SENDING, attempts=F("attempts") + 1, lease_until=now + lease, updated_at=now)
    )


def attempt_delivery(delivery_id: int, *, task_id: str = "", worker: str = "") -> DeliveryAttempt | None:
    """Claim, render, send and record one delivery; None when there was nothing to claim."""
    if not claim(delivery_id):
        log.info("delivery %s: nothing to claim (already handled, not due, or target paused)", delivery_id)
        return None
    delivery = Delivery.objects.select_related("post__feed", "target").get(pk=delivery_id)
    attempt = DeliveryAttempt.objects.create(
        delivery=delivery, number=delivery.attempts, worker=worker[:200], task_id=task_id[:200]
    )
    started = time.monotonic()
    try:
        adapter = get_adapter(delivery.target)
        message = adapter.render(delivery)
    except DeliveryError as exc:
        return _record_failure(delivery, attempt, exc, started)
    except Exception as exc:  # a bug while rendering: nothing was sent, so this is safe to call permanent
        log.exception("delivery %s: rendering failed", delivery_id)
        return _record_failure(delivery, attempt, PermanentError(f"rendering failed: {exc!r}"), started)
    Delivery.objects.filter(pk=delivery.pk).update(rendered_text=message.as_log_text())
    try:
        result = adapter.send(message, delivery)
    except DeliveryError as exc:
        return _record_failure(delivery, attempt, exc, started)
    except Exception as exc:  # an unexpected error while sending: the request may have left
        log.exception("delivery %s: unexpected error while sending", delivery_id)
        return _record_failure(delivery, attempt, OutcomeUnknown(f"unexpected error: {exc!r}"), started)
    now = timezone.now()
    if result.details:  # what the network said beyond the id (photo id, per-recipient counts)
        attempt.message = redact(json.dumps(result.details, ensure_ascii=False, default=str))[:5000]
    _finish_attempt(attempt, Outcome.SENT, started, now)
    Delivery.objects.filter(pk=delivery.pk, status__in=(Status.SENDING, Status.UNCERTAIN)).update(
        status=Status.SENT,
        sent_at=now,
        external_id=result.external_id[:200],
        external_url=result.external_url[:2000],
        last_error="",
        lease_until=None,
        next_attempt_at=None,
        updated_at=now,
    )
    log.info("delivery %s sent to %s %s", delivery.pk, delivery.target.name, redact(result.external_url))
    return attempt


def _finish_attempt(
    attempt: DeliveryAttempt, outcome: str, started: float, now: datetime, exc: Exception | None = None
) -> None:
    attempt.outcome = outcome
    attempt.finished_at = now
    attempt.duration_ms = int((time.monotonic() - started) * 1000)
    if exc is not None:
        attempt.error_class = type(exc).__name__
        attempt.message = redact(str(exc))[:5000]
        attempt.http_status = getattr(exc, "http_status", None)
        attempt.retry_after = getattr(exc, "retry_after", None)
    attempt.save()


def _record_failure(
    delivery: Delivery, attempt: DeliveryAttempt, exc: DeliveryError, started: float
) -> DeliveryAttempt:
    """Log the failed attempt and move the delivery on by the one retry policy."""
    now = timezone.now()
    message = redact(f"{type(exc).__name__}: {exc}")
    changes: dict = {"last_error": message[:5000], "lease_until": None, "updated_at": now}
    if isinstance(exc, RateLimited):
        outcome = Outcome.RATE_LIMITED
    elif isinstance(exc, TransientError):
        outcome = Outcome.TRANSIENT
    elif isinstance(exc, OutcomeUnknown):
        outcome = Outcome.UNKNOWN
    else:
        outcome = Outcome.PERMANENT
    _finish_attempt(attempt, outcome, started, now, exc)

    adapter_is_idempotent = getattr(get_adapter(delivery.target), "idempotent", False)
    if isinstance(exc, TargetBroken):
        # The target is broken, not the post: hold this delivery until an admin resumes it.
        pause_target(delivery.target, message)
        changes.update(status=Status.QUEUED, next_attempt_at=None)
    elif isinstance(exc, PermanentError):
        changes.update(status=Status.FAILED, next_attempt_at=None)
    elif isinstance(exc, OutcomeUnknown) and not adapter_is_idempotent:
        # Never re-send blindly: it may already be public.
        changes.update(status=Status.UNCERTAIN, next_attempt_at=None)
    else:
        failures = _failures_in_budget(delivery)
        delay = retry_delay(failures, getattr(exc, "retry_after", None))
        if delay is None:
            changes.update(status=Status.FAILED, next_attempt_at=None)
            changes["last_error"] = f"gave up after {failures} attempts; last: {message}"[:5000]
        else:
            changes.update(
                status=Status.RETRYING, next_attempt_at=now + timedelta(seconds=delay), enqueued_at=None
            )
    Delivery.objects.filter(pk=delivery.pk, status=Status.SENDING).update(**changes)
    log.warning(
        "delivery %s to %s: attempt %s %s: %s",
        delivery.pk,
        delivery.target.name,
        attempt.number,
        outcome,
        message,
    )
    return attempt


def _failures_in_budget(delivery: Delivery) -> int:
    """Failed attempts that count against max_attempts (rate limits don't; an admin retry resets)."""
    return (
        DeliveryAttempt.objects.filter(delivery=delivery, number__gt=delivery.budget_start)
        .exclude(outcome__in=(Outcome.RATE_LIMITED, Outcome.SENT))
        .count()
    )


# --- admin actions ------------------------------------------------------------------------------


def retry(deliveries: Iterable[Delivery]) -> int:
    """Requeue failed, uncertain or cancelled deliveries with a fresh retry budget."""
    ids = [d.pk for d in deliveries]
    with transaction.atomic():
        rows = list(
            Delivery.objects.select_related("target").filter(
                pk__in=ids, status__in=(Status.FAILED, Status.UNCERTAIN, Status.CANCELLED)
            )
        )
        for d in rows:
            Delivery.objects.filter(pk=d.pk, status=d.status).update(
                status=Status.QUEUED, next_attempt_at=None, budget_start=F("attempts"), enqueued_at=None
            )
        enqueue_on_commit(rows)
    return len(rows)


def cancel(deliveries: Iterable[Delivery]) -> int:
    """Cancel deliveries that have not been sent yet (queued or waiting to retry)."""
    ids = [d.pk for d in deliveries]
    return Delivery.objects.filter(pk__in=ids, status__in=CLAIMABLE).update(
        status=Status.CANCELLED, next_attempt_at=None, updated_at=timezone.now()
    )


def pause_target(target: Target, reason: str) -> None:
    """Stop delivering to a target until it is resumed; deliveries wait, queued."""
    Target.objects.filter(pk=target.pk, paused_at__isnull=True).update(
        paused_at=timezone.now(), paused_reason=reason[:2000]
    )


def resume_target(target: Target) -> int:
    """Resume a paused target and send what waited for it; return how many were enqueued."""
    Target.objects.filter(pk=target.pk).update(paused_at=None, paused_reason="")
    waiting = Delivery.objects.filter(target=target, status=Status.QUEUED)
    return enqueue((pk, target.kind) for pk in waiting.values_list("pk", flat=True))


# --- the sweeper --------------------------------------------------------------------------------


def sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Expire lost sends to `uncertain`; re-enqueue due retries and stranded queued deliveries.

    Runs on beat every few seconds: with it, no delivery depends on a broker message surviving.
    """
    now = now or timezone.now()
    lost_ids = list(
        Delivery.objects.filter(status=Status.SENDING, lease_until__lt=now).values_list("pk", flat=True)[
            :SWEEP_BATCH
        ]
    )
    lost = 0
    for pk in lost_ids:
        lost += Delivery.objects.filter(pk=pk, status=Status.SENDING, lease_until__lt=now).update(
            status=Status.UNCERTAIN,
            lease_until=None,
            last_error="the worker was lost while sending: the post may or may not be published",
            updated_at=now,
        )
        DeliveryAttempt.objects.filter(delivery_id=pk, finished_at__isnull=True).update(
            outcome=Outcome.LOST, finished_at=now, message="worker lost mid-send (lease expired)"
        )

    stale = now - timedelta(seconds=settings.SYNDICATOR_STRANDED_AFTER)
    not_recently_sent = Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=stale)
    due = (
        Delivery.objects.filter(ACTIVE_TARGET, not_recently_sent)
        .filter(
            Q(status=Status.RETRYING, next_attempt_at__lte=now)
            | Q(status=Status.QUEUED) & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        )
        .order_by("created_at")
        .values_list("pk", "target__kind")[:SWEEP_BATCH]
    )
    requeued = enqueue(list(due))
    if lost or requeued:
        log.info("sweep: %d lost sends marked uncertain, %d deliveries enqueued", lost, requeued)
    return {"uncertain": lost, "enqueued": requeued}
