"""A target failing continuously is paused automatically, the reason shown; a success resets the
count, and so does a resume; a dead token pauses it at once. Days of failures are simulated with
attempt rows written in the past (the streak is derived from the delivery log), or with ``now``
passed in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from syndicator import delivery as deliveries
from syndicator.models import Delivery, DeliveryAttempt, Feed, Post, Target
from syndicator.recovery import failing_streak, pause_reason
from tests.emulators import telegram
from tests.emulators.telegram import error

pytestmark = pytest.mark.django_db

POLICY = {"failures": 20, "seconds": 86400}  # the default: 20 failed attempts over a day


@pytest.fixture
def tg(settings) -> Iterator[telegram.Harness]:
    settings.SYNDICATOR_TARGET_PAUSE_AFTER = POLICY
    with telegram.Harness() as harness:
        yield harness


def new_delivery(target: Target) -> Delivery:
    feed, _ = Feed.objects.get_or_create(url="https://news.example/feed", defaults={"enabled": False})
    n = Post.objects.count()
    post = Post.objects.create(feed=feed, guid=f"p-{n}", url=f"https://news.example/{n}", title=f"Story {n}")
    return Delivery.objects.create(post=post, target=target)


def history(target: Target, count: int, first: datetime, last: datetime, outcome: str = "transient") -> None:
    """`count` finished attempts from `first` to `last`, evenly spread: the simulated clock."""
    delivery = new_delivery(target)
    for i in range(count):
        at = first + (last - first) * (i / max(count - 1, 1))
        DeliveryAttempt.objects.create(
            delivery=delivery,
            number=i + 1,
            started_at=at,
            finished_at=at,
            outcome=outcome,
            message="HTTP 503",
        )
    Delivery.objects.filter(pk=delivery.pk).update(attempts=count, status="failed")


def fail_once_for_real(harness: telegram.Harness, target: Target) -> Delivery:
    """One delivery attempt through the emulator, answered 503 (Telegram unavailable)."""
    harness.api.fail_next(status=503, json=error(503, "Service Unavailable"))
    delivery = new_delivery(target)
    assert deliveries.attempt_delivery(delivery.pk).outcome == "transient"
    return delivery


def test_a_target_failing_for_a_day_is_paused_with_the_reason_shown(tg):
    target = tg.make_target()
    now = timezone.now()
    history(target, 24, first=now - timedelta(days=2), last=now - timedelta(hours=1))

    held = fail_once_for_real(tg, target)

    target.refresh_from_db()
    assert target.paused_at is not None
    since = timezone.localtime(now - timedelta(days=2)).strftime("%Y-%m-%d %H:%M")
    assert target.paused_reason.startswith(f"paused automatically: every attempt failed since {since}")
    assert "(25 attempts)" in target.paused_reason
    assert "Telegram is unavailable" in target.paused_reason, "the last error is in the reason"
    out = StringIO()
    call_command("targets", "list", "--json", stdout=out)
    shown = json.loads(out.getvalue())
    assert shown["health"] == "paused" and shown["paused_reason"] == target.paused_reason
    # Its deliveries wait: the one that failed keeps its retry, and nothing is claimed meanwhile.
    Delivery.objects.filter(pk=held.pk).update(next_attempt_at=timezone.now())
    assert deliveries.attempt_delivery(held.pk) is None

    deliveries.resume_target(target)
    assert deliveries.attempt_delivery(held.pk).outcome == "sent"
    assert failing_streak(target) is None, "the success ended the streak"
    assert len(tg.sent()) == 1


def test_a_success_resets_the_count(tg):
    target = tg.make_target()
    now = timezone.now()
    history(target, 30, first=now - timedelta(days=3), last=now - timedelta(hours=3))
    history(target, 1, first=now - timedelta(hours=2), last=now - timedelta(hours=2), outcome="sent")
    history(target, 3, first=now - timedelta(hours=1), last=now - timedelta(minutes=30))

    fail_once_for_real(tg, target)

    target.refresh_from_db()
    assert target.paused_at is None
    streak = failing_streak(target)
    assert streak is not None and streak.count == 4
    assert abs(streak.since - (now - timedelta(hours=1))) < timedelta(seconds=1)


def test_both_the_count_and_the_time_must_be_reached_and_rate_limits_do_not_count(tg):
    target = tg.make_target()
    now = timezone.now()
    history(target, 40, first=now - timedelta(hours=1), last=now - timedelta(minutes=1))
    assert pause_reason(target, "HTTP 503", now=now) == "", "many failures, but for an hour only"
    assert pause_reason(target, "HTTP 503", now=now + timedelta(days=1)).startswith("paused automatically")

    other = tg.make_target(name="rate-limited")
    history(other, 40, first=now - timedelta(days=3), last=now, outcome="rate_limited")
    history(other, 5, first=now - timedelta(days=2), last=now)
    assert failing_streak(other).count == 5
    assert pause_reason(other, "HTTP 429", now=now) == "", "waiting out rate limits is not failing"


def test_a_resume_starts_the_streak_afresh(tg):
    target = tg.make_target()
    now = timezone.now()
    history(target, 24, first=now - timedelta(days=2), last=now - timedelta(hours=1))
    fail_once_for_real(tg, target)
    target.refresh_from_db()
    assert target.paused_at is not None

    deliveries.resume_target(target)
    fail_once_for_real(tg, target)  # the cause was not fixed after all

    target.refresh_from_db()
    assert target.paused_at is None, "one failure after a resume is not a day of failures"
    assert failing_streak(target).count == 1
    # It takes the whole policy again: 20 failures over a day, all after the resume.
    resumed = timezone.now()
    history(target, 19, first=resumed + timedelta(minutes=1), last=resumed + timedelta(hours=2))
    assert failing_streak(target).count == 20
    assert pause_reason(target, "HTTP 503", now=resumed + timedelta(hours=3)) == ""
    assert pause_reason(target, "HTTP 503", now=resumed + timedelta(days=1, minutes=1)).startswith(
        "paused automatically"
    )


def test_a_dead_token_pauses_the_target_at_once(tg):
    target = tg.make_target()
    tg.inject("bad_token")  # 401 Unauthorized from the Bot API
    held = new_delivery(target)

    attempt = deliveries.attempt_delivery(held.pk)

    assert attempt.outcome == "permanent" and attempt.error_class == "TargetBroken"
    target.refresh_from_db()
    assert target.paused_at is not None and "bot token" in target.paused_reason
    assert "@BotFather" in target.paused_reason, "the reason says what to do"
    held.refresh_from_db()
    assert held.status == "queued", "held for the target, not failed"
    assert deliveries.attempt_delivery(held.pk) is None
    assert tg.sent() == []

    deliveries.resume_target(target)  # the token was fixed
    assert deliveries.attempt_delivery(held.pk).outcome == "sent"
    assert len(tg.sent()) == 1


def test_the_streak_counts_from_the_resume_time_column(tg):
    target = tg.make_target()
    now = timezone.now()
    history(target, 24, first=now - timedelta(days=2), last=now - timedelta(hours=1))
    assert failing_streak(target).count == 24

    Target.objects.filter(pk=target.pk).update(paused_at=now)
    deliveries.resume_target(target)
    stored = Target.objects.get(pk=target.pk)
    assert stored.resumed_at is not None and abs(stored.resumed_at - timezone.now()) < timedelta(minutes=1)
    assert "_resumed_at" not in stored.settings, "the resume time is a column, not a private setting"
    assert failing_streak(target) is None, "every failure came before the resume"

    # The column alone decides: an older resume time lets the older failures count again.
    Target.objects.filter(pk=target.pk).update(resumed_at=now - timedelta(hours=3))
    assert failing_streak(target).count == 1
