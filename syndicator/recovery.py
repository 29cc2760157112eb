"""What happens when a send ends in neither a yes nor a no, and when a target keeps failing.

- A worker lost while sending (its lease expired) left either nothing on the wire (no attempt was
  logged yet: the delivery goes back to the queue) or a request that may have been published:
  the delivery becomes ``uncertain``.
- An uncertain delivery is settled by its target's policy: looked up on the network when the
  adapter can (``Adapter.verify``, an attempt of kind ``lookup``), else left to an admin with the
  reason in its last_error. A look-up that fails transiently (the network down, a 429) is tried
  again with the one retry policy's backoff (delivery.verify_delivery), for as long as that is safe
  (``Adapter.verify_horizon`` after the first attempt that may have posted: Mastodon's
  Idempotency-Key hour, a day for a look-up among the newest posts); then, and after a look-up
  that found nothing, an admin decides, with the reason.
- A target whose attempts have all failed for long enough (SYNDICATOR_TARGET_PAUSE_AFTER) is
  paused, with the reason shown; a success ends the streak, and a resume (``Target.resumed_at``)
  starts a new one.
- An outcome the network gave is written even through a short database outage (``durably``).

syndicator/delivery.py calls these; every status change here is an event of
syndicator.delivery_states, the one writer of statuses.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import Count, Exists, F, Max, Min, OuterRef, Q
from django.utils import timezone

from syndicator.clock import db_now
from syndicator.delivery_states import Event, move
from syndicator.models import Delivery, DeliveryAttempt, Target
from syndicator.redact import redact
from syndicator.targets import ADAPTERS, get_adapter

log = logging.getLogger(__name__)

Status = Delivery.Status
Outcome = DeliveryAttempt.Outcome
Kind = DeliveryAttempt.Kind
ACTIVE_TARGET = Q(target__enabled=True, target__paused_at__isnull=True)
BATCH = 500
LOST_WHILE_SENDING = "the worker was lost while sending: the post may or may not be published"
# A lost send to a list whose recipients each have their result: the rest can go.
LOST_MID_FANOUT = (
    "the worker was lost while sending to the list: the recipients never tried are sent by the "
    "retry; those whose message may have gone (unknown) are never sent again automatically"
)
# Why an uncertain delivery whose look-up died with its worker waits for an admin.
LOOK_UP_LOST = (
    "looking it up was lost with its worker (lease expired), and a post is looked up once: "
    "an admin checks the account, then retries the delivery or leaves it"
)
# The last try of a failing look-up is due this long before its horizon: the sweeper's round and a
# busy queue delay it, and a Mastodon re-send that starts past the key's window is refused.
LAST_LOOK_UP_MARGIN = 60.0
# Outcomes that count towards pausing a failing target (rate limits do not: the network said when).
FAILED_OUTCOMES = (Outcome.TRANSIENT, Outcome.PERMANENT, Outcome.UNKNOWN, Outcome.LOST)

T = TypeVar("T")


# --- lost sends and uncertain deliveries --------------------------------------------------------


def uncertain_policy(kind: str) -> str:
    """What happens next to an uncertain delivery of this target kind, for its last_error."""
    adapter = ADAPTERS.get(kind)
    if adapter is None:
        return "an admin decides: retry it or leave it"
    return adapter.verify_plan if adapter.can_verify() else adapter.verify_note


def verifiable_kinds() -> list[str]:
    """Target kinds whose adapter can look a post up (Adapter.verify)."""
    return [kind for kind, cls in ADAPTERS.items() if cls.can_verify()]


def _looked_up() -> Exists:
    """The delivery's latest attempt is a look-up (it was looked up since it became uncertain)."""
    return Exists(
        DeliveryAttempt.objects.filter(delivery=OuterRef("pk"), number=OuterRef("attempts"), kind=Kind.LOOKUP)
    )


