"""What one delivery costs the database: its statements and its commits (issue 16, item 3).

A delivery to a target with no pacing and no fault configured is three statements on PostgreSQL
(docs/delivery-states.md, "The statement budget"): the read of the delivery with its post, feed
and target (and whether it is due); the claim with its attempt row (one statement: a
data-modifying WITH); the outcome with the move (one statement). The two writes are autocommit
statements, a commit each. A batch's deliveries share one read. Counted here are every statement
Django's cursors run (execute_wrapper) and the health checks Django runs on the raw connection
(``is_usable``: CONN_HEALTH_CHECKS' SELECT 1), around a task's start and end as a worker runs
them (Celery's task_prerun / task_postrun signals, with every receiver connected).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from celery.signals import task_postrun, task_prerun
from django.db import connection

from syndicator import delivery as deliveries
from syndicator.models import Delivery, Feed, Post, Target

pytestmark = [
    pytest.mark.django_db(transaction=True),  # real commits: no test transaction around the delivery
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the budget is PostgreSQL's"),
]

STATEMENTS, COMMITS = 3, 2  # a delivery sent
# A transient failure, retried later by the policy: the same three, plus the outbox's injected
# fault (its lock transaction: SELECT … FOR NO KEY UPDATE, UPDATE; one commit), the failures in
# the retry budget (a COUNT) and pause_if_failing's look at the target's streak (three reads).
FAILED_STATEMENTS, FAILED_COMMITS = 9, 3


@dataclass
class Count:
    statements: list[str] = field(default_factory=list)
    health_checks: int = 0
    commits: int = 0  # committed transactions: atomic blocks, and each write outside one

    def report(self) -> str:
        return "\n".join(self.statements)


@contextmanager
def counted() -> Iterator[Count]:
    count = Count()

    def spy(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        count.statements.append(sql)
        writes = not sql.lstrip().upper().startswith("SELECT")
        if writes and connection.get_autocommit():
            count.commits += 1
        return execute(sql, params, many, context)

    real_is_usable, real_commit = connection.is_usable, connection.commit

    def is_usable() -> bool:
        count.health_checks += 1
        return real_is_usable()

    def commit() -> None:
        count.commits += 1
        real_commit()

    connection.is_usable, connection.commit = is_usable, commit  # type: ignore[method-assign]
    try:
        with connection.execute_wrapper(spy):
            yield count
    finally:
        del connection.is_usable, connection.commit


def run_as_a_task(delivery_id: int) -> None:
    """The delivery task's body between the signals a worker sends around every task."""

    class Request:
        is_eager = False  # a worker's task, not an eager call (Celery's Django fixup acts)
        id, hostname = "task-1", "celery@test"

    class Sender:
        request = Request()

    task_prerun.send(sender=Sender, task_id="task-1", task=Sender, args=(delivery_id,), kwargs={})
    deliveries.attempt_delivery(delivery_id, task_id="task-1", worker="celery@test")
    task_postrun.send(sender=Sender, task_id="task-1", task=Sender, args=(delivery_id,), kwargs={})


@pytest.fixture(autouse=True)
def workers_reuse_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    """Celery's Django fixup of an earlier test's in-process worker is still connected to the task
    signals, made with the test app's CELERY_DB_REUSE_MAX = None (tests/conftest.py: no
    connection kept past a test): it closes every connection around every task. A real worker's
    fixup reuses them (celeryproject: 1000 tasks); give the leftover fixups that value."""
    import weakref

    from celery.fixups.django import DjangoWorkerFixup

    from celeryproject import WORKER_DB_REUSE_MAX

    for signal in (task_prerun, task_postrun):
        for _key, ref in signal.receivers:
            receiver = ref() if isinstance(ref, weakref.ReferenceType) else ref
            fixup = getattr(receiver, "__self__", None)
            if isinstance(fixup, DjangoWorkerFixup):
                monkeypatch.setattr(fixup, "db_reuse_max", WORKER_DB_REUSE_MAX)
                monkeypatch.setattr(fixup, "_db_recycles", 0)


@pytest.fixture
def delivery() -> Iterator[Delivery]:
    feed = Feed.objects.create(url="https://news.example/feed", language="en")
    post = Post.objects.create(
        feed=feed, guid="g-1", url="https://news.example/a", title="A story", language="en"
    )
    target = Target.objects.create(name="out", kind="outbox", settings={"format": "telegram"})
    made = Delivery.objects.create(post=post, target=target)
    run_as_a_task(  # the connection is open and health-checked once, as a worker's is after start
        Delivery.objects.create(
            post=Post.objects.create(feed=feed, guid="g-0", title="Warm"), target=target
        ).pk
    )
    yield made


