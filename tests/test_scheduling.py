"""Beat's database ticks run when something is due, not every interval (syndicator/scheduling.py).

Beat is replayed as it runs: celeryproject.WhenDue asked every 5 s (an injected clock, nothing
sleeps), the tick's task body run in this process whenever it says due. The record and the wakes
go through the real Redis (the test broker's, under a key prefix of this test's own).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from celeryproject import WhenDue
from syndicator import clock, digest, dispatch, scheduling
from syndicator import delivery as deliveries
from syndicator.models import Delivery, DeliveryAttempt, Digest, Feed, Target
from tasks.maintenance import sweep_deliveries
from tasks.watch import schedule_due_feeds
from tests.conftest import TEST_BROKER_URL
from tests.helpers import demo_post

pytestmark = pytest.mark.django_db(transaction=True)
INTERVAL = 5.0


@pytest.fixture(autouse=True)
def shared_cache(settings) -> None:
    """The cache every process shares (the broker's Redis), under this test's own prefix."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": TEST_BROKER_URL,
            "KEY_PREFIX": f"synd-test-{uuid.uuid4().hex[:8]}",
        }
    }
    settings.SYNDICATOR_SCHEDULER_MAX_IDLE = 60
    settings.SYNDICATOR_SCHEDULE_INTERVAL = INTERVAL
    settings.SYNDICATOR_SWEEP_INTERVAL = INTERVAL


class Beat:
    """Beat's two database ticks on an injected clock: ``advance`` moves it and runs what is due."""

    def __init__(self) -> None:
        self.now = timezone.now()
        self.ticks = {scheduling.FEEDS: [], scheduling.SWEEP: []}  # when each tick ran
        self.gate_queries = 0
        kinds = (scheduling.FEEDS, scheduling.SWEEP)
        self._schedules = {kind: WhenDue(INTERVAL, kind, nowfun=lambda: self.now) for kind in kinds}
        self._last_run = dict.fromkeys(self._schedules, self.now - timedelta(seconds=INTERVAL))
        self._run: dict[str, Callable[[], object]] = {
            scheduling.FEEDS: schedule_due_feeds,
            scheduling.SWEEP: sweep_deliveries,
        }

    def advance(self, seconds: float) -> None:
        end = self.now + timedelta(seconds=seconds)
        while self.now < end:
            self.now += timedelta(seconds=INTERVAL)
            for kind, entry in self._schedules.items():
                with CaptureQueriesContext(connection) as asked:
                    due = entry.is_due(self._last_run[kind]).is_due
                self.gate_queries += len(asked)
                if due:
                    self._last_run[kind] = self.now
                    self.ticks[kind].append(self.now)
                    self._run[kind]()


@pytest.fixture
def beat() -> Iterator[Beat]:
    replay = Beat()
    with clock.injected(lambda: replay.now):
        scheduling.wake()  # as beat_init does
        yield replay


def outbox() -> Target:
    name = f"out-{uuid.uuid4().hex[:6]}"
    return Target.objects.create(name=name, kind="outbox", settings={"format": "telegram"})


def test_with_nothing_due_the_ticks_run_once_a_max_idle_not_every_interval(beat: Beat) -> None:
    beat.advance(3600)

    # Every 5 s would be 720 each; an hour of MAX_IDLE (60 s) is 60, plus the first after the wake.
    assert len(beat.ticks[scheduling.SWEEP]) <= 62
    assert len(beat.ticks[scheduling.FEEDS]) <= 62
    assert beat.gate_queries == 0, "beat asks the cache, never the database"


def test_a_delivery_scheduled_while_idle_is_sent_when_due_not_at_the_next_long_tick(beat: Beat, settings):
    settings.SYNDICATOR_SCHEDULER_MAX_IDLE = 3600
    post, target = demo_post(), outbox()
    beat.advance(60)
    idle_sweeps = len(beat.ticks[scheduling.SWEEP])
    at = beat.now + timedelta(seconds=12)

    (scheduled,) = dispatch.repost(post, [target], requested_by="editor", at=at)
    beat.advance(5)
    assert len(beat.ticks[scheduling.SWEEP]) == idle_sweeps + 1, "the repost woke the sweep"
    beat.advance(15)

    first_after = [t for t in beat.ticks[scheduling.SWEEP] if t >= at]
    assert first_after and first_after[0] < at + timedelta(seconds=INTERVAL + 0.1)
    scheduled.refresh_from_db()
    assert scheduled.enqueued_at is not None, "the sweep sent it once it was due"


def test_a_feed_added_while_idle_is_scheduled_at_the_next_interval(beat: Beat, settings) -> None:
    settings.SYNDICATOR_SCHEDULER_MAX_IDLE = 3600
    beat.advance(60)
    before = len(beat.ticks[scheduling.FEEDS])

    feed = Feed.objects.create(url="https://news.example/new-feed", poll_interval=600)
    beat.advance(5)

    assert len(beat.ticks[scheduling.FEEDS]) == before + 1
    feed.refresh_from_db()
    assert feed.next_poll_at > timezone.now() + timedelta(seconds=500), "claimed by the tick"