def unverified() -> Q:
    """Uncertain deliveries of verifiable targets that are still to be looked up: not looked up
    since they became uncertain, or their look-up failed transiently and set the next one's time
    (``next_attempt_at``). The others wait for an admin.

    Every move to `uncertain` after a look-up sets next_attempt_at (None: not again), and the
    look-up's claim clears it, so a due time left from an earlier retry never counts here.
    """
    again = Q(next_attempt_at__isnull=False)
    return Q(status=Status.UNCERTAIN, target__kind__in=verifiable_kinds()) & (~_looked_up() | again)


def look_up_due(now: datetime) -> Q:
    """Of the unverified deliveries, those to look up at ``now``: the first look-up once the delivery
    has been uncertain for SYNDICATOR_VERIFY_AFTER, a further one once its next_attempt_at came."""
    settled = now - timedelta(seconds=settings.SYNDICATOR_VERIFY_AFTER)
    first = ~_looked_up() & Q(updated_at__lte=settled)
    again = _looked_up() & Q(next_attempt_at__lte=now)
    return unverified() & (first | again)


def next_look_up_due() -> datetime | None:
    """The soonest time look_up_due will hold for an unverified delivery of an active target,
    from the rows as they are (None: none to look up); for the scheduler (syndicator/scheduling.py)."""
    active = Q(target__enabled=True, target__paused_at__isnull=True)
    rows = Delivery.objects.filter(unverified(), active)
    first = rows.filter(~_looked_up()).aggregate(at=Min("updated_at"))["at"]
    again = rows.filter(_looked_up()).aggregate(at=Min("next_attempt_at"))["at"]
    times = [again] if again is not None else []
    if first is not None:
        times.append(first + timedelta(seconds=settings.SYNDICATOR_VERIFY_AFTER))
    return min(times) if times else None


def maybe_posted_since(delivery: Delivery) -> datetime | None:
    """When the delivery's earliest attempt that may have posted started (since an admin's retry).

    What Mastodon's Idempotency-Key hour is counted from, and every look-up's horizon.
    """
    return (
        DeliveryAttempt.objects.filter(
            delivery_id=delivery.pk,
            number__gt=delivery.budget_start,
            outcome__in=(Outcome.UNKNOWN, Outcome.LOST),
        )
        .order_by("started_at")
        .values_list("started_at", flat=True)
        .first()
    )


@dataclass(frozen=True)
class LookUpHorizon:
    """Until when a failing look-up of an uncertain delivery is tried again, and from when."""

    since: datetime  # the first attempt that may have posted (else this episode's first look-up)
    until: datetime  # since + the adapter's verify_horizon
    failures: int  # look-ups of this episode that failed, rate limits aside (the backoff's step)
    tried: int  # look-ups of this episode that ended, rate limits included

    def last_call(self) -> datetime:
        """The latest a further look-up may be due (LAST_LOOK_UP_MARGIN before ``until``)."""
        return self.until - timedelta(seconds=LAST_LOOK_UP_MARGIN)


def look_up_horizon(delivery: Delivery) -> LookUpHorizon:
    """The horizon of an uncertain delivery's failing look-ups, read from its attempt log.

    This episode's look-ups are those after its latest send (an admin's retry sends again and
    starts a new one); the database's times throughout (syndicator/clock.py).
    """
    attempts = DeliveryAttempt.objects.filter(delivery_id=delivery.pk, number__gt=delivery.budget_start)
    last_send = attempts.filter(kind=Kind.SEND).aggregate(n=Max("number"))["n"] or delivery.budget_start
    look_ups = attempts.filter(kind=Kind.LOOKUP, number__gt=last_send)
    since = maybe_posted_since(delivery) or look_ups.aggregate(at=Min("started_at"))["at"] or db_now()
    adapter = ADAPTERS[delivery.target.kind]
    ended = look_ups.filter(finished_at__isnull=False)
    return LookUpHorizon(
        since,
        since + timedelta(seconds=adapter.verify_horizon),
        failures=ended.exclude(outcome__in=(Outcome.SENT, Outcome.RATE_LIMITED)).count(),
        tried=ended.count(),
    )


