"""Adaptive polling: the feed's rhythm within the admin's bounds, Cache-Control max-age,
Retry-After, the next poll counted from the end of the poll, and deliveries in publishing order."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from syndicator import rhythm, watch
from syndicator.models import DeliveryAttempt, Feed, Post, Target
from tasks.watch import poll_feed, schedule_due_feeds
from tests.conftest import wait_for
from tests.test_websub import rss

pytestmark = pytest.mark.django_db(transaction=True)


def feed_with_posts(count: int, *, days: float = 7, lo: int = 60, hi: int = 3600) -> Feed:
    """An adaptive feed with `count` posts spread evenly over the last `days`."""
    feed = Feed.objects.create(
        url=f"https://news.example/{count}-{days}", poll_interval=lo, poll_interval_max=hi
    )
    now = timezone.now()
    for n in range(count):
        at = now - timedelta(days=days) * (n + 0.5) / max(count, 1)
        Post.objects.create(feed=feed, guid=f"g{n}", title=f"t{n}", published_at=at, first_seen_at=now)
    return feed


def test_a_busy_feed_is_polled_often_a_quiet_one_rarely_within_the_bounds():
    now = timezone.now()
    busy = feed_with_posts(700)  # 100 a day: a gap of ~14 min, ten polls per gap
    assert 60 <= rhythm.next_interval(busy, now) <= 100
    daily = feed_with_posts(7)  # one a day: 8640 s ÷ … past the 1 h bound
    assert rhythm.next_interval(daily, now) == 3600
    flood = feed_with_posts(5000)  # far more than the shortest interval allows
    assert rhythm.next_interval(flood, now) == 60
    quiet = feed_with_posts(5, days=60)  # nothing in the last week
    assert rhythm.next_interval(quiet, now) == 3600
    fixed = Feed.objects.create(url="https://news.example/fixed", poll_interval=5)
    assert rhythm.next_interval(fixed, now, max_age=600) == 5, "no longest interval: fixed"


def test_cache_control_max_age_delays_the_next_poll_within_the_bounds(feed_server):
    # 200 items in the last 10 hours: by its rhythm, polled every ~5 min.
    feed_server.set("/feed", rss(*range(1, 201)), headers={"Cache-Control": "public, max-age=900"})
    feed = Feed.objects.create(url=feed_server.url("/feed"), poll_interval=60, poll_interval_max=3600)
    watch.poll_feed(feed.pk)
    wait = Feed.objects.get(pk=feed.pk).next_poll_at - timezone.now()
    assert timedelta(seconds=890) < wait <= timedelta(seconds=900)
    feed_server.set("/feed", rss(*range(1, 202)), headers={"Cache-Control": "max-age=86400"})
    watch.poll_feed(feed.pk)
    wait = Feed.objects.get(pk=feed.pk).next_poll_at - timezone.now()
    assert timedelta(seconds=3590) < wait <= timedelta(seconds=3600), "the longest interval wins over a day"


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_obeyed(feed_server, status):
    feed_server.set("/feed", "busy", status=status, headers={"Retry-After": "120"})
    feed = Feed.objects.create(url=feed_server.url("/feed"), poll_interval=5)
    report = watch.poll_feed(feed.pk)
    assert report.status == "error"
    wait = Feed.objects.get(pk=feed.pk).next_poll_at - timezone.now()
    assert timedelta(seconds=115) < wait <= timedelta(seconds=120)


def test_next_poll_is_counted_from_when_the_poll_finished(feed_server):
    feed_server.set("/feed", rss(1), delay=1.0)
    feed = Feed.objects.create(url=feed_server.url("/feed"), poll_interval=5)
    watch.poll_feed(feed.pk)
    feed.refresh_from_db()
    assert feed.next_poll_at - feed.last_polled_at >= timedelta(seconds=6), "5 s after a poll that took 1 s"


def test_the_tick_claims_feeds_due_before_the_next_tick_with_their_countdown():
    now = timezone.now()
    soon = Feed.objects.create(url="https://news.example/soon", next_poll_at=now + timedelta(seconds=3))
    Feed.objects.create(url="https://news.example/later", next_poll_at=now + timedelta(seconds=30))
    assert watch.claim_feeds_due_within(0, now=now) == []
    [(claimed, countdown)] = watch.claim_feeds_due_within(5, now=now)
    assert claimed == soon.pk and countdown == pytest.approx(3, abs=0.01)
    assert watch.claim_feeds_due_within(5, now=now) == [], "claimed once"


def test_interval_equal_to_the_tick_does_not_double(feed_server, celery_worker, settings):
    settings.SYNDICATOR_SCHEDULE_INTERVAL = 2.0
    feed_server.set("/feed", rss(1))
    Feed.objects.create(url=feed_server.url("/feed"), poll_interval=2)
    stop = threading.Event()

    def beat() -> None:  # what celery beat does, at the configured tick
        from django.db import connection

        try:
            while True:
                schedule_due_feeds()
                if stop.wait(settings.SYNDICATOR_SCHEDULE_INTERVAL):
                    return
        finally:
            connection.close()

    ticking = threading.Thread(target=beat, daemon=True)
    ticking.start()
    try:
        feed_server.wait_for_hits("/feed", 1, timeout=10)
        started = time.monotonic()
        feed_server.wait_for_hits("/feed", 4, timeout=20)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        ticking.join(timeout=10)
    assert elapsed < 9, f"3 more polls took {elapsed:.1f} s: every ~2 s, not every tick pair (~12 s)"


def test_new_items_reach_each_target_oldest_first_with_several_workers(feed_server, celery_worker):
    targets = [
        Target.objects.create(name=f"out-{f}", kind="outbox", settings={"format": f})
        for f in ("telegram", "email")
    ]
    feed_server.set("/feed", rss(1))
    feed = Feed.objects.create(url=feed_server.url("/feed"), poll_interval=3600)
    watch.poll_feed(feed.pk)  # the backlog
    feed_server.set("/feed", rss(*range(1, 22)))
    poll_feed.delay(feed.pk)
    wait_for(lambda: DeliveryAttempt.objects.filter(outcome="sent").count() == 40, timeout=60)
    for target in targets:
        sent = DeliveryAttempt.objects.filter(delivery__target=target).order_by("started_at", "pk")
        assert [a.delivery.post.guid for a in sent] == [f"story-{n}" for n in range(2, 22)]