def test_a_sent_delivery_is_three_statements_and_two_commits(delivery):
    with counted() as count:
        run_as_a_task(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == "sent" and delivery.attempts == 1
    assert count.health_checks == 0, "a health check (SELECT 1) per task"
    assert len(count.statements) <= STATEMENTS, count.report()
    assert count.commits <= COMMITS, count.report()
    read, claim, finish = count.statements
    assert read.startswith("SELECT ") and 'JOIN "syndicator_target"' in read
    assert claim.startswith('WITH claimed AS (UPDATE "syndicator_delivery" SET "status" = ')
    assert 'INSERT INTO "syndicator_deliveryattempt"' in claim
    assert finish.startswith('WITH finished AS (UPDATE "syndicator_deliveryattempt"')


def test_a_batch_reads_its_deliveries_once(delivery):
    """Ten deliveries in one batch message: one read, then the claim and the outcome of each."""
    more = [
        Delivery.objects.create(
            post=Post.objects.create(feed=delivery.post.feed, guid=f"g-b{n}", title=f"B {n}"),
            target=delivery.target,
        ).pk
        for n in range(9)
    ]
    with counted() as count:
        assert deliveries.attempt_batch([delivery.pk, *more], "outbox") == 10
    assert Delivery.objects.filter(pk__in=[delivery.pk, *more], status="sent").count() == 10
    assert len(count.statements) == 1 + 2 * 10, count.report()
    assert count.commits == 2 * 10, count.report()


def test_a_claim_answered_after_half_the_lease_sends_nothing(delivery, settings, monkeypatch):
    """A claim whose answer came late (a partition, a pause): by then the sweeper may have taken it
    for lost; the worker sends nothing and records why on its own attempt's row."""
    from syndicator.targets.outbox import OutboxAdapter

    settings.SYNDICATOR_SEND_LEASE = 10
    sent = []
    monkeypatch.setattr(OutboxAdapter, "send", lambda self, message, d: sent.append(d.pk))
    real_claim = deliveries._claim_and_insert
    clock = [1000.0]
    monkeypatch.setattr(deliveries.time, "monotonic", lambda: clock[0])

    def slow_answer(*args, **kwargs):  # type: ignore[no-untyped-def]
        made = real_claim(*args, **kwargs)
        clock[0] += 6.0  # more than half the 10 s lease
        return made

    monkeypatch.setattr(deliveries, "_claim_and_insert", slow_answer)
    assert deliveries.attempt_delivery(delivery.pk) is None
    assert sent == []
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.wait_reason) == ("retrying", 1, "retry")
    from syndicator.models import DeliveryAttempt

    attempt = DeliveryAttempt.objects.get(delivery=delivery)
    assert attempt.outcome == "transient" and "answered after 6.0 s" in attempt.message
    assert "nothing sent" in delivery.last_error


def test_a_failed_delivery_has_its_own_bound(delivery, settings):
    settings.SYNDICATOR_RETRY = {"backoff": [30], "jitter": 0.0, "max_attempts": 3, "max_delay": 60}
    failing = {"format": "telegram", "fail": "transient", "fail_next": 1}
    Target.objects.filter(pk=delivery.target_id).update(settings=failing)
    with counted() as count:
        run_as_a_task(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == "retrying" and delivery.attempts == 1
    assert count.health_checks == 0
    assert len(count.statements) <= FAILED_STATEMENTS, count.report()
    assert count.commits <= FAILED_COMMITS, count.report()


def test_a_connection_the_database_dropped_between_tasks_is_replaced_by_the_next_task(delivery, caplog):
    """No health check before each task: the claim finds a dead connection out and reconnects."""
    import logging

    from django.db import connections

    # Its own level: an earlier test (a worker's or the CLI's logging setup) may have raised it.
    caplog.set_level(logging.INFO, logger="syndicator.recovery")
    connection.ensure_connection()
    connection.close_at = None  # kept between tasks, as a worker's is (CONN_MAX_AGE)
    pid = connection.connection.info.backend_pid
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        other.close()
    run_as_a_task(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == "sent" and delivery.attempts == 1
    assert connection.connection.info.backend_pid != pid
    assert "reconnecting" in caplog.text, "the dead connection was not the one the task found"


def test_a_polls_deliveries_are_one_insert(delivery, django_capture_on_commit_callbacks):
    """create_auto_deliveries stores every (post, target) pair of a poll in one INSERT."""
    from django.db import transaction

    from syndicator.dispatch import create_auto_deliveries

    for n in range(2):
        Target.objects.create(name=f"out-{n}", kind="outbox", settings={"format": "telegram"})
    feed = delivery.post.feed
    with transaction.atomic():
        posts = [Post.objects.create(feed=feed, guid=f"bulk-{n}", title=f"Story {n}") for n in range(5)]
        with counted() as count:
            created = create_auto_deliveries(posts)
    inserts = [sql for sql in count.statements if sql.startswith('INSERT INTO "syndicator_delivery"')]
    assert len(created) == 5 * 3 and all(d.pk for d in created)
    assert len(inserts) == 1, count.report()