def look_ups_given_up(delivery: Delivery, horizon: LookUpHorizon) -> str:
    """Why an uncertain delivery whose look-ups kept failing waits for an admin, and what to check."""
    adapter = ADAPTERS[delivery.target.kind]
    since = timezone.localtime(horizon.since).strftime("%Y-%m-%d %H:%M %Z")
    hours = adapter.verify_horizon / 3600
    span = f"{hours:.0f} hours" if hours >= 2 else f"{adapter.verify_horizon / 60:.0f} minutes"
    return (
        f"not looked up again: the look-ups since the attempt of {since} all failed ({horizon.tried}), and "
        f"none is made more than {span} after that attempt: {adapter.verify_horizon_note}. An admin "
        f"checks that {adapter.label} is reachable and looks at the account: if the post is there, "
        "mark the delivery sent; if not, retry it"
    )


def uncertain_cause(delivery_id: int, *, before: int) -> str:
    """Why a delivery became uncertain: what its last send before attempt ``before`` ended with.

    Read from the attempt log, not parsed back out of ``last_error`` (which adds what happens next).
    """
    row = (
        DeliveryAttempt.objects.filter(delivery_id=delivery_id, number__lt=before, kind=Kind.SEND)
        .order_by("-number")
        .values_list("outcome", "error_class", "message")
        .first()
    )
    if row is None:
        return "no send attempt recorded"
    outcome, error_class, message = row
    if outcome == Outcome.LOST:
        return LOST_WHILE_SENDING
    return f"{error_class}: {message}" if error_class else message or str(outcome or "in progress")


def settle_lost_sends(now: datetime) -> tuple[int, int]:
    """Sends whose lease expired: requeued if no request left, else `uncertain`; both counts."""
    expired = Q(lease_until__lt=now)
    lost = list(
        Delivery.objects.filter(expired, status=Status.SENDING)
        .order_by("pk")
        .values_list("pk", "target__kind", "attempts")[:BATCH]
    )
    requeued = uncertain = 0
    for pk, kind, number in lost:
        # A send's claim and its attempt row are committed together (delivery._claim_and_log): a
        # claim without the row is one of a worker of an earlier version (during an upgrade) that
        # died between its claim and its log row, so sending now cannot post twice.
        started = DeliveryAttempt.objects.filter(delivery_id=pk, number=OuterRef("attempts"))
        requeued += move(
            pk,
            Event.LOST_BEFORE_SEND,
            where=cast(Q, expired & ~Exists(started)),
            now=now,
            lease_until=None,
            next_attempt_at=None,
            enqueued_at=None,
            last_error="the worker was lost before sending: queued again",
        )
        # A look-up sent nothing: the delivery was uncertain before it and stays so, with the reason
        # it had. A lost look-up is not tried again (its claim cleared next_attempt_at: a look-up
        # that kills its worker would do so again), so an admin decides.
        looking_up = started.filter(kind=Kind.LOOKUP)
        settle: dict[str, Any] = {"lease_until": None, "enqueued_at": None, "now": now}
        lost_look_up = f"{LOOK_UP_LOST}; before: {uncertain_cause(pk, before=number)}"[:5000]
        mine = expired & Q(attempts=number)
        if move(
            pk,
            Event.LOST_MID_SEND,
            where=cast(Q, mine & Exists(looking_up)),
            last_error=lost_look_up,
            **settle,
        ):
            lost_what = "look-up"
        elif _resumable(pk, kind) and move(
            pk,
            Event.LOST_MID_FANOUT,
            where=mine,
            last_error=LOST_MID_FANOUT,
            next_attempt_at=now,
            **settle,
        ):
            requeued += 1  # the retry sends to the recipients never tried, and only to them
            DeliveryAttempt.objects.filter(delivery_id=pk, finished_at__isnull=True).update(
                outcome=Outcome.LOST, finished_at=now, message="worker lost mid-send (lease expired)"
            )
            continue
        elif move(
            pk,
            Event.LOST_MID_SEND,
            where=mine,
            last_error=f"{LOST_WHILE_SENDING}; {uncertain_policy(kind)}",
            **settle,
        ):
            lost_what = "send"
        else:
            continue  # its worker answered meanwhile
        uncertain += 1
        DeliveryAttempt.objects.filter(delivery_id=pk, finished_at__isnull=True).update(
            outcome=Outcome.LOST, finished_at=now, message=f"worker lost mid-{lost_what} (lease expired)"
        )
    return requeued, uncertain


