"""The pipeline end to end: feeds served over real HTTP, a real Celery worker on real Redis.

Runs on PostgreSQL (make test) and again on the embedded SQLite default.
"""

from __future__ import annotations

import pytest

from syndicator.models import Delivery, DeliveryAttempt, Feed, Post, Target
from tasks.watch import poll_feed
from tests.conftest import wait_for

NEW_POST_URL = "https://www.nejatngo.org/en/?p=90006"
FORMATS = ("telegram", "facebook", "twitter", "email")

pytestmark = pytest.mark.django_db(transaction=True)


def outboxes(*names: str, **settings) -> list[Target]:
    """Outbox targets in each of the four formats (or the named ones)."""
    return [
        Target.objects.create(name=f"outbox-{fmt}", kind="outbox", settings={"format": fmt, **settings})
        for fmt in (names or FORMATS)
    ]


def poll_through_worker(feed: Feed) -> Feed:
    """Send the poll task to the worker and wait until the poll is recorded on the feed."""
    before = Feed.objects.get(pk=feed.pk).last_polled_at
    poll_feed.delay(feed.pk)
    wait_for(lambda: Feed.objects.get(pk=feed.pk).last_polled_at != before)
    return Feed.objects.get(pk=feed.pk)


def test_first_poll_records_backlog_and_second_poll_delivers_only_the_new_post(
    feed_server, celery_worker, beat
):
    outboxes()
    feed_server.set_file("/en/feed/", "nejat-en-recent.rss")
    feed = Feed.objects.create(url=feed_server.url("/en/feed/"), language="en", poll_interval=3600)

    poll_through_worker(feed)
    assert Post.objects.filter(feed=feed).count() == 5
    assert Delivery.objects.count() == 0, "the first poll must not flood the targets with the backlog"

    feed_server.set_file("/en/feed/", "nejat-en-recent-next.rss")
    poll_through_worker(feed)
    wait_for(lambda: Delivery.objects.filter(status="sent").count() == 4)

    deliveries = Delivery.objects.select_related("post", "target")
    assert sorted(d.target.name for d in deliveries) == sorted(f"outbox-{f}" for f in FORMATS)
    assert {d.post.url for d in deliveries} == {NEW_POST_URL}
    assert all(d.origin == "auto" and d.attempts == 1 for d in deliveries)
    assert all("Nejat NewsLetter" in d.rendered_text for d in deliveries)

    # The same feed polled again (and an old item scrolling back in) delivers nothing new.
    feed_server.set_file("/en/feed/", "nejat-en-recent.rss")
    poll_through_worker(feed)
    feed_server.set_file("/en/feed/", "nejat-en-recent-next.rss")
    poll_through_worker(feed)
    assert Delivery.objects.count() == 4
    assert DeliveryAttempt.objects.count() == 4


def test_unchanged_feed_answers_304_and_is_not_parsed(feed_server, db):
    from syndicator import watch

    feed_server.set_file("/feed", "nejat-en-recent.rss")
    feed = Feed.objects.create(url=feed_server.url("/feed"))
    first = watch.poll_feed(feed.pk)
    second = watch.poll_feed(feed.pk)

    assert first.status == "ok" and first.parsed
    assert second.status == "not_modified" and not second.parsed
    conditional = feed_server.requests[-1]["headers"]
    assert conditional.get("If-None-Match") or conditional.get("if-none-match")
    assert Feed.objects.get(pk=feed.pk).last_status == "not_modified"


def test_failing_feed_is_recorded_and_backed_off_without_stopping_other_feeds(feed_server, db):
    from syndicator import watch

    feed_server.set("/broken", "oops", status=500, content_type="text/plain")
    feed_server.set("/not-a-feed", "<html><body>Welcome</body></html>", content_type="text/html")
    feed_server.set_file("/good", "nejat-en-recent.rss")
    broken = Feed.objects.create(url=feed_server.url("/broken"), poll_interval=60)
    garbage = Feed.objects.create(url=feed_server.url("/not-a-feed"), poll_interval=60)
    good = Feed.objects.create(url=feed_server.url("/good"), poll_interval=60)

    reports = [watch.poll_feed(f.pk) for f in (broken, garbage, good)]
    watch.poll_feed(broken.pk)

    assert [r.status for r in reports] == ["error", "error", "ok"]
    broken.refresh_from_db()
    assert broken.last_status == "error"
    assert broken.consecutive_failures == 2
    assert broken.last_http_status == 500
    assert "500" in broken.last_error
    # Backed off: two failures wait twice the interval.
    assert (broken.next_poll_at - broken.last_polled_at).total_seconds() == pytest.approx(120, abs=1)
    garbage.refresh_from_db()
    assert garbage.last_status == "error" and garbage.last_error
    assert Post.objects.filter(feed=good).count() == 5


