"""Deliveries: claim, send, record, the retry policy, look-ups of uncertain ones, the sweeper.

Every status change is an event of syndicator.delivery_states (the one writer of statuses): a
conditional UPDATE, so two workers holding the same task message, or a worker and the sweeper,
can never both act on one delivery. Every try is a ``DeliveryAttempt`` row, of kind ``send`` or
``lookup``. A person's decisions (retry, cancel, verdicts) are in syndicator/decisions.py;
creating deliveries (the outbox) and sending their task messages by name in
syndicator/dispatch.py; both are re-exported here, as the delivery API callers use.

What the retry policy does not cover (lost workers, uncertain outcomes, targets that keep failing,
a database that is briefly away) is decided in syndicator/recovery.py.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import F, Model, Q
from django.utils import timezone

from syndicator import clock, digest, followup, pacing, recovery, waiting
from syndicator.clock import db_now
from syndicator.decisions import (  # noqa: F401  (re-exported: the delivery API callers use)
    cancel,
    mark_uncertain,
    pause_if_failing,
    pause_target,
    resume_target,
    retry,
)
from syndicator.delivery_states import (
    TRANSITIONS,
    Event,
    Sql,
    move,
    move_one_sql,
    moved_by,
    update_one_sql,
)
from syndicator.dispatch import (  # noqa: F401  (re-exported)
    create_auto_deliveries,
    enqueue,
    enqueue_on_commit,
    queue_name,
    repost,
    target_matches,
)
from syndicator.errors import (
    DeliveryError,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    Skipped,
    TargetBroken,
    TransientError,
)
from syndicator.models import Delivery, DeliveryAttempt, Feed, Post, Target
from syndicator.recovery import (
    FAILED_OUTCOMES,
    claim_verification,
    due_verifications,
    durably,
    look_up_horizon,
    look_ups_given_up,
    reconnecting,
    settle_lost_sends,
    uncertain_cause,
    uncertain_policy,
)
from syndicator.redact import redact
from syndicator.targets import SendResult, get_adapter

log = logging.getLogger(__name__)

Status = Delivery.Status
Outcome = DeliveryAttempt.Outcome
CLAIMABLE = TRANSITIONS[Event.CLAIM].sources
ACTIVE_TARGET = Q(target__enabled=True, target__paused_at__isnull=True)
SWEEP_BATCH = 500


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


def claim(
    delivery_id: int, *, now: datetime | None = None, attempts: int | None = None, **changes: Any
) -> bool:
    """Atomically move a due delivery of an active target to `sending`; False if there is none.

    With ``attempts``, only while the delivery has had that many: the claim is then attempt
    ``attempts + 1``, known without reading the row back (see _claim_and_log). ``changes``: other
    columns the claim sets (the rendered text).

    Due and the lease are judged by the database's clock, in the UPDATE itself (syndicator/clock.py):
    a worker whose clock is fast must neither take a retry early nor lease past the sweeper's view.
    """
    at = clock.now_expr() if now is None else now
    lease = timedelta(seconds=settings.SYNDICATOR_SEND_LEASE)
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=at)
    active = Q(pk__in=Delivery.objects.filter(ACTIVE_TARGET, pk=delivery_id).values("pk"))
    if attempts is not None:
        due &= Q(attempts=attempts)
    return bool(
        move(
            delivery_id,
            Event.CLAIM,
            where=due & active,
            now=at,
            attempts=F("attempts") + 1,
            lease_until=at + lease,
            **changes,
        )
    )


def attempt_delivery(delivery_id: int, *, task_id: str = "", worker: str = "") -> DeliveryAttempt | None:
    """Read, pace, render, claim, send and record one delivery (or look an uncertain one up, or
    follow a sent one's edit or delete, once).

    None when there was nothing to do: already handled, not due, its target paused, or held back
    by pacing.
    """
    # A stale connection (the database restarted while this worker idled) fails the first
    # statement: reconnect once (recovery.reconnecting) rather than health-check every task.
    read = reconnecting(lambda: read_for_sending([delivery_id]))
    if not read:
        log.info("delivery %s: not found; nothing to do", delivery_id)
        return None
    return _attempt(read[0], task_id=task_id, worker=worker)


def attempt_batch(delivery_ids: list[int], kind: str, *, task_id: str = "", worker: str = "") -> int:
    """Attempt deliveries of one network one after the other (one task message: dispatch.enqueue);
    how many were attempted here.

    They are read in one statement; each is then paced, claimed, sent and recorded exactly as a
    message of its own would be (attempt_delivery: its claim a compare-and-set on the count read,
    its lease its own), and one that is not to be sent as read (not due, a follow-up, a look-up)
    is read again and handled on its own. A delivery starts only within the first fifth of the
    task's time limit; the rest go on as a new message, so the last one started has most of the
    limit left, as each had with a message of its own, and the batch never outlives the broker's
    visibility timeout (which would hand it to a second worker). An error stops the batch, as a
    failed link stopped a chain: the rest are the sweeper's.
    """
    budget = settings.CELERY_TASK_TIME_LIMIT / 5
    began = time.monotonic()
    read = {d.pk: d for d in reconnecting(lambda: read_for_sending(delivery_ids))}
    for n, delivery_id in enumerate(delivery_ids):
        if n and time.monotonic() - began > budget:
            enqueue([(rest, kind) for rest in delivery_ids[n:]])
            return n
        delivery = read.get(delivery_id)
        if delivery is not None and _sendable(delivery):
            _attempt(delivery, task_id=task_id, worker=worker)
        else:  # as it is now, not as the batch began
            attempt_delivery(delivery_id, task_id=task_id, worker=worker)
    return len(delivery_ids)


def _sendable(delivery: Delivery) -> bool:
    """Whether the delivery, as read, is one to claim and send: due, claimable, target active."""
    target = delivery.target
    return (
        delivery.status in CLAIMABLE
        and getattr(delivery, "due", False)
        and target.enabled
        and target.paused_at is None
    )


def _attempt(delivery: Delivery, *, task_id: str, worker: str) -> DeliveryAttempt | None:
    if not _sendable(delivery):
        # The same task message serves a sent post's edit or delete (syndicator/followup.py),
        # claimed by the count read (its compare-and-set), and an uncertain one's look-up.
        if delivery.status == Status.SENT and (
            action := followup.claim(delivery.pk, attempts=delivery.attempts)
        ):
            return followup.run(
                delivery.pk, action, number=delivery.attempts + 1, task_id=task_id, worker=worker
            )
        if delivery.status == Status.UNCERTAIN and (
            verifying := claim_verification(delivery.pk, task_id=task_id, worker=worker)
        ):
            return verify_delivery(verifying)
        log.info("delivery %s: nothing to claim (already handled, not due, or target paused)", delivery.pk)
        return None
    # Pacing and rendering come before the claim, so the claim and its attempt row can be one
    # statement (docs/delivery-states.md, "The statement budget"): nothing is claimed that is not
    # about to be sent, and a claim is never lost "before sending".
    if pacing.held(delivery):  # not yet (spacing, budgets, quiet hours) or too old: moved, not claimed
        return None
    started = time.monotonic()
    try:
        adapter = get_adapter(delivery.target)
        message = adapter.render(delivery)
    except Exception as exc:  # nothing was sent, so a rendering bug is safe to call permanent
        error = exc if isinstance(exc, DeliveryError) else PermanentError(f"rendering failed: {exc!r}")
        if error is not exc:
            log.exception("delivery %s: rendering failed", delivery.pk)
        failed = _claim_and_log(delivery, task_id, worker, rendered="")
        return durably(lambda: _record_failure(delivery, failed, error, started)) if failed else None
    # The attempt row, committed with the claim, is the mark that a request may leave: the
    # sweeper takes a claim whose lease expired for a send that may have gone (uncertain).
    attempt = _claim_and_log(delivery, task_id, worker, rendered=message.as_log_text())
    if attempt is None:
        return None
    try:
        result = adapter.send(message, delivery)
    except Exception as exc:
        # An unexpected error while sending: the request may have left.
        failure = exc if isinstance(exc, DeliveryError) else OutcomeUnknown(f"unexpected error: {exc!r}")
        if failure is not exc:
            log.exception("delivery %s: unexpected error while sending", delivery.pk)
        return durably(lambda: _record_failure(delivery, attempt, failure, started))
    return durably(lambda: _record_success(delivery, attempt, result, started))


# --- the statements of a delivery (PostgreSQL's written out: docs/delivery-states.md) -------------

# The read: the delivery with its post, feed and target (what select_related("post__feed",
# "target") fetches), and whether it is due by the database's clock.
_READ: tuple[tuple[str, type[Model], str | None, str | None], ...] = (
    ("d", Delivery, None, None),
    ("p", Post, "d", "post_id"),  # alias, model, joined from, by that table's column
    ("f", Feed, "p", "feed_id"),
    ("t", Target, "d", "target_id"),
)


@functools.cache
def _read_plan(
    vendor: str,
) -> tuple[str, str, list[tuple[type[Model], list[str], list[tuple[Any, list[Any]]]]]]:
    """The read's SELECT <columns> and FROM … JOIN … (the due column and the WHERE added per call)
    and, per model, its fields' attribute names and their database converters (as Django's
    compiler applies them)."""
    db = connections[DEFAULT_DB_ALIAS]  # the wrapper itself: each use of the proxy is a lookup
    qn = db.ops.quote_name
    columns: list[str] = []
    plan: list[tuple[type[Model], list[str], list[tuple[Any, list[Any]]]]] = []
    joins: list[str] = []
    for alias, model, parent, relation in _READ:
        fields = list(model._meta.concrete_fields)
        columns += [f"{alias}.{qn(str(field.column))}" for field in fields]
        converters = []
        for field in fields:
            col = field.get_col(alias)
            converters.append([*db.ops.get_db_converters(col), *col.get_db_converters(db)])
        plan.append((model, [field.attname for field in fields], list(zip(fields, converters, strict=True))))
        if parent is not None and relation is not None:
            joins.append(
                f"JOIN {qn(model._meta.db_table)} {alias} ON {alias}.{qn('id')} = {parent}.{qn(relation)}"
            )
    # The columns, then (added per call) whether it is due, then the tables.
    return f"SELECT {', '.join(columns)}", f"FROM {qn(Delivery._meta.db_table)} d {' '.join(joins)}", plan


def read_for_sending(delivery_ids: list[int]) -> list[Delivery]:
    """The deliveries with their post, feed and target, in one SELECT; each with ``due``: whether
    its next attempt is due by the database's clock (or the injected one). Missing ids are left out.
    """
    db = connections[DEFAULT_DB_ALIAS]  # the wrapper itself: each use of the proxy is a lookup
    if not delivery_ids:
        return []
    select, tables, plan = _read_plan(db.vendor)
    now = _now()
    qn = db.ops.quote_name
    due = _due(f"d.{qn('next_attempt_at')}", now)
    sql = f"{select}, ({due.text}) {tables} WHERE d.{qn('id')} IN ({', '.join(['%s'] * len(delivery_ids))})"
    with db.cursor() as cursor:
        cursor.execute(sql, (*due.params, *delivery_ids))
        rows = cursor.fetchall()
    found: list[Delivery] = []
    for row in rows:
        instances, i = [], 0
        for model, names, fields in plan:
            values = []
            for field, converters in fields:
                value = row[i]
                for converter in converters:
                    value = converter(value, field, db)
                values.append(value)
                i += 1
            instances.append(model.from_db(db.alias, names, values))
        delivery, post, feed, target = cast(tuple[Delivery, Post, Feed, Target], tuple(instances))
        Post._meta.get_field("feed").set_cached_value(post, feed)
        Delivery._meta.get_field("post").set_cached_value(delivery, post)
        Delivery._meta.get_field("target").set_cached_value(delivery, target)
        delivery.due = bool(row[i])  # type: ignore[attr-defined]  # the read's, not a column
        found.append(delivery)
    return found


def _due(next_attempt_at: str, now: Sql) -> Sql:
    """A delivery's next attempt is due at ``now`` (none set: due), as claim() judges it."""
    return Sql(f"{next_attempt_at} IS NULL OR {next_attempt_at} <= {now.text}", now.params)