def _resumable(delivery_id: int, kind: str) -> bool:
    """Whether a lost send can be resumed without sending twice (Adapter.resumable)."""
    adapter = ADAPTERS.get(kind)
    if adapter is None or not adapter.per_recipient_results:
        return False  # no query for the networks that post once
    delivery = Delivery.objects.select_related("target").get(pk=delivery_id)
    return get_adapter(delivery.target).resumable(delivery)


def claim_verification(delivery_id: int, *, task_id: str = "", worker: str = "") -> DeliveryAttempt | None:
    """Take an uncertain delivery to look it up, when due: the look-up's attempt, or None.

    Only once the delivery has been uncertain for SYNDICATOR_VERIFY_AFTER, or a failed look-up's
    next time came (look_up_due), whoever sent the message. The claim and its log row are one
    transaction, so a look-up lost with its worker is never mistaken for a send that had not
    started (and so never requeued). "Due" and the lease are the database's time
    (syndicator/clock.py), as the sweeper reads them.
    """
    now = db_now()
    lease = timedelta(seconds=settings.SYNDICATOR_SEND_LEASE)
    eligible = Delivery.objects.filter(look_up_due(now), ACTIVE_TARGET, pk=delivery_id)
    with transaction.atomic():
        # Lock the row first, then judge it in a statement of its own, which sees every look-up
        # committed before the lock was ours. A conditional UPDATE alone judges its subquery on the
        # snapshot it started with: a rival look-up that ran, found nothing and put the row back to
        # `uncertain` while this one waited for the row would go unseen, and the post be looked up
        # twice (tests/test_recovery.py replays that).
        mine = Delivery.objects.select_for_update().filter(pk=delivery_id, status=Status.UNCERTAIN)
        if not list(mine.values_list("pk", flat=True)) or not eligible.exists():
            return None
        # next_attempt_at is cleared: only a look-up that fails transiently sets the next one's.
        move(
            delivery_id,
            Event.LOOK_UP,
            now=now,
            attempts=F("attempts") + 1,
            lease_until=now + lease,
            next_attempt_at=None,
        )
        number = Delivery.objects.values_list("attempts", flat=True).get(pk=delivery_id)
        return DeliveryAttempt.objects.create(
            delivery_id=delivery_id,
            number=number,
            kind=Kind.LOOKUP,
            worker=worker[:200],
            task_id=task_id[:200],
            started_at=now,
        )


def due_verifications(now: datetime, not_recently_sent: Q) -> list[tuple[int, str, datetime | None]]:
    """(id, kind, enqueued_at) of uncertain deliveries to look up now (look_up_due).

    The first look-up waits VERIFY_AFTER: the network gets time to show a post whose answer was
    lost (a timeout often means it is still being made).
    """
    return list(
        Delivery.objects.filter(look_up_due(now), ACTIVE_TARGET, not_recently_sent)
        .order_by("updated_at")
        .values_list("pk", "target__kind", "enqueued_at")[:BATCH]
    )


