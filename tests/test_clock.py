"""One clock for deliveries: the database's (syndicator/clock.py; issue 15, item 8).

Each test skews this process's clock (``django.utils.timezone.now``, which every worker and
sweeper path read before) by ten minutes or more, and shows that leases, due times, the sweeper's
"lost" and Mastodon's Idempotency-Key hour follow the database's clock all the same.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from syndicator import delivery as deliveries
from syndicator.clock import db_now
from syndicator.models import Delivery, DeliveryAttempt, Feed, Post
from syndicator.targets.mastodon import IDEMPOTENCY_WINDOW
from tests.emulators.mastodon import Harness

pytestmark = pytest.mark.django_db

SKEW = timedelta(minutes=10)
_numbers = itertools.count(1)


@pytest.fixture
def social() -> Iterator[Harness]:
    with Harness() as harness:
        yield harness


@pytest.fixture
def skew(monkeypatch: pytest.MonkeyPatch) -> Callable[[timedelta], None]:
    """Set this process's clock off the database's by the given span (what a host without NTP does)."""
    real = timezone.now

    def set_off(by: timedelta) -> None:
        monkeypatch.setattr(timezone, "now", lambda: real() + by)

    return set_off


def new_post() -> Post:
    n = next(_numbers)
    feed = Feed.objects.create(url=f"https://news.example/feed/{n}", enabled=False)
    return Post.objects.create(feed=feed, guid=f"g-{n}", url=f"https://news.example/{n}", title="Kits arrive")


def mid_send(target) -> tuple[Delivery, DeliveryAttempt]:
    """A delivery a live worker has claimed and whose request is out (its attempt row is logged)."""
    delivery = Delivery.objects.create(post=new_post(), target=target)
    (delivery,) = deliveries.read_for_sending([delivery.pk])
    attempt = deliveries._claim_and_log(delivery, "task-1", "worker-1", rendered="Kits arrive")
    assert attempt is not None
    return delivery, attempt


@pytest.mark.parametrize("off", [SKEW, -SKEW], ids=["sweeper-fast", "sweeper-slow"])
def test_a_skewed_sweeper_judges_leases_by_the_database_clock(social, skew, off):
    live, _ = mid_send(social.make_target("live"))
    dead, _ = mid_send(social.make_target("dead"))
    Delivery.objects.filter(pk=dead.pk).update(lease_until=db_now() - timedelta(seconds=1))

    skew(off)
    counts = deliveries.sweep()

    live.refresh_from_db()
    dead.refresh_from_db()
    assert live.status == "sending", "a live send with a fresh lease is not lost"
    assert dead.status == "uncertain" and counts["uncertain"] == 1, "an expired lease is lost, to any clock"


@pytest.mark.parametrize("off", [SKEW, -SKEW], ids=["worker-fast", "worker-slow"])
def test_a_skewed_workers_lease_expires_on_the_databases_schedule(social, skew, off):
    lease = timedelta(seconds=settings.SYNDICATOR_SEND_LEASE)
    skew(off)  # the worker's clock
    delivery, attempt = mid_send(social.make_target())
    skew(timedelta(0))  # the sweeper's is right

    delivery.refresh_from_db()
    now = db_now()
    assert now < delivery.lease_until <= now + lease
    assert abs(attempt.started_at - now) < timedelta(seconds=5), "the attempt's start is the database's"
    assert deliveries.sweep(now=now + lease - timedelta(seconds=5))["uncertain"] == 0, "not before the lease"
    assert deliveries.sweep(now=now + lease + timedelta(seconds=1))["uncertain"] == 1, "and soon after it"


@pytest.mark.parametrize("off", [SKEW, -SKEW], ids=["worker-fast", "worker-slow"])
def test_a_skewed_worker_sets_retries_due_by_the_database_clock(social, skew, settings, off):
    settings.SYNDICATOR_RETRY = {"backoff": [30], "jitter": 0.0, "max_attempts": 4, "max_delay": 60}
    # Nothing listens here: the connection is refused before a request leaves, a plain retry.
    target = social.make_target(base_url="http://127.0.0.1:9")
    delivery = Delivery.objects.create(post=new_post(), target=target)

    skew(off)
    deliveries.attempt_delivery(delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == "retrying"
    wait = (delivery.next_attempt_at - db_now()).total_seconds()
    assert 25 < wait <= 30, "due in the policy's 30 s by the database's clock"
    skew(SKEW)  # a worker ten minutes fast still waits for it
    assert not deliveries.claim(delivery.pk)


def uncertain_mastodon(social: Harness, *, started_ago: timedelta) -> Delivery:
    """An uncertain Mastodon delivery whose send started ``started_ago``, by the database's clock."""
    social.emulator.lose_next_answers()
    delivery = Delivery.objects.create(post=new_post(), target=social.make_target())
    deliveries.attempt_delivery(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == "uncertain"
    DeliveryAttempt.objects.filter(delivery=delivery).update(started_at=db_now() - started_ago)
    return delivery


def status_posts(social: Harness) -> int:
    return sum(r.method == "POST" and r.path == "/api/v1/statuses" for r in social.emulator.requests)


def test_a_slow_worker_does_not_re_send_past_the_keys_hour(social, skew, settings):
    settings.SYNDICATOR_VERIFY_AFTER = 0
    delivery = uncertain_mastodon(social, started_ago=timedelta(seconds=IDEMPOTENCY_WINDOW + 10 * 60))

    skew(-2 * SKEW)  # to this worker, the send started only 50 minutes ago
    looked_up = deliveries.attempt_delivery(delivery.pk)

    delivery.refresh_from_db()
    assert looked_up.outcome == "unknown" and status_posts(social) == 1, "not re-sent"
    assert delivery.status == "uncertain" and "may have forgotten its Idempotency-Key" in delivery.last_error


def test_a_fast_worker_re_sends_within_the_keys_hour(social, skew, settings):
    settings.SYNDICATOR_VERIFY_AFTER = 0
    delivery = uncertain_mastodon(social, started_ago=timedelta(seconds=IDEMPOTENCY_WINDOW - 10 * 60))

    skew(2 * SKEW)  # to this worker, the send started 70 minutes ago
    deliveries.attempt_delivery(delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == "sent" and len(social.sent()) == 1, "settled under its key, once"