FEED_WITHOUT_GUIDS = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>No guids</title><link>https://example.org/</link>
{items}
</channel></rss>"""
ITEM_WITH_LINK = "<item><title>{title}</title><link>https://example.org/{slug}</link></item>"
ITEM_WITHOUT_LINK = "<item><title>{title}</title><description>Body of {title}</description></item>"


def test_items_without_guid_are_identified_by_link_then_by_content_hash(feed_server, db):
    from syndicator import watch

    items = [ITEM_WITH_LINK.format(title="Linked", slug="linked"), ITEM_WITHOUT_LINK.format(title="Bare")]
    feed_server.set("/noguid", FEED_WITHOUT_GUIDS.format(items="".join(items)), etag=False)
    feed = Feed.objects.create(url=feed_server.url("/noguid"))
    Target.objects.create(name="out", kind="outbox")
    watch.poll_feed(feed.pk)

    guids = set(Post.objects.filter(feed=feed).values_list("guid", flat=True))
    assert "https://example.org/linked" in guids
    assert any(g.startswith("sha256:") for g in guids)

    # Served again with one more item: only that one is new, and only it is delivered.
    items.insert(0, ITEM_WITH_LINK.format(title="Fresh", slug="fresh"))
    feed_server.set("/noguid", FEED_WITHOUT_GUIDS.format(items="".join(items)), etag=False)
    report = watch.poll_feed(feed.pk)
    assert [p.title for p in report.new_posts] == ["Fresh"]
    assert Delivery.objects.get().post.title == "Fresh"


def test_backfill_delivers_the_newest_items_on_first_poll(feed_server, celery_worker, beat):
    outboxes("telegram")
    feed_server.set_file("/feed", "nejat-en-recent.rss")
    feed = Feed.objects.create(url=feed_server.url("/feed"), backfill=2)
    poll_through_worker(feed)

    wait_for(lambda: Delivery.objects.filter(status="sent").count() == 2)
    urls = set(Delivery.objects.values_list("post__url", flat=True))
    assert urls == {"https://www.nejatngo.org/en/?p=90005", "https://www.nejatngo.org/en/?p=90004"}


def test_transient_failures_are_retried_by_the_policy_until_sent(
    feed_server, celery_worker, beat, fast_retries
):
    outboxes("twitter", fail="transient", fail_next=2)
    feed_server.set_file("/feed", "nejat-en-recent.rss")
    feed = Feed.objects.create(url=feed_server.url("/feed"), backfill=1)
    poll_through_worker(feed)

    delivery = wait_for(lambda: Delivery.objects.filter(status="sent").first())
    attempts = list(delivery.attempt_log.order_by("number"))
    assert [a.outcome for a in attempts] == ["transient", "transient", "sent"]
    assert [a.number for a in attempts] == [1, 2, 3]
    assert attempts[0].error_class == "TransientError" and attempts[0].http_status == 503
    assert all(a.worker and a.task_id and a.finished_at and a.duration_ms is not None for a in attempts)
    assert delivery.attempts == 3 and delivery.last_error == ""
    assert Delivery.objects.count() == 1


def test_rate_limit_waits_at_least_retry_after(feed_server, celery_worker, beat, fast_retries):
    outboxes("telegram", fail="rate_limited", fail_next=1, fail_retry_after=1.5)
    feed_server.set_file("/feed", "nejat-en-recent.rss")
    feed = Feed.objects.create(url=feed_server.url("/feed"), backfill=1)
    poll_through_worker(feed)

    delivery = wait_for(lambda: Delivery.objects.filter(status="sent").first())
    limited, sent = delivery.attempt_log.order_by("number")
    assert limited.outcome == "rate_limited" and limited.retry_after == 1.5
    assert (sent.started_at - limited.finished_at).total_seconds() >= 1.5


def test_permanent_failure_fails_at_once_and_admin_retry_sends_it(feed_server, celery_worker, beat):
    from syndicator import delivery as deliveries

    outboxes("email", fail="permanent", fail_next=1)
    feed_server.set_file("/feed", "nejat-en-recent.rss")
    feed = Feed.objects.create(url=feed_server.url("/feed"), backfill=1)
    poll_through_worker(feed)

    failed = wait_for(lambda: Delivery.objects.filter(status="failed").first())
    assert failed.attempts == 1 and "PermanentError" in failed.last_error
    assert deliveries.retry([failed]) == 1
    sent = wait_for(lambda: Delivery.objects.filter(pk=failed.pk, status="sent").first())
    # 1 failed, 2 the admin's retry (a verdict row), 3 the send that went out.
    assert sent.attempts == 3
    assert [a.kind for a in sent.attempt_log.all()] == ["send", "verdict", "send"]


def test_a_feed_is_never_polled_twice_at_once_nor_scheduled_twice(feed_server, db):
    from datetime import timedelta

    from django.utils import timezone

    from syndicator import watch

    feed_server.set_file("/feed", "nejat-en-recent.rss")
    feed = Feed.objects.create(url=feed_server.url("/feed"), poll_interval=300)

    assert watch.claim_due_feeds() == [feed.pk]
    assert watch.claim_due_feeds() == [], "a scheduled feed is not due again until its interval passes"

    Feed.objects.filter(pk=feed.pk).update(polling_until=timezone.now() + timedelta(minutes=1))
    report = watch.poll_feed(feed.pk)
    assert report.status == "busy" and feed_server.hits("/feed") == 0

    # A lease left behind by a dead worker expires, and the feed is polled again.
    Feed.objects.filter(pk=feed.pk).update(polling_until=timezone.now() - timedelta(seconds=1))
    assert watch.poll_feed(feed.pk).status == "ok"
    assert Feed.objects.get(pk=feed.pk).polling_until is None