@functools.cache
def _statement_now(vendor: str) -> str:
    return clock.now_sql()


def _now() -> Sql:
    """ "Now" in a written-out statement: the injected clock's time, else the database's."""
    db = connections[DEFAULT_DB_ALIAS]  # the wrapper itself: each use of the proxy is a lookup
    injected = clock.injected_now()
    if injected is not None:
        value = DeliveryAttempt._meta.get_field("started_at").get_db_prep_value(injected, db)
        return Sql("%s", (value,))
    return Sql(_statement_now(db.vendor))


def _claim_and_log(delivery: Delivery, task_id: str, worker: str, *, rendered: str) -> DeliveryAttempt | None:
    """Claim the delivery as read (a compare-and-set on its status and attempt count, due and its
    target active by the database's clock) and open the attempt's log row, as one statement on
    PostgreSQL (a data-modifying WITH: the claim's UPDATE, the INSERT from the row it claimed),
    elsewhere one transaction; the attempt, or None when it was not ours to claim.

    The attempt's start is the database's time: Mastodon's Idempotency-Key hour is counted from
    it. A claim answered after half its lease sends nothing (``_give_back_late_claim``).
    """
    lease = timedelta(seconds=settings.SYNDICATOR_SEND_LEASE)
    number = delivery.attempts + 1
    attempt = DeliveryAttempt(delivery=delivery, number=number, worker=worker[:200], task_id=task_id[:200])
    asked = time.monotonic()
    claimed = _claim_and_insert(delivery, attempt, rendered, lease)
    if not claimed:
        _not_claimed(delivery)
        return None
    delivery.status, delivery.attempts = Status.SENDING, number
    if rendered:
        delivery.rendered_text = rendered
    answered = time.monotonic() - asked
    if answered > settings.SYNDICATOR_SEND_LEASE / 2:
        _give_back_late_claim(delivery, attempt, answered)
        return None
    return attempt


