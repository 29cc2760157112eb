"""Health verdicts derived from history: one function each for feeds and targets."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from syndicator.health import feed_health, target_health
from syndicator.models import Delivery, DeliveryAttempt, Feed, Post, Target

pytestmark = pytest.mark.django_db


def test_feed_health_follows_consecutive_failures():
    feed = Feed.objects.create(url="https://a.example/feed")
    assert feed_health(feed).state == "new"
    feed.last_status, feed.consecutive_failures, feed.last_error = "error", 1, "HTTP 503"
    assert feed_health(feed).state == "warning"
    feed.consecutive_failures = 3
    verdict = feed_health(feed)
    assert verdict.state == "failing" and "HTTP 503" in verdict.reason
    feed.last_status, feed.consecutive_failures = "ok", 0
    assert feed_health(feed).ok
    feed.enabled = False
    assert feed_health(feed).state == "disabled"


def test_target_health_sees_paused_failing_and_recovered_targets():
    feed = Feed.objects.create(url="https://a.example/feed")
    post = Post.objects.create(feed=feed, guid="1", title="t")
    target = Target.objects.create(name="t", kind="outbox")
    delivery = Delivery.objects.create(post=post, target=target, status="retrying")
    assert target_health(target).state == "ok"

    for n in range(1, 6):
        DeliveryAttempt.objects.create(
            delivery=delivery, number=n, outcome="transient", message="HTTP 502", finished_at=timezone.now()
        )
    verdict = target_health(target)
    assert verdict.state == "failing" and "HTTP 502" in verdict.reason

    DeliveryAttempt.objects.create(delivery=delivery, number=6, outcome="sent", finished_at=timezone.now())
    assert target_health(target).state == "ok"

    Delivery.objects.create(post=post, target=target, status="uncertain", origin="manual")
    assert target_health(target).state == "warning"

    target.paused_at, target.paused_reason = timezone.now(), "token revoked"
    assert target_health(target).state == "paused"


def test_look_ups_that_found_nothing_do_not_make_a_target_failing():
    feed = Feed.objects.create(url="https://a.example/feed")
    post = Post.objects.create(feed=feed, guid="1", title="t")
    target = Target.objects.create(name="fb", kind="facebook")
    delivery = Delivery.objects.create(post=post, target=target, status="retrying")
    finished = timezone.now()
    for n in range(1, 5):
        DeliveryAttempt.objects.create(
            delivery=delivery, number=n, outcome="transient", message="HTTP 502", finished_at=finished
        )
    # The fifth is a look-up of an uncertain delivery: the network could not tell.
    DeliveryAttempt.objects.create(
        delivery=delivery, number=5, outcome="unknown", kind="lookup", worker="w1", finished_at=finished
    )
    assert target_health(target).state == "ok"

    DeliveryAttempt.objects.create(
        delivery=delivery, number=6, outcome="transient", message="HTTP 503", finished_at=timezone.now()
    )
    verdict = target_health(target)
    assert verdict.state == "failing" and "HTTP 503" in verdict.reason


def test_a_resumed_target_is_judged_by_what_happened_since():
    feed = Feed.objects.create(url="https://a.example/feed")
    post = Post.objects.create(feed=feed, guid="1", title="t")
    target = Target.objects.create(name="t", kind="outbox")
    delivery = Delivery.objects.create(post=post, target=target, status="retrying")
    earlier = timezone.now() - timedelta(hours=1)
    for n in range(1, 6):
        DeliveryAttempt.objects.create(
            delivery=delivery,
            number=n,
            outcome="transient",
            message="HTTP 502",
            started_at=earlier,
            finished_at=earlier,
        )
    assert target_health(target).state == "failing"
    target.resumed_at = timezone.now() - timedelta(minutes=1)
    assert target_health(target).state == "ok", "the admin resumed it: the old failures are behind"


def test_a_persons_retry_or_cancel_says_nothing_about_the_target():
    feed = Feed.objects.create(url="https://a.example/feed")
    post = Post.objects.create(feed=feed, guid="1", title="t")
    target = Target.objects.create(name="t", kind="outbox")
    delivery = Delivery.objects.create(post=post, target=target, status="queued")
    now = timezone.now()
    DeliveryAttempt.objects.create(delivery=delivery, number=1, outcome="sent", finished_at=now)
    for n in range(2, 8):
        outcome = "retried" if n % 2 else "cancelled"
        DeliveryAttempt.objects.create(
            delivery=delivery, number=n, kind="verdict", outcome=outcome, actor_name="ada", finished_at=now
        )
    assert target_health(target).state == "ok"
