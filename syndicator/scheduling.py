"""When beat's two database ticks have work: beat sends them only then (issue #16 item 6).

Beat sent ``schedule_due_feeds`` and ``sweep_deliveries`` every 5 s; with nothing due each was a
message, a task and a few queries for nothing (~0.012 CPU-s per second, ~1,000 CPU-s a day, for
an idle `syndicator run`). Now each tick, when it ends, records when it next has work, from what
the database holds (``watch.next_feed_due``, ``delivery.next_sweep_due``), at most
SYNDICATOR_SCHEDULER_MAX_IDLE ahead; beat still looks every interval, but only at that record
(one cache read, no query, no message), and sends the tick once it is due
(``celeryproject.WhenDue``).

What makes work due sooner than recorded wakes the tick (``wake``): a feed saved (added, edited,
enabled), a delivery scheduled or retried at a time (``delivery_states.move``), task messages
sent (``dispatch.enqueue``: their delivery is stranded STRANDED_AFTER later if lost), a target
saved or resumed, beat starting. A wake is a new generation number: a record made by a tick that
started before it no longer counts, so a write racing with a tick is never lost (the tick's
queries may not have seen it). What no hook covers (a lease that expires: a worker died) is
found by the recorded times themselves, at most MAX_IDLE late.

The record lives in the cache (the Redis every mode has, settings.CACHES); with a per-process
cache (an AMQP broker and no Redis) beat cannot see the other processes' wakes, and sends the
ticks every interval, as before.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from syndicator import clock

log = logging.getLogger(__name__)

FEEDS = "feeds"
SWEEP = "sweep"
KINDS = (FEEDS, SWEEP)
_DUE = "scheduler:due:"
_GENERATION = "scheduler:generation:"


def shared() -> bool:
    """Whether the cache is one for every process (else a wake would not reach beat)."""
    return "locmem" not in str(settings.CACHES["default"]["BACKEND"]).lower()


def _wall() -> float:
    """This process's time (the injected clock's in tests), in seconds: what beat compares with."""
    injected = clock.injected_now()
    return injected.timestamp() if injected is not None else time.time()


def wake(*kinds: str) -> None:
    """Something may be due before the recorded time: beat sends the ticks at their next interval."""
    try:
        cache.set_many({_GENERATION + kind: time.time_ns() for kind in (kinds or KINDS)}, timeout=None)
    except Exception as exc:  # a cache that is away: beat's read fails too, and it sends the ticks
        log.debug("scheduler wake not recorded: %s", exc)


def wake_on_commit(*kinds: str) -> None:
    """wake(), once the current transaction commits (its rows are then visible to the tick)."""
    transaction.on_commit(lambda: wake(*kinds))


def wake_on_saved(sender: type, **_: Any) -> None:
    """post_save of a Feed (its time may be sooner) or a Target (its deliveries may count again)."""
    wake_on_commit(FEEDS if sender.__name__ == "Feed" else SWEEP)


def begin(kind: str) -> Any:
    """Called as a tick starts: the generation its record will be valid for."""
    try:
        return cache.get(_GENERATION + kind)
    except Exception:
        return None


def record(kind: str, generation: Any, due: datetime | None, now: datetime) -> float:
    """The tick ended: it has work again at ``due`` (its database's time, as ``now``; None: nothing
    known), at most MAX_IDLE after ``now``. Returns the seconds recorded."""
    ahead = settings.SYNDICATOR_SCHEDULER_MAX_IDLE
    if due is not None:
        ahead = min(ahead, max((due - now).total_seconds(), 0.0))
    try:
        cache.set(_DUE + kind, (_wall() + ahead, generation), timeout=None)
    except Exception as exc:
        log.debug("scheduler record not kept: %s", exc)
    return ahead


def is_due(kind: str) -> bool:
    """Whether beat should send the tick now: its recorded time came, a wake came since, or
    there is no record (a first start, a Redis that lost it, a cache that is away)."""
    if not shared():
        return True
    try:
        values = cache.get_many([_DUE + kind, _GENERATION + kind])
    except Exception:
        return True
    recorded = values.get(_DUE + kind)
    if recorded is None:
        return True
    due_at, generation = recorded
    return generation != values.get(_GENERATION + kind) or due_at <= _wall()
