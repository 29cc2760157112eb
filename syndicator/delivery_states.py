"""The one writer of ``Delivery.status``: the allowed transitions as one table, and ``move``.

Every status change anywhere (the worker's claim and its outcome, the sweeper's lost sends,
the look-up of an uncertain delivery, an admin's retry, cancel or verdict) is an event applied
with ``move``: one conditional UPDATE … WHERE status IN (the event's from-statuses), so two
workers holding the same task message, or a worker and the sweeper, can never both act on one
delivery — the second finds the row no longer in a status the event leaves from, and moves
nothing. docs/delivery-states.md is this table in prose: who may trigger each event, and why.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Model, Q, QuerySet

from syndicator import scheduling
from syndicator.clock import Now
from syndicator.models import Delivery

log = logging.getLogger(__name__)

Status = Delivery.Status


class Event(enum.StrEnum):
    """What happened to a delivery (the row of TRANSITIONS it moves by)."""

    CLAIM = "claim"
    LOOK_UP = "look_up"
    SENT = "sent"
    FAILED = "failed"
    SKIP = "skip"
    TOO_OLD = "too_old"
    RETRY_LATER = "retry_later"
    HOLD = "hold"
    UNCERTAIN = "uncertain"
    LOST_BEFORE_SEND = "lost_before_send"
    LOST_MID_SEND = "lost_mid_send"
    LOST_MID_FANOUT = "lost_mid_fanout"
    MARK_SENT = "mark_sent"
    MARK_NOT_SENT = "mark_not_sent"
    RETRY = "retry"
    CANCEL = "cancel"
    WAIT = "wait"
    RESCHEDULE = "reschedule"
    EDIT = "edit"
    DELETE = "delete"
    EDITED = "edited"
    DELETED = "deleted"
    FOLLOWUP_BACK = "followup_back"
    LOST_MID_FOLLOWUP = "lost_mid_followup"


class By(enum.StrEnum):
    """Who may trigger an event."""

    WORKER = "worker"  # a delivery task: its claim, and what the network answered
    SWEEPER = "sweeper"  # the beat task that settles expired leases
    PERSON = "person"  # an admin (admin pages, API, CLI)


@dataclass(frozen=True)
class Transition:
    sources: tuple[str, ...]  # in the order people read them (the API's 409 lists them)
    to: str
    by: By


def _t(sources: tuple[str, ...], to: str, by: By) -> Transition:
    return Transition(tuple(sources), to, by)


# from-statuses, event → to-status, and who triggers it. `uncertain` is a source of the worker's
# outcomes because a lease can expire while the network is slow: the sweeper marks the send lost,
# and the answer that comes after all is better knowledge than "maybe" (the caller also requires
# the attempt number to be the delivery's latest, so only the attempt that asked is recorded).
TRANSITIONS: dict[Event, Transition] = {
    Event.CLAIM: _t((Status.QUEUED, Status.RETRYING), Status.SENDING, By.WORKER),
    Event.LOOK_UP: _t((Status.UNCERTAIN,), Status.SENDING, By.WORKER),
    Event.SENT: _t((Status.SENDING, Status.UNCERTAIN), Status.SENT, By.WORKER),
    Event.FAILED: _t((Status.SENDING, Status.UNCERTAIN), Status.FAILED, By.WORKER),
    Event.SKIP: _t((Status.SENDING,), Status.SKIPPED, By.WORKER),
    # An automatic delivery of an article older than the target's max_age (docs/pacing.md), found
    # by pacing before the claim: nothing is claimed, rendered or sent.
    Event.TOO_OLD: _t((Status.QUEUED, Status.RETRYING), Status.SKIPPED, By.WORKER),
    Event.RETRY_LATER: _t((Status.SENDING, Status.UNCERTAIN), Status.RETRYING, By.WORKER),
    Event.HOLD: _t((Status.SENDING, Status.UNCERTAIN), Status.QUEUED, By.WORKER),
    Event.UNCERTAIN: _t((Status.SENDING, Status.UNCERTAIN), Status.UNCERTAIN, By.WORKER),
    Event.LOST_BEFORE_SEND: _t((Status.SENDING,), Status.QUEUED, By.SWEEPER),
    Event.LOST_MID_SEND: _t((Status.SENDING,), Status.UNCERTAIN, By.SWEEPER),
    # A send to many recipients that records each one's result (an email list) and was lost with
    # recipients still untried: the retry sends only to them, never to one whose message may have
    # gone ("unknown"); what stays in doubt then makes it uncertain (Adapter.resumable).
    Event.LOST_MID_FANOUT: _t((Status.SENDING,), Status.RETRYING, By.SWEEPER),
    Event.MARK_SENT: _t((Status.UNCERTAIN,), Status.SENT, By.PERSON),
    Event.MARK_NOT_SENT: _t((Status.UNCERTAIN,), Status.FAILED, By.PERSON),
    Event.RETRY: _t((Status.FAILED, Status.UNCERTAIN, Status.CANCELLED), Status.QUEUED, By.PERSON),
    Event.CANCEL: _t((Status.QUEUED, Status.RETRYING), Status.CANCELLED, By.PERSON),
    # Pacing (syndicator/pacing.py): a delivery that may not leave yet is given its time and
    # reason, by the worker that read it, before it is claimed, rendered or sent.
    Event.WAIT: _t((Status.QUEUED, Status.RETRYING), Status.QUEUED, By.WORKER),
    # An editor's send now / reschedule from the queue page: a new time, still queued.
    Event.RESCHEDULE: _t((Status.QUEUED, Status.RETRYING), Status.QUEUED, By.PERSON),
    # Following the article (syndicator/followup.py): a sent post with a follow-up asked for is
    # claimed to be edited or deleted on its network, like a send is claimed; the outcome moves it
    # to `deleted`, or back to `sent` (edited, unchanged, refused, to be tried again). A sent post
    # never becomes `failed`: what is out stays out, and the reason is shown.
    Event.EDIT: _t((Status.SENT,), Status.EDITING, By.WORKER),
    Event.DELETE: _t((Status.SENT,), Status.DELETING, By.WORKER),
    Event.EDITED: _t((Status.EDITING,), Status.SENT, By.WORKER),
    Event.DELETED: _t((Status.DELETING,), Status.DELETED, By.WORKER),
    Event.FOLLOWUP_BACK: _t((Status.EDITING, Status.DELETING), Status.SENT, By.WORKER),
    # An edit or delete is safe to repeat: one whose worker was lost is simply asked for again.
    Event.LOST_MID_FOLLOWUP: _t((Status.EDITING, Status.DELETING), Status.SENT, By.SWEEPER),
}

# Statuses a person can act on, for the buttons and the API's 409s.
RETRYABLE: tuple[str, ...] = TRANSITIONS[Event.RETRY].sources
CANCELLABLE: tuple[str, ...] = TRANSITIONS[Event.CANCEL].sources
MARKABLE: tuple[str, ...] = TRANSITIONS[Event.MARK_SENT].sources


class IllegalMove(ValueError):
    """A move the table does not allow (a bug in the caller, never a race)."""


def allowed(status: str, event: Event) -> bool:
    """Whether the table lets a delivery in this status move by this event."""
    return status in TRANSITIONS[event].sources


def move(
    rows: int | QuerySet[Delivery],
    event: Event,
    *,
    where: Q | None = None,
    only_from: tuple[str, ...] | None = None,
    now: datetime | Now | None = None,
    **changes: Any,
) -> int:
    """Move the delivery (an id) or deliveries (a queryset) by an event; how many moved.

    One UPDATE, conditional on the row being in one of the event's from-statuses (narrowed to
    ``only_from``, which must lie within them) and on ``where`` (a lease, an attempt number):
    a row that another process moved first is left alone, and the caller learns it from the 0.
    ``changes`` are the other columns the move sets; ``updated_at`` is set to ``now``, by default
    the database's clock in the UPDATE itself (syndicator/clock.py: the sweeper and the look-ups
    compare it with their own "now", which is the database's too).
    """
    queryset, values, label = _moving(rows, event, where, only_from, now, changes)
    moved = queryset.update(**values)
    if moved:
        moved_by(event, values)
        target = f"delivery {rows}" if isinstance(rows, int) else f"{moved} deliveries"
        log.debug("%s: %s (%s)", target, label, event)
    return moved


def moved_by(event: Event, changes: dict[str, Any]) -> None:
    """What follows a move that happened (``move``, or a caller that ran ``move_one_sql``'s UPDATE):
    a delivery due at a time of its own (a retry, a wait, a look-up) wakes the scheduler, whose
    record of the sweep's next due time may be later (syndicator/scheduling.py)."""
    if changes.get("next_attempt_at") is not None or TRANSITIONS[event].to == Delivery.Status.UNCERTAIN:
        scheduling.wake_on_commit(scheduling.SWEEP)


@dataclass(frozen=True)
class Sql:
    """A piece of SQL and its parameters: a column's new value or a condition in a statement that
    ``update_one_sql`` writes out. ``now + timedelta`` adds an interval (PostgreSQL)."""

    text: str
    params: tuple[Any, ...] = ()

    def __add__(self, delta: timedelta) -> Sql:
        return Sql(f"({self.text} + %s)", (*self.params, delta))


def update_one_sql(
    model: type[Model], pk: int, values: dict[str, Any], conditions: Sequence[Sql] = ()
) -> tuple[str, tuple[Any, ...]]:
    """UPDATE <model's table> SET <values> WHERE id = pk AND <conditions>, written out without
    Django's query compiler: for the statements every delivery runs (delivery.py on PostgreSQL),
    where compiling a filtered UPDATE cost about a millisecond of the worker's CPU each (issue
    16.3). A value that is an ``Sql`` is written as given; any other is prepared by its field, as
    the ORM prepares it (``get_db_prep_save``)."""
    connection = connections[DEFAULT_DB_ALIAS]  # the wrapper itself: each use of the proxy is a lookup

    qn = connection.ops.quote_name
    table = qn(model._meta.db_table)
    sets: list[str] = []
    params: list[Any] = []
    for name, value in values.items():
        field = model._meta.get_field(name)
        column = qn(str(field.column))  # type: ignore[union-attr]  # concrete fields only
        if isinstance(value, Sql):
            sets.append(f"{column} = {value.text}")
            params.extend(value.params)
        else:
            sets.append(f"{column} = %s")
            params.append(field.get_db_prep_save(value, connection))  # type: ignore[union-attr]
    where = [f"{table}.{qn('id')} = %s"]
    params.append(pk)
    for condition in conditions:
        where.append(f"({condition.text})")
        params.extend(condition.params)
    return f"UPDATE {table} SET {', '.join(sets)} WHERE {' AND '.join(where)}", tuple(params)


def move_one_sql(
    delivery_id: int, event: Event, *, now: Sql, conditions: Sequence[Sql] = (), **changes: Any
) -> tuple[str, tuple[Any, ...]]:
    """``move``'s UPDATE for one delivery by its id, not run but written out (``update_one_sql``),
    for a caller that runs it as part of one statement (a data-modifying WITH on PostgreSQL:
    delivery.py's claim and its finish), so the statuses still have this one writer and this one
    table: status = the event's to-status WHERE id = … AND status IN (its from-statuses) AND
    ``conditions``, with ``updated_at`` = ``now``; the status first, as ``move`` writes it."""
    if "status" in changes:
        raise IllegalMove(f"{event}: the status comes from the table, not from the caller")
    transition = TRANSITIONS[event]
    status = connections[DEFAULT_DB_ALIAS].ops.quote_name("status")
    sources = Sql(f"{status} IN ({', '.join(['%s'] * len(transition.sources))})", transition.sources)
    return update_one_sql(
        Delivery, delivery_id, {"status": transition.to, **changes, "updated_at": now}, [sources, *conditions]
    )


def _moving(
    rows: int | QuerySet[Delivery],
    event: Event,
    where: Q | None,
    only_from: tuple[str, ...] | None,
    now: datetime | Now | None,
    changes: dict[str, Any],
) -> tuple[QuerySet[Delivery], dict[str, Any], str]:
    transition = TRANSITIONS[event]
    if "status" in changes:
        raise IllegalMove(f"{event}: the status comes from the table, not from the caller")
    sources = transition.sources
    if only_from is not None:
        if stray := [status for status in only_from if status not in sources]:
            raise IllegalMove(f"{event} cannot move a delivery from {', '.join(stray)}")
        sources = tuple(only_from)
    queryset = Delivery.objects.filter(pk=rows) if isinstance(rows, int) else rows
    queryset = queryset.filter(status__in=sources)
    if where is not None:
        queryset = queryset.filter(where)
    changes.setdefault("updated_at", Now() if now is None else now)
    # The status first: the UPDATE reads "UPDATE … SET status = …", which people (and the
    # partition test, waiting for a claim) recognise in pg_stat_activity.
    return queryset, {"status": transition.to, **changes}, f"{'/'.join(sources)} → {transition.to}"
