"""Data that lives for years (issue 15, item 11): old attempts' messages and per-recipient email
results are pruned after SYNDICATOR_RETENTION days, by a beat task and `syndicator prune`; the
deliveries and the attempts' outcomes stay; the hot read paths have indexes."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from celeryproject import app
from syndicator.health import target_health
from syndicator.models import Delivery, DeliveryAttempt, EmailRecipientResult, Feed, Post, Subscriber, Target
from tasks.maintenance import prune_history
from tests.helpers import require_postgresql

pytestmark = pytest.mark.django_db

YEAR_AND_A_DAY = timedelta(days=366)


@pytest.fixture
def history() -> dict[str, object]:
    """An email target with one delivery from over a year ago and one from yesterday."""
    now = timezone.now()
    feed = Feed.objects.create(url="https://news.example/feed", name="News")
    target = Target.objects.create(name="list", kind="email", settings={})
    subscribers = [Subscriber.objects.create(target=target, email=f"s{i}@example.org") for i in range(3)]
    rows: dict[str, object] = {"target": target}
    for age, name, status in ((YEAR_AND_A_DAY, "old", "sent"), (timedelta(days=1), "new", "sent")):
        post = Post.objects.create(feed=feed, guid=name, url=f"https://news.example/{name}")
        delivery = Delivery.objects.create(post=post, target=target, status=status, sent_at=now - age)
        attempt = DeliveryAttempt.objects.create(
            delivery=delivery,
            number=1,
            started_at=now - age,
            finished_at=now - age,
            outcome="sent",
            http_status=250,
            message=f"250 accepted ({name})",
        )
        for s in subscribers:
            EmailRecipientResult.objects.create(delivery=delivery, subscriber=s, status="accepted")
        EmailRecipientResult.objects.filter(delivery=delivery).update(updated_at=now - age)
        rows[name], rows[f"{name}_attempt"] = delivery, attempt
    # An old delivery still retrying: its results still decide who gets the post; they stay.
    post = Post.objects.create(feed=feed, guid="retrying", url="https://news.example/retrying")
    retrying = Delivery.objects.create(post=post, target=target, status="retrying")
    EmailRecipientResult.objects.create(delivery=retrying, subscriber=subscribers[0], status="deferred")
    EmailRecipientResult.objects.filter(delivery=retrying).update(updated_at=now - YEAR_AND_A_DAY)
    rows["retrying"] = retrying
    return rows


def test_prune_dry_run_prints_what_would_go_and_changes_nothing(history) -> None:
    out = StringIO()
    call_command("prune", "--dry-run", stdout=out)

    assert "would clear the messages of 1 attempts finished before" in out.getvalue()
    assert "would delete 3 per-recipient email results" in out.getvalue()
    assert EmailRecipientResult.objects.count() == 7
    assert DeliveryAttempt.objects.exclude(message="").count() == 2


def test_prune_clears_old_details_and_keeps_deliveries_outcomes_and_recent_rows(history) -> None:
    out = StringIO()
    call_command("prune", stdout=out)

    old = DeliveryAttempt.objects.get(pk=history["old_attempt"].pk)
    assert (old.message, old.outcome, old.http_status) == ("", "sent", 250)
    assert DeliveryAttempt.objects.get(pk=history["new_attempt"].pk).message == "250 accepted (new)"
    assert not EmailRecipientResult.objects.filter(delivery=history["old"]).exists()
    assert EmailRecipientResult.objects.filter(delivery=history["new"]).count() == 3
    assert EmailRecipientResult.objects.filter(delivery=history["retrying"]).count() == 1
    assert Delivery.objects.count() == 3
    assert (
        "cleared the messages of 1 attempts" in out.getvalue() and "deleted 3 per-recipient" in out.getvalue()
    )


def test_the_retention_is_a_setting(history, settings) -> None:
    settings.SYNDICATOR_RETENTION = 730
    call_command("prune", stdout=StringIO())
    assert DeliveryAttempt.objects.exclude(message="").count() == 2


def test_beat_prunes_daily_with_the_maintenance_task(history) -> None:
    entry = next(e for e in app.conf.beat_schedule.values() if e["task"] == "tasks.maintenance.prune_history")
    assert entry["schedule"] == 86400

    assert prune_history() == {"attempt_messages": 1, "email_results": 3}
    assert prune_history() == {"attempt_messages": 0, "email_results": 0}  # idempotent


@pytest.mark.parametrize(
    ("query", "index"),
    [
        # /metrics latency: automatic deliveries sent in the last day
        (
            lambda t: Delivery.objects.filter(
                status="sent", origin="auto", sent_at__gte=timezone.now() - timedelta(days=1)
            ),
            "delivery_sent_auto",
        ),
        # retention.prune
        (lambda t: DeliveryAttempt.objects.filter(finished_at__lt=timezone.now()), "attempt_finished"),
        (
            lambda t: EmailRecipientResult.objects.filter(updated_at__lt=timezone.now()),
            "email_result_updated",
        ),
    ],
    ids=["latency", "prune-attempts", "prune-results"],
)
def test_the_hot_read_paths_can_use_an_index(history, query, index) -> None:
    require_postgresql("the query plans are PostgreSQL's")
    target_health(history["target"])  # the query it makes still runs
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a 7-row table is cheaper to scan; ask what else
        plan = query(history["target"]).explain()
    assert index in plan, plan