def durably(record: Callable[[], T]) -> T:
    """Run a write, retrying while the database is briefly away (SYNDICATOR_RECORD_RETRY seconds).

    What the network answered is known only to this process: losing it to a restarting database
    would leave a published post `uncertain`, or a failed one never retried.
    """
    deadline = time.monotonic() + settings.SYNDICATOR_RECORD_RETRY
    pause = 0.2
    while True:
        try:
            return record()
        except (OperationalError, InterfaceError) as exc:
            if connection.in_atomic_block or time.monotonic() + pause > deadline:
                raise
            log.warning("database unavailable while recording an outcome, retrying: %s", redact(str(exc)))
            with contextlib.suppress(DatabaseError):
                connection.close()  # the next query opens a fresh connection
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


def reconnecting(statement: Callable[[], T]) -> T:
    """Run a task's first statement; on a connection the database dropped meanwhile, once again
    on a new one.

    Workers keep their connection between tasks (CELERY_DB_REUSE_MAX, CONN_MAX_AGE) and do not
    health-check it before each task (that was a SELECT 1 per delivery): the first statement
    finds a dead one out instead. That statement is a read (delivery.read_for_sending), which is
    safe to run again.
    """
    try:
        return statement()
    except (OperationalError, InterfaceError) as exc:
        if connection.in_atomic_block:
            raise
        log.info("database connection lost since the last task; reconnecting: %s", redact(str(exc)))
        with contextlib.suppress(DatabaseError):
            connection.close()
        return statement()


# --- targets that keep failing ------------------------------------------------------------------


@dataclass(frozen=True)
class FailingStreak:
    """A target's failed attempts since its last success."""

    count: int
    since: datetime


def resumed_at(target: Target) -> datetime | None:
    """When an admin last resumed the paused target (decisions.resume_target), or None.

    Read from the database: a worker's Target row may be older than the resume.
    """
    return Target.objects.filter(pk=target.pk).values_list("resumed_at", flat=True).first()


def failing_streak(target: Target) -> FailingStreak | None:
    """The failed attempts since the target's last success or resume, or None if there are none.

    Rate limits count neither way (the network set the pace), nor do look-ups of uncertain
    deliveries; any success, a look-up that found its post included, ends the streak, and a
    resume starts a new one: the admin says the cause is fixed, so the target gets the whole
    SYNDICATOR_TARGET_PAUSE_AFTER again before it is paused again.
    """
    attempts = DeliveryAttempt.objects.filter(delivery__target=target, finished_at__isnull=False)
    if (resumed := resumed_at(target)) is not None:
        attempts = attempts.filter(started_at__gte=resumed)
    last_success = attempts.filter(outcome=Outcome.SENT).aggregate(at=Max("finished_at"))["at"]
    failed = attempts.filter(outcome__in=FAILED_OUTCOMES, kind=Kind.SEND)
    if last_success is not None:
        failed = failed.filter(finished_at__gt=last_success)
    found = failed.aggregate(count=Count("pk"), since=Min("finished_at"))
    return FailingStreak(found["count"], found["since"]) if found["count"] else None


def pause_reason(target: Target, last_error: str, *, now: datetime | None = None) -> str:
    """Why the target must be paused now by SYNDICATOR_TARGET_PAUSE_AFTER, or "" if it need not.

    The policy: at least ``failures`` failed attempts and no success for at least ``seconds``,
    both counted since the target's last resume (see failing_streak).
    """
    now = now or db_now()  # the attempts' times are the database's (syndicator/clock.py)
    policy = settings.SYNDICATOR_TARGET_PAUSE_AFTER
    streak = failing_streak(target)
    if streak is None or streak.count < policy["failures"]:
        return ""
    if now - streak.since < timedelta(seconds=policy["seconds"]):
        return ""
    since = timezone.localtime(streak.since).strftime("%Y-%m-%d %H:%M %Z")
    return (
        f"paused automatically: every attempt failed since {since} ({streak.count} attempts); "
        f"last error: {last_error}; resume it once the cause is fixed"
    )