def _claim_and_insert(delivery: Delivery, attempt: DeliveryAttempt, rendered: str, lease: timedelta) -> bool:
    """_claim_and_log's writes: whether the claim was made (and the attempt row inserted)."""
    db = connections[DEFAULT_DB_ALIAS]  # the wrapper itself: each use of the proxy is a lookup
    if db.vendor != "postgresql":
        at = clock.current()
        with transaction.atomic():
            changes = {"rendered_text": rendered} if rendered else {}
            if not claim(delivery.pk, now=at, attempts=delivery.attempts, **changes):
                return False
            attempt.started_at = at
            attempt.save(force_insert=True)
            return True
    qn = db.ops.quote_name
    table, delivery_table = qn(DeliveryAttempt._meta.db_table), qn(Delivery._meta.db_table)
    now = _now()
    claiming_changes: dict[str, Any] = {
        "attempts": Sql(f"{delivery_table}.{qn('attempts')} + 1"),
        "lease_until": now + lease,
    }
    if rendered:
        claiming_changes["rendered_text"] = rendered
    target = qn(Target._meta.db_table)
    conditions = [
        Sql(f"{delivery_table}.{qn('attempts')} = %s", (delivery.attempts,)),
        _due(f"{delivery_table}.{qn('next_attempt_at')}", now),
        Sql(
            f"EXISTS (SELECT 1 FROM {target} WHERE {target}.{qn('id')} = "
            f"{delivery_table}.{qn('target_id')} AND {target}.{qn('enabled')} "
            f"AND {target}.{qn('paused_at')} IS NULL)"
        ),
    ]
    claiming, params = move_one_sql(
        delivery.pk, Event.CLAIM, now=now, conditions=conditions, **claiming_changes
    )
    columns: list[str] = []
    values: list[str] = []
    inserted: list[Any] = []
    for field in DeliveryAttempt._meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(qn(str(field.column)))
        if field.attname == "delivery_id":
            values.append(f"claimed.{qn('id')}")
        elif field.attname == "started_at":
            values.append(now.text)
            inserted.extend(now.params)
        else:
            values.append("%s")
            inserted.append(field.get_db_prep_save(getattr(attempt, field.attname), db))
    sql = (
        f"WITH claimed AS ({claiming} RETURNING {delivery_table}.{qn('id')}) "
        f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(values)} FROM claimed "
        f"RETURNING {qn('id')}, {qn('started_at')}"
    )
    with db.cursor() as cursor:
        cursor.execute(sql, (*params, *inserted))
        row = cursor.fetchone()
    if row is None:
        return False
    attempt.pk, attempt.started_at = row
    attempt._state.adding = False
    return True


