"""Delivery semantics without a worker: claim, the retry policy, the sweeper, pausing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from syndicator import delivery as deliveries
from syndicator.models import Delivery, DeliveryAttempt, Feed, Post, Target

pytestmark = pytest.mark.django_db


@pytest.fixture
def post() -> Post:
    feed = Feed.objects.create(url="https://news.example/feed", language="en")
    return Post.objects.create(
        feed=feed,
        guid="g-1",
        url="https://news.example/a-story",
        title="A story",
        summary="What happened",
        categories=["World"],
        language="en",
    )


def make_delivery(post: Post, **target_settings) -> Delivery:
    target = Target.objects.create(
        name=f"out-{Target.objects.count()}",
        kind="outbox",
        settings={"format": "telegram", **target_settings},
    )
    return Delivery.objects.create(post=post, target=target)


def test_a_delivery_is_claimed_once_and_a_duplicate_message_does_nothing(post):
    d = make_delivery(post)
    first = deliveries.attempt_delivery(d.pk, task_id="t1", worker="w1")
    second = deliveries.attempt_delivery(d.pk, task_id="t1-duplicate", worker="w2")

    assert first is not None and first.outcome == "sent"
    assert second is None
    d.refresh_from_db()
    assert d.status == "sent" and d.attempts == 1 and d.sent_at is not None
    assert d.external_id.startswith(f"outbox-{d.pk}-")
    assert "A story" in d.rendered_text
    assert DeliveryAttempt.objects.filter(delivery=d).count() == 1


def test_retry_policy_follows_the_schedule_honours_retry_after_and_gives_up():
    policy = {"backoff": [10, 60, 300], "jitter": 0.0, "max_attempts": 4, "max_delay": 200}
    assert deliveries.retry_delay(1, policy=policy) == 10
    assert deliveries.retry_delay(2, policy=policy) == 60
    assert deliveries.retry_delay(3, policy=policy) == 200  # capped at max_delay
    assert deliveries.retry_delay(1, retry_after=45, policy=policy) == 45
    assert deliveries.retry_delay(1, retry_after=900, policy=policy) == 900  # the network's word wins
    assert deliveries.retry_delay(4, policy=policy) is None


def test_retry_policy_jitter_stays_within_its_band():
    policy = {"backoff": [100], "jitter": 0.2, "max_attempts": 9, "max_delay": 1000}
    delays = {deliveries.retry_delay(1, policy=policy) for _ in range(200)}
    assert min(delays) >= 80 and max(delays) <= 120 and len(delays) > 1


def test_transient_failure_schedules_a_retry_and_exhaustion_fails(post, settings):
    settings.SYNDICATOR_RETRY = {"backoff": [30], "jitter": 0.0, "max_attempts": 2, "max_delay": 60}
    d = make_delivery(post, fail="transient", fail_next=5)

    deliveries.attempt_delivery(d.pk)
    d.refresh_from_db()
    assert d.status == "retrying"
    assert 29 <= (d.next_attempt_at - timezone.now()).total_seconds() <= 30
    assert deliveries.attempt_delivery(d.pk) is None, "not due yet: nothing to claim"

    Delivery.objects.filter(pk=d.pk).update(next_attempt_at=timezone.now())
    deliveries.attempt_delivery(d.pk)
    d.refresh_from_db()
    assert d.status == "failed" and d.attempts == 2
    assert "gave up after 2 attempts" in d.last_error


def test_rate_limits_do_not_use_up_the_attempt_budget(post, settings):
    settings.SYNDICATOR_RETRY = {"backoff": [0], "jitter": 0.0, "max_attempts": 1, "max_delay": 0}
    d = make_delivery(post, fail="rate_limited", fail_next=3, fail_retry_after=0)
    for _ in range(3):
        deliveries.attempt_delivery(d.pk)
    deliveries.attempt_delivery(d.pk)
    d.refresh_from_db()
    assert d.status == "sent" and d.attempts == 4


def test_a_dead_token_pauses_the_target_and_holds_its_deliveries(post):
    d = make_delivery(post, fail="broken", fail_next=1)
    deliveries.attempt_delivery(d.pk)
    d.refresh_from_db()
    d.target.refresh_from_db()
    assert d.target.paused_at is not None and "dead token" in d.target.paused_reason
    assert d.status == "queued", "held until the target is resumed, not burnt"
    assert deliveries.attempt_delivery(d.pk) is None, "a paused target's deliveries are not claimed"

    deliveries.resume_target(d.target)
    deliveries.attempt_delivery(d.pk)
    d.refresh_from_db()
    assert d.status == "sent"


def test_outcome_unknown_makes_the_delivery_uncertain_for_a_non_idempotent_target(post, monkeypatch):
    from syndicator.targets.outbox import OutboxAdapter

    monkeypatch.setattr(OutboxAdapter, "idempotent", False)
    d = make_delivery(post, fail="unknown", fail_next=1)
    deliveries.attempt_delivery(d.pk)
    d.refresh_from_db()
    assert d.status == "uncertain"
    assert d.attempt_log.get().outcome == "unknown"


def test_sweeper_marks_a_send_lost_with_its_worker_uncertain(post):
    d = make_delivery(post)
    assert deliveries.claim(d.pk)
    DeliveryAttempt.objects.create(delivery=d, number=1)
    Delivery.objects.filter(pk=d.pk).update(lease_until=timezone.now() - timedelta(seconds=1))

    result = deliveries.sweep()

    d.refresh_from_db()
    assert result["uncertain"] == 1
    assert d.status == "uncertain" and "worker was lost" in d.last_error
    assert d.attempt_log.get().outcome == "lost"
    assert deliveries.attempt_delivery(d.pk) is None, "never re-sent silently"


def test_sweeper_requeues_stranded_and_due_deliveries_but_not_fresh_ones(post):
    stranded = make_delivery(post)
    fresh = make_delivery(post)
    due_retry = make_delivery(post)
    long_ago = timezone.now() - timedelta(hours=1)
    Delivery.objects.filter(pk=stranded.pk).update(enqueued_at=long_ago)
    Delivery.objects.filter(pk=fresh.pk).update(enqueued_at=timezone.now())
    Delivery.objects.filter(pk=due_retry.pk).update(status="retrying", next_attempt_at=long_ago)

    assert deliveries.sweep()["enqueued"] == 2
    enqueued = dict(Delivery.objects.values_list("pk", "enqueued_at"))
    assert enqueued[stranded.pk] > long_ago and enqueued[due_retry.pk] is not None
    assert deliveries.sweep()["enqueued"] == 0, "just sent: not sent again until stranded"


def test_auto_deliveries_follow_target_filters_and_are_unique_per_post_and_target(post):
    other_feed = Feed.objects.create(url="https://other.example/feed")
    everything = Target.objects.create(name="all", kind="outbox")
    farsi = Target.objects.create(name="fa", kind="outbox", languages=["fa"])
    Target.objects.create(name="world", kind="outbox", categories=["world"])
    elsewhere = Target.objects.create(name="elsewhere", kind="outbox")
    elsewhere.feeds.add(other_feed)
    Target.objects.create(name="off", kind="outbox", enabled=False)

    created = deliveries.create_auto_deliveries([post])
    assert sorted(d.target.name for d in created) == ["all", "world"]
    assert farsi.deliveries.count() == 0

    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        Delivery.objects.create(post=post, target=everything, origin="auto")
    manual = deliveries.repost(post, [everything], text="Read this again", requested_by="editor")
    assert manual[0].origin == "manual" and manual[0].requested_by == "editor"


def test_attempt_messages_are_redacted():
    from syndicator.redact import redact

    url = "https://api.telegram.org/bot123456:AAE-secret_token/sendMessage?access_token=abc123"
    assert redact(url) == "https://api.telegram.org/bot<redacted>/sendMessage?access_token=<redacted>"
    assert "hunter2" not in redact("redis://user:hunter2@cache:6379/0")


def test_oauth_and_bearer_headers_are_redacted_whole():
    from syndicator.redact import redact

    header = (
        'Authorization: OAuth oauth_consumer_key="ck-123", oauth_token="42-secret", oauth_signature="s%3D"'
    )
    cleaned = redact(header)
    assert "ck-123" not in cleaned and "42-secret" not in cleaned and "s%3D" not in cleaned
    assert "abc.def" not in redact("authorization: Bearer abc.def")