def test_a_lease_that_expires_while_idle_is_settled_within_an_interval_of_it(beat: Beat) -> None:
    delivery = Delivery.objects.create(post=demo_post(), target=outbox())
    beat.advance(10)
    # A claim sends no wake: the worker then died mid-send, its lease running out in 100 s.
    lease_until = beat.now + timedelta(seconds=100)
    Delivery.objects.filter(pk=delivery.pk).update(status="sending", attempts=1, lease_until=lease_until)
    DeliveryAttempt.objects.create(delivery=delivery, number=1)

    beat.advance(150)

    delivery.refresh_from_db()
    assert delivery.status == "uncertain" and "worker was lost" in delivery.last_error
    settled = [t for t in beat.ticks[scheduling.SWEEP] if t > lease_until]
    assert settled[0] <= lease_until + timedelta(seconds=INTERVAL + 0.1)


def test_a_lost_message_is_found_when_it_is_stranded(beat: Beat, settings) -> None:
    settings.SYNDICATOR_SCHEDULER_MAX_IDLE = 3600
    post, target = demo_post(), outbox()
    beat.advance(30)
    delivery = Delivery.objects.create(post=post, target=target)
    sent_at = beat.now
    dispatch.enqueue([(delivery.pk, "outbox")])  # its message then lost: no worker takes it
    Delivery.objects.filter(pk=delivery.pk).update(enqueued_at=sent_at)
    stranded = sent_at + timedelta(seconds=settings.SYNDICATOR_STRANDED_AFTER)

    beat.advance(settings.SYNDICATOR_STRANDED_AFTER + 20)

    sweeps_after = [t for t in beat.ticks[scheduling.SWEEP] if t > stranded]
    assert sweeps_after and sweeps_after[0] <= stranded + timedelta(seconds=INTERVAL + 0.1)


def test_a_record_from_before_a_wake_does_not_count(beat: Beat) -> None:
    generation = scheduling.begin(scheduling.SWEEP)
    scheduling.wake(scheduling.SWEEP)  # a write committed while the tick ran
    now: datetime = beat.now
    scheduling.record(scheduling.SWEEP, generation, now + timedelta(hours=1), now)

    assert scheduling.is_due(scheduling.SWEEP)


def test_without_a_shared_cache_the_ticks_run_every_interval(beat: Beat, settings) -> None:
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    beat.advance(60)

    assert len(beat.ticks[scheduling.SWEEP]) == 12


def test_the_sweep_is_due_when_an_email_digest_is(beat: Beat, settings) -> None:
    settings.SYNDICATOR_SCHEDULER_MAX_IDLE = 24 * 3600
    # A daily digest at a minute from now (UTC), made SETTLE seconds after its instant.
    at = (beat.now + timedelta(minutes=2)).replace(second=0, microsecond=0)
    target = Target.objects.create(
        kind="email",
        name="morning",
        settings={"host": "127.0.0.1", "port": 25, "from_address": "news@example.org", "mode": "digest",
                  "digest_at": f"{at:%H:%M}", "timezone": "UTC"},
    )  # fmt: skip
    Target.objects.filter(pk=target.pk).update(created_at=beat.now - timedelta(days=1))

    assert deliveries.next_sweep_due(beat.now) == at + timedelta(seconds=digest.SETTLE)
    beat.advance(200)
    made = [t for t in beat.ticks[scheduling.SWEEP] if t >= at + timedelta(seconds=digest.SETTLE)]
    assert made and made[0] <= at + timedelta(seconds=digest.SETTLE + INTERVAL + 0.1)
    assert Digest.objects.filter(target=target).exists(), "the sweep at its time made the digest"


def test_a_retry_set_by_a_failed_send_wakes_the_sweep(beat: Beat, settings) -> None:
    """The outcome is written in one statement on PostgreSQL (delivery._finish_and_move), not by
    move(): its retry time must wake the sweep all the same, or it waits for MAX_IDLE. (A network
    that saves nothing on the target: the outbox's own fault counter saves it, which wakes too.)"""
    from tests.emulators.mastodon import Harness

    settings.SYNDICATOR_SCHEDULER_MAX_IDLE = 3600
    with Harness() as social:
        target, post = social.make_target(), demo_post()
        beat.advance(60)
        idle_sweeps = len(beat.ticks[scheduling.SWEEP])
        # Made here and sent by hand: the sweep never enqueued it (an enqueue wakes it too).
        delivery = Delivery.objects.create(post=post, target=target)
        social.emulator.fail_next(status=429, json={"error": "Too many requests"})

        deliveries.attempt_delivery(delivery.pk)
        delivery.refresh_from_db()
        assert delivery.status == "retrying" and delivery.next_attempt_at is not None
        beat.advance(5)
    assert len(beat.ticks[scheduling.SWEEP]) == idle_sweeps + 1, "the retry woke the sweep"