def _not_claimed(delivery: Delivery) -> None:
    log.warning(
        "delivery %s: not claimed, it changed since it was read (another worker's claim, the sweeper "
        "or a person); nothing sent",
        delivery.pk,
    )


def _give_back_late_claim(delivery: Delivery, attempt: DeliveryAttempt, answered: float) -> None:
    """A claim whose answer took more than half its lease (a partition, a long pause) sends
    nothing: by now the sweeper may have taken it for lost and a look-up or another worker may
    act on it. What this worker knows, that nothing left, goes on the attempt's row and moves the
    delivery on by the retry policy, but only while the row is unfinished and the delivery still
    `sending` under this attempt; otherwise the sweeper's verdict stands (tests/faults/
    test_network_partition.py, a claim answered into the cut)."""
    why = (
        f"the claim was answered after {answered:.1f} s (lease {settings.SYNDICATOR_SEND_LEASE:g} s): "
        "nothing sent, so that it is never sent twice"
    )
    error = TransientError(why)
    now = clock.current()
    with transaction.atomic():
        finished = DeliveryAttempt.objects.filter(pk=attempt.pk, finished_at__isnull=True).update(
            outcome=Outcome.TRANSIENT,
            finished_at=now,
            duration_ms=int(answered * 1000),
            **_error_fields(error),
        )
        if finished:
            failures = _failures_in_budget(delivery, attempt, Outcome.TRANSIENT)
            delay = retry_delay(failures)
            later = {"next_attempt_at": now + timedelta(seconds=delay)} if delay is not None else {}
            move(
                delivery.pk,
                Event.RETRY_LATER if delay is not None else Event.FAILED,
                where=Q(attempts=attempt.number),
                only_from=(Status.SENDING,),
                now=now,
                lease_until=None,
                enqueued_at=None,
                wait_reason=Delivery.Wait.RETRY,
                last_error=redact(f"TransientError: {why}")[:5000],
                **later,
            )
    log.warning("delivery %s: attempt %s: %s", delivery.pk, attempt.number, why)


