"""Decisions made outside a send: a person's retry, cancel and verdict; pausing and resuming targets.

Each decision a person makes on a delivery is an attempt row of kind ``verdict`` naming them
(``actor``, and ``actor_name`` that outlives the user), so the timeline credits who did what.
Its number continues the log, so the next claim's attempt row cannot collide with it, and a late
answer from an attempt made before it can no longer move the delivery (see delivery.py).
Status changes go through syndicator.delivery_states, like every other.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.db import transaction

from syndicator import dispatch, scheduling
from syndicator.clock import Now, db_now
from syndicator.delivery_states import Event, move
from syndicator.models import Delivery, DeliveryAttempt, Target
from syndicator.recovery import pause_reason
from syndicator.redact import redact

log = logging.getLogger(__name__)

Status = Delivery.Status
Outcome = DeliveryAttempt.Outcome
# Who decided: a user (admin pages, API), a name (the command line's OS user), or nobody known.
Actor = AbstractBaseUser | AnonymousUser | str | None


def _actor(by: Actor) -> tuple[User | None, str]:
    """The user to link (None for a name or the system) and the name to keep."""
    if by is None:
        return None, ""
    if isinstance(by, str):
        return None, by[:150]
    return (by if isinstance(by, User) and by.pk is not None else None), by.get_username()[:150]


def _verdict(
    delivery: Delivery, number: int, outcome: str, by: Actor, message: str, now: datetime
) -> DeliveryAttempt:
    user, name = _actor(by)
    return DeliveryAttempt.objects.create(
        delivery=delivery,
        number=number,
        kind=DeliveryAttempt.Kind.VERDICT,
        started_at=now,
        finished_at=now,
        duration_ms=0,
        outcome=outcome,
        message=redact(message)[:5000],
        actor=user,
        actor_name=name,
    )


def _credit(what: str, name: str) -> str:
    return f"{what} by {name}" if name else what


# --- a person's decisions on deliveries --------------------------------------------------------


def retry(deliveries: Iterable[Delivery], *, by: Actor = None) -> int:
    """Requeue failed, uncertain or cancelled deliveries with a fresh retry budget."""
    ids = [d.pk for d in deliveries]
    now = db_now()  # delivery and attempt times are the database's (syndicator/clock.py)
    name = _actor(by)[1]
    with transaction.atomic():
        rows = list(
            Delivery.objects.select_related("target")
            .select_for_update(of=("self",))
            .filter(pk__in=ids, status__in=(Status.FAILED, Status.UNCERTAIN, Status.CANCELLED))
            .order_by("pk")
        )
        for d in rows:
            # The verdict row is the budget's start: failures counted from here on (delivery.py).
            number = d.attempts + 1
            move(
                d.pk,
                Event.RETRY,
                only_from=(d.status,),
                now=now,
                attempts=number,
                budget_start=number,
                next_attempt_at=None,
                enqueued_at=None,
            )
            _verdict(d, number, Outcome.RETRIED, by, _credit(f"retried (was {d.status})", name), now)
        dispatch.enqueue_on_commit(rows)
    return len(rows)


def cancel(deliveries: Iterable[Delivery], *, by: Actor = None, reason: str = "") -> int:
    """Cancel deliveries that have not been sent yet (queued or waiting to retry); ``reason``
    (an unpublished article) is added to the verdict and the delivery's last_error."""
    ids = [d.pk for d in deliveries]
    now = db_now()
    name = _actor(by)[1]
    cancelled = 0
    with transaction.atomic():
        rows = list(
            Delivery.objects.select_for_update()
            .filter(pk__in=ids, status__in=(Status.QUEUED, Status.RETRYING))
            .order_by("pk")
        )
        for d in rows:
            number = d.attempts + 1
            extra: dict[str, Any] = {"last_error": reason[:5000]} if reason else {}
            if move(d.pk, Event.CANCEL, now=now, attempts=number, next_attempt_at=None, **extra):
                what = f"cancelled (was {d.status}): {reason}" if reason else f"cancelled (was {d.status})"
                _verdict(d, number, Outcome.CANCELLED, by, _credit(what, name), now)
                cancelled += 1
    return cancelled


def mark_uncertain(delivery: Delivery, *, sent: bool, by: Actor, url: str = "") -> DeliveryAttempt | None:
    """Settle an uncertain delivery by an admin's word: sent (with the post's URL if known) or not.

    "Not sent" makes it failed: it records what happened, and whether to send it again stays the
    admin's separate decision (retry), so each step is one row in the timeline. The verdict is an
    attempt row naming the admin; None when the delivery is no longer uncertain.
    """
    now = db_now()
    name = _actor(by)[1] or "an unknown user"
    with transaction.atomic():
        current = Delivery.objects.select_for_update().get(pk=delivery.pk)
        if current.status != Status.UNCERTAIN:
            return None
        changes: dict[str, Any]
        if sent:
            verdict = f"marked as sent by {name}" + (f": {url}" if url else "")
            event, changes = Event.MARK_SENT, {"sent_at": now, "last_error": ""}
            if url:
                changes["external_url"] = url[:2000]
        else:
            verdict = f"marked as not sent by {name}"
            event = Event.MARK_NOT_SENT
            changes = {"last_error": f"{verdict}; before: {current.last_error}"[:5000]}
        number = current.attempts + 1
        move(current.pk, event, now=now, attempts=number, next_attempt_at=None, lease_until=None, **changes)
        attempt = _verdict(
            current, number, Outcome.MARKED_SENT if sent else Outcome.MARKED_NOT_SENT, by, verdict, now
        )
    log.info("delivery %s: %s", delivery.pk, redact(verdict))
    return attempt


# --- targets ------------------------------------------------------------------------------------


def pause_target(target: Target, reason: str) -> bool:
    """Stop delivering to a target until it is resumed; deliveries wait. False if already paused."""
    return bool(
        Target.objects.filter(pk=target.pk, paused_at__isnull=True).update(
            paused_at=Now(), paused_reason=reason[:2000]
        )
    )


def pause_if_failing(target: Target, last_error: str, *, now: datetime | None = None) -> bool:
    """Pause a target whose attempts have all failed for long enough (recovery.pause_reason)."""
    reason = pause_reason(target, last_error, now=now)
    if reason:
        log.error("target %s: %s", target.name, reason)
    return bool(reason) and pause_target(target, reason)


def resume_target(target: Target) -> int:
    """Resume a paused target and send what waited for it; return how many were enqueued.

    A resume of a paused target starts its failing streak afresh (recovery.failing_streak reads
    ``Target.resumed_at``, compared with the attempts' start: both the database's time).
    """
    with transaction.atomic():
        Target.objects.filter(pk=target.pk, paused_at__isnull=False).update(resumed_at=Now())
        Target.objects.filter(pk=target.pk).update(paused_at=None, paused_reason="")
    target.resumed_at = Target.objects.values_list("resumed_at", flat=True).get(pk=target.pk)
    target.paused_at, target.paused_reason = None, ""
    scheduling.wake(scheduling.SWEEP)  # its retries and look-ups count again
    waiting = Delivery.objects.filter(target=target, status=Status.QUEUED)
    return dispatch.enqueue((pk, target.kind) for pk in waiting.values_list("pk", flat=True))
