"""The one clock deliveries are timed by: the database's.

Leases, due times, the sweeper's "this send is lost" and Mastodon's Idempotency-Key hour compare
times that different processes wrote, often on different hosts, and a host's clock can be off (no
NTP, a VM resumed from a snapshot). A worker ten minutes fast would otherwise write leases that
outlive its death by ten minutes, and a sweeper ten minutes fast would take every live send for
lost. The database's clock is one for all of them (issue 15, item 8), so these times are either
computed in the SQL (``Now()``, Django's portable "now": STATEMENT_TIMESTAMP() on PostgreSQL, the
UTC time on SQLite) or read once per operation with ``db_now()``, never from timezone.now().

Tests inject a clock (``injected``): every "now" of the delivery path (the claim's due time, the
sweeper's, syndicator/pacing.py's) is then the injected one, so a test runs hours of pacing,
quiet hours and daily budgets through a real worker without sleeping through them.

Spans a process measures for itself (an attempt's duration, a deadline to wait for) stay on its
monotonic clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models.functions import Now
from django.db.models.sql import Query

__all__ = ["Now", "current", "db_now", "injected", "now_expr", "now_sql"]

# A test's clock (``injected``); None in production: the database's.
_override: Callable[[], datetime] | None = None


@contextmanager
def injected(clock: Callable[[], datetime]) -> Iterator[None]:
    """Take every delivery "now" from ``clock`` (aware datetimes) in this process while inside."""
    global _override
    previous, _override = _override, clock
    try:
        yield
    finally:
        _override = previous


def now_expr() -> datetime | Now:
    """ "Now" for a filter or an UPDATE: the injected clock's time, else the database's ``Now()``."""
    return _override() if _override is not None else Now()


def current() -> datetime:
    """ "Now" as a value: the injected clock's time, else the database's (one query)."""
    return _override() if _override is not None else db_now()


def injected_now() -> datetime | None:
    """The injected clock's time, or None (no query either way)."""
    return _override() if _override is not None else None


def now_sql(using: str = DEFAULT_DB_ALIAS) -> str:
    """The SQL of Django's ``Now()`` on this database, for a statement written out in full."""
    sql, _ = Query(None).get_compiler(using).compile(Now())
    return str(sql)


def db_now(using: str = DEFAULT_DB_ALIAS) -> datetime:
    """The database's current time (aware, UTC): one query, the SQL of Django's ``Now()``."""
    connection = connections[using]
    expression = Now()
    # Compiled by Django, so each backend gets its own spelling of "now" (and the same as Now()
    # in a filter or an UPDATE): STATEMENT_TIMESTAMP() on PostgreSQL, not CURRENT_TIMESTAMP,
    # which inside a transaction is the transaction's start.
    sql, params = Query(None).get_compiler(using).compile(expression)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {sql}", params)
        value = cursor.fetchone()[0]
    # SQLite answers with text; the backend's converters make it an aware datetime, as for a column.
    for converter in connection.ops.get_db_converters(expression):
        value = converter(value, expression, connection)
    return value