def _record_success(
    delivery: Delivery, attempt: DeliveryAttempt, result: SendResult, started: float, note: str = ""
) -> DeliveryAttempt:
    """Log the attempt as sent and the delivery as sent, with the network's id and URL."""
    details = json.dumps(result.details, ensure_ascii=False, default=str) if result.details else ""
    # What the network said beyond the id (photo id, per-recipient counts); how a look-up found it.
    message = redact(" ".join(part for part in (note, details) if part))[:5000]
    # Only while the attempt that asked is the delivery's latest (`uncertain` too: a lease that
    # expired while the network was slow is overtaken by its answer). A late answer from an older
    # attempt stays on its own row: a newer attempt (a send after an admin's retry, a look-up)
    # owns the delivery and records its own outcome.
    _, moved = _finish_and_move(
        attempt,
        {"outcome": Outcome.SENT, "message": message},
        started,
        Event.SENT,
        lambda now: {
            "sent_at": now,
            "external_id": result.external_id[:200],
            "external_url": result.external_url[:2000],
            "sent_details": result.details or {},
            # The article's version this text was rendered from: a newer one is an edit to follow.
            "source_version": delivery.post.version,
            "last_error": "",
            "lease_until": None,
            "next_attempt_at": None,
            "wait_reason": "",
        },
    )
    if moved:
        log.info("delivery %s sent to %s %s", delivery.pk, delivery.target.name, redact(result.external_url))
    else:
        late = redact(result.external_url or result.external_id)
        log.warning(
            "delivery %s: attempt %s sent %s after a newer attempt began", delivery.pk, attempt.number, late
        )
    return attempt


def _finish_and_move(
    attempt: DeliveryAttempt,
    fields: dict[str, Any],
    started: float,
    event: Event,
    changes_at: Callable[[datetime | Sql], dict[str, Any]],
) -> tuple[datetime, int]:
    """Record the attempt's outcome (``fields``, its duration, finished at the database's "now")
    and move the delivery by ``event`` while the attempt is its latest; (finished_at, moved).

    ``changes_at(now)``: the move's other columns, given that "now". On PostgreSQL both writes
    are one statement (a data-modifying WITH), "now" is its STATEMENT_TIMESTAMP() and only the
    attempt's changed columns are written; elsewhere the time is read first and the two writes
    are one transaction.
    """
    db = connections[DEFAULT_DB_ALIAS]  # the wrapper itself: each use of the proxy is a lookup
    fields = {**fields, "duration_ms": int((time.monotonic() - started) * 1000)}
    for name, value in fields.items():
        setattr(attempt, name, value)
    where = Q(attempts=attempt.number)
    if db.vendor != "postgresql":
        now = db_now()
        attempt.finished_at = now
        with transaction.atomic():
            attempt.save(update_fields=[*fields, "finished_at"])
            return now, move(attempt.delivery_id, event, where=where, now=now, **changes_at(now))
    at = _now()
    finish, finish_params = update_one_sql(DeliveryAttempt, attempt.pk, {**fields, "finished_at": at})
    changes = changes_at(at)
    attempts_now = Sql(f"{db.ops.quote_name('attempts')} = %s", (attempt.number,))
    moving, moving_params = move_one_sql(
        attempt.delivery_id, event, now=at, conditions=[attempts_now], **changes
    )
    qn = db.ops.quote_name
    sql = (
        f"WITH finished AS ({finish} RETURNING {qn('finished_at')}), moved AS ({moving} RETURNING 1) "
        f"SELECT (SELECT {qn('finished_at')} FROM finished), (SELECT count(*) FROM moved)"
    )
    with db.cursor() as cursor:
        cursor.execute(sql, (*finish_params, *moving_params))
        finished_at, moved = cursor.fetchone()
    attempt.finished_at = finished_at
    if moved:
        moved_by(event, changes)  # a retry's or a look-up's time wakes the scheduler, as move does
    return finished_at, int(moved)


def _finish_attempt(
    attempt: DeliveryAttempt, outcome: str, started: float, now: datetime, exc: Exception | None = None
) -> None:
    fields = ["outcome", "finished_at", "duration_ms"]
    attempt.outcome = outcome
    attempt.finished_at = now
    attempt.duration_ms = int((time.monotonic() - started) * 1000)
    if exc is not None:
        for name, value in _error_fields(exc).items():
            setattr(attempt, name, value)
            fields.append(name)
    attempt.save(update_fields=fields)


def _error_fields(exc: Exception) -> dict[str, Any]:
    """What an attempt row keeps of the error it ended with."""
    return {
        "error_class": type(exc).__name__,
        "message": redact(str(exc))[:5000],
        "http_status": getattr(exc, "http_status", None),
        "retry_after": getattr(exc, "retry_after", None),
    }


def _outcome(exc: DeliveryError) -> str:
    if isinstance(exc, Skipped):
        return Outcome.SKIPPED
    if isinstance(exc, RateLimited):
        return Outcome.RATE_LIMITED
    if isinstance(exc, TransientError):
        return Outcome.TRANSIENT
    return Outcome.UNKNOWN if isinstance(exc, OutcomeUnknown) else Outcome.PERMANENT


def _record_failure(
    delivery: Delivery, attempt: DeliveryAttempt, exc: DeliveryError, started: float
) -> DeliveryAttempt:
    """Log the failed attempt and move the delivery on by the one retry policy.

    The next attempt's due time is the database's time plus the delay (syndicator/clock.py).
    """
    message = redact(f"{type(exc).__name__}: {exc}")
    changes: dict = {"last_error": message[:5000], "lease_until": None, "next_attempt_at": None}
    outcome = _outcome(exc)
    delay: float | None = None

    adapter_is_idempotent = getattr(get_adapter(delivery.target), "idempotent", False)
    if isinstance(exc, TargetBroken):
        # The target is broken, not the post: hold this delivery until an admin resumes it.
        pause_target(delivery.target, message)
        event = Event.HOLD
    elif isinstance(exc, Skipped):
        event = Event.SKIP  # the post does not suit the network: not a failure, nothing to retry
    elif isinstance(exc, PermanentError):
        event = Event.FAILED
    elif isinstance(exc, OutcomeUnknown) and not adapter_is_idempotent:
        # Never re-send blindly: it may already be public. The target's policy settles it.
        event = Event.UNCERTAIN
        changes.update(
            enqueued_at=None, last_error=f"{message}; {uncertain_policy(delivery.target.kind)}"[:5000]
        )
    else:
        failures = _failures_in_budget(delivery, attempt, outcome)
        delay = retry_delay(failures, getattr(exc, "retry_after", None))
        if delay is None:
            event = Event.FAILED
            changes["last_error"] = f"gave up after {failures} attempts; last: {message}"[:5000]
        else:
            event = Event.RETRY_LATER
            changes.update(
                enqueued_at=None,
                wait_reason=Delivery.Wait.RATE_LIMIT if isinstance(exc, RateLimited) else Delivery.Wait.RETRY,
            )

    def changes_at(now: datetime | Sql) -> dict[str, Any]:
        if delay is None:
            return changes
        return {**changes, "next_attempt_at": now + timedelta(seconds=delay)}

    # `uncertain` too, when this is still its latest attempt: the sweeper marked a slow send lost,
    # and the network's verdict that came after all is better knowledge than "maybe".
    now, _ = _finish_and_move(attempt, {"outcome": outcome, **_error_fields(exc)}, started, event, changes_at)
    if outcome in FAILED_OUTCOMES and delivery.target.paused_at is None and not isinstance(exc, TargetBroken):
        pause_if_failing(delivery.target, message, now=now)
    log.warning(
        "delivery %s to %s: attempt %s %s: %s",
        delivery.pk,
        delivery.target.name,
        attempt.number,
        outcome,
        message,
    )
    return attempt


def _failures_in_budget(delivery: Delivery, attempt: DeliveryAttempt, outcome: str) -> int:
    """Failed attempts that count against max_attempts (rate limits don't; an admin retry resets),
    this one (its outcome not yet written) included."""
    earlier = (
        DeliveryAttempt.objects.filter(delivery=delivery, number__gt=delivery.budget_start)
        .exclude(pk=attempt.pk)
        .exclude(outcome__in=(Outcome.RATE_LIMITED, Outcome.SENT))
        .exclude(kind=DeliveryAttempt.Kind.VERDICT)
        .count()
    )
    counts = outcome not in (Outcome.RATE_LIMITED, Outcome.SENT) and attempt.number > delivery.budget_start
    return earlier + int(counts)


# --- uncertain deliveries ----------------------------------------------------------------------


def verify_delivery(attempt: DeliveryAttempt) -> DeliveryAttempt:
    """Ask the target whether an uncertain delivery's post went out: sent if found, else uncertain.

    A look-up that failed transiently (TransientError: the network down or slow, a 429) sets the
    next one's time (next_look_up); one that found nothing, or could not tell, leaves the delivery
    to an admin.
    """
    delivery = Delivery.objects.select_related("post__feed", "target").get(pk=attempt.delivery_id)
    started = time.monotonic()
    # Why it became uncertain: what the attempt before this look-up said (not the policy note,
    # "it will be looked up shortly", now acted on).
    earlier = uncertain_cause(delivery.pk, before=attempt.number)
    try:
        result = get_adapter(delivery.target).verify(delivery)
    except DeliveryError as exc:
        error: DeliveryError = exc
    except Exception as exc:  # a bug in a look-up must not hide the uncertain delivery
        log.exception("delivery %s: looking it up failed", delivery.pk)
        error = OutcomeUnknown(f"looking it up failed: {exc!r}")
    else:
        if result is not None:
            note = "verified: found on the network after an uncertain attempt"
            return durably(lambda: _record_success(delivery, attempt, result, started, note))
        error = OutcomeUnknown(f"the network could not tell; {get_adapter(delivery.target).verify_note}")

    def still_uncertain() -> DeliveryAttempt:
        now = db_now()
        _finish_attempt(attempt, _outcome(error), started, now, error)
        again, plan = next_look_up(delivery, error, now) if isinstance(error, TransientError) else (None, "")
        why = redact(f"looked up: {error}; {plan}before: {earlier}")[:5000]
        # `uncertain` too, while this is still its latest attempt: the sweeper took a slow look-up
        # for lost, and what the look-up found after all is better knowledge than "lost".
        move(
            delivery.pk,
            Event.UNCERTAIN,
            where=Q(attempts=attempt.number),
            now=now,
            lease_until=None,
            next_attempt_at=again,  # None: not looked up again (recovery.unverified)
            enqueued_at=None,  # the sweeper sends its message when it is due
            last_error=why,
        )
        log.warning("delivery %s stays uncertain: %s", delivery.pk, why)
        return attempt

    return durably(still_uncertain)


def next_look_up(delivery: Delivery, error: DeliveryError, now: datetime) -> tuple[datetime | None, str]:
    """When a look-up that failed transiently is tried again, and what last_error says of it.

    The one retry policy's backoff (retry_delay: its schedule, jitter and max_delay, a 429's wait
    as the floor), bounded not by max_attempts but by the adapter's horizon (recovery.
    look_up_horizon): the last try is moved before it, and past it (None) an admin decides, with
    the reason. A network that stays away for an hour is no reason to give up on a look-up that
    stays safe for a day.
    """
    horizon = look_up_horizon(delivery)
    policy = {**settings.SYNDICATOR_RETRY, "max_attempts": math.inf}
    delay = retry_delay(horizon.failures, error.retry_after, policy=policy) or 0.0
    due, last_call = now + timedelta(seconds=delay), horizon.last_call()
    if due > last_call:
        # One last try at the horizon, if the network's wait and the policy's first step allow it.
        floor = now + timedelta(seconds=max(error.retry_after or 0.0, policy["backoff"][0]))
        if last_call < floor:
            return None, f"{look_ups_given_up(delivery, horizon)}; "
        due = last_call
    until = timezone.localtime(last_call).strftime("%Y-%m-%d %H:%M %Z")
    at = timezone.localtime(due).strftime("%H:%M:%S %Z")
    return due, f"looked up again at {at} (with backoff while it fails, until {until}); "


# --- the sweeper --------------------------------------------------------------------------------


def sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Settle lost sends; re-enqueue due retries and stranded deliveries; enqueue look-ups.

    Runs on beat every few seconds: with it, no delivery depends on a broker message surviving.
    Leases and due times are compared with the database's clock (syndicator/clock.py), the one
    the workers wrote them by: a sweeper whose own clock is fast takes no live send for lost.
    """
    now = now or clock.current()
    requeued_lost, lost = settle_lost_sends(now)
    lost_followups = followup.settle_lost(now)
    stale = now - timedelta(seconds=settings.SYNDICATOR_STRANDED_AFTER)
    not_recently_sent = Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=stale)
    due = (
        Delivery.objects.filter(ACTIVE_TARGET, not_recently_sent)
        .filter(
            Q(status=Status.RETRYING, next_attempt_at__lte=now)
            | Q(status=Status.QUEUED) & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        )
        .order_by("-breaking", "created_at")  # breaking first, then publishing order (docs/pacing.md)
        .values_list("pk", "target__kind", "enqueued_at")[:SWEEP_BATCH]
    )
    # Only messages that are really lost: in a backlog they wait in the broker, and re-sending them
    # every STRANDED_AFTER piled copies there (syndicator/waiting.py).
    requeued = enqueue(waiting.lost(list(due)))
    # A look-up goes through its target's queue like a send: a slow network never stalls the sweeper.
    verifying = enqueue(waiting.lost(due_verifications(now, not_recently_sent)))
    # Edits and deletes asked for (their message lost, a retry due, a send that ended meanwhile).
    following = enqueue(waiting.lost(followup.due(now, not_recently_sent)))
    # The email digests whose time came (made once per period, enqueued on commit).
    digests = len(digest.due(now))
    counts = {
        "uncertain": lost,
        "requeued_lost": requeued_lost,
        "enqueued": requeued,
        "verifying": verifying,
        "followups": following,
        "followups_lost": lost_followups,
        "digests": digests,
    }
    if any(counts.values()):
        log.info("sweep: %s", ", ".join(f"{n} {what}" for what, n in counts.items()))
    return counts


def next_sweep_due(now: datetime) -> datetime | None:
    """When sweep() next has something to do, from the rows as they are at ``now`` (the database's
    time); None: nothing until a row changes. Never later than sweep() would find work, maybe
    earlier (a sweep then finds nothing and this is asked again): for the scheduler, which sends
    the sweep only when due (syndicator/scheduling.py).
    """
    from django.db.models import Min

    stale = timedelta(seconds=settings.SYNDICATOR_STRANDED_AFTER)
    times: list[datetime | None] = []
    # Sends, look-ups and follow-ups in progress: settled as lost once their lease expires.
    leased = Delivery.objects.filter(status__in=(Status.SENDING, Status.EDITING, Status.DELETING))
    times.append(leased.aggregate(at=Min("lease_until"))["at"])
    # What sweep() enqueues: queued and due retries, follow-ups asked for on sent posts.
    waiting = Delivery.objects.filter(ACTIVE_TARGET).filter(
        Q(status=Status.QUEUED)
        | Q(status=Status.RETRYING, next_attempt_at__isnull=False)
        | Q(status=Status.SENT, followup__in=(Delivery.Followup.EDIT, Delivery.Followup.DELETE))
    )
    # Their message sent less than STRANDED_AFTER ago: not before it is stranded.
    recent = waiting.filter(enqueued_at__gte=now - stale).aggregate(at=Min("enqueued_at"))["at"]
    times.append(recent + stale if recent is not None else None)
    # The others: when their next attempt is due (none set: due now).
    older = waiting.filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=now - stale))
    if older.filter(next_attempt_at__isnull=True).exists():
        return now
    times.append(older.aggregate(at=Min("next_attempt_at"))["at"])
    times.append(recovery.next_look_up_due())
    times.append(digest.next_due(now))  # the email digests' instants
    known = [at for at in times if at is not None]
    return min(known) if known else None
