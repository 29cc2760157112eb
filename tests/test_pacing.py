"""Pacing (syndicator/pacing.py; docs/pacing.md): spacing, daily budgets, quiet hours, the breaking
lane, stale posts, scheduled reposts and networks' hard limits, through a real Celery worker and
the emulators, with the clock injected (syndicator.clock.injected): hours pass without sleeping.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import transaction

from syndicator import clock, pacing
from syndicator import delivery as deliveries
from syndicator.dispatch import create_auto_deliveries, repost
from syndicator.models import Delivery, Feed, Post, Target
from syndicator.targets.config import RateLimit
from tests.conftest import TEST_BROKER_URL, wait_for
from tests.emulators.telegram import Harness

_numbers = itertools.count(1)
Wait = Delivery.Wait


class FakeClock:
    """A clock the test moves; every delivery "now" in this process (worker threads too) reads it."""

    def __init__(self, start: datetime) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def advance(self, **span: float) -> None:
        with self._lock:
            self.now += timedelta(**span)

    def set(self, at: datetime) -> None:
        with self._lock:
            self.now = at


@pytest.fixture
def limiter(settings) -> Iterator[None]:
    """The limiter on the test Redis, under a prefix of this test's own."""
    settings.SYNDICATOR_PACING_REDIS_URL = TEST_BROKER_URL
    settings.SYNDICATOR_PACING_PREFIX = f"pace-test-{uuid.uuid4().hex[:8]}:"
    yield


@pytest.fixture
def fake_clock() -> Iterator[FakeClock]:
    fake = FakeClock(datetime.now(UTC))
    with clock.injected(fake):
        yield fake


@pytest.fixture
def telegram() -> Iterator[Harness]:
    with Harness() as harness:
        yield harness


def posts(n: int, published: datetime, categories: list[str] | None = None) -> list[Post]:
    """n posts of one feed, oldest first (publishing order), one second apart."""
    feed = Feed.objects.create(url=f"https://news.example/feed/{next(_numbers)}", enabled=False)
    return [
        Post.objects.create(
            feed=feed,
            guid=f"g-{next(_numbers)}",
            url=f"https://news.example/a/{i}",
            title=f"Story {i:02d}",
            categories=categories or [],
            published_at=published + timedelta(seconds=i),
        )
        for i in range(n)
    ]


def publish(items: list[Post]) -> list[Delivery]:
    with transaction.atomic():
        return create_auto_deliveries(items)


def statuses(target: Target) -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in Delivery.objects.filter(target=target).values_list("status", flat=True):
        counts[status] = counts.get(status, 0) + 1
    return counts


def sent_titles(harness: Harness) -> list[str]:
    return [m["text"].split("\n")[0] for m in harness.api.messages()]


def settle(target: Target, sent: int, queued: int) -> None:
    """Wait until the worker has sent ``sent`` and put ``queued`` back in the queue, each with a
    time and a reason."""
    want = {k: v for k, v in (("sent", sent), ("queued", queued)) if v}

    def done() -> bool:
        held = Delivery.objects.filter(target=target, status="queued")
        return statuses(target) == want and not held.filter(wait_reason="").exists()

    wait_for(done)


# --- unit: quiet hours in a zone, across midnight and daylight saving ----------------------------


def quiet_rules(span: str, zone: str) -> pacing.Rules:
    from syndicator.targets.config import parse_span

    return pacing.Rules(0, None, parse_span(span), ZoneInfo(zone), frozenset(), None)


def test_quiet_hours_cross_midnight_and_follow_daylight_saving() -> None:
    rules = quiet_rules("23:00-06:30", "Europe/Berlin")
    # The night before the change (CET, +1): 06:30 local is 05:30 UTC.
    assert pacing.quiet_end(datetime(2027, 3, 26, 23, 0, tzinfo=UTC), rules) == datetime(
        2027, 3, 27, 5, 30, tzinfo=UTC
    )
    # The night of 28 March 2027 clocks go 02:00 → 03:00: 06:30 local is CEST (+2), 04:30 UTC.
    assert pacing.quiet_end(datetime(2027, 3, 27, 22, 30, tzinfo=UTC), rules) == datetime(
        2027, 3, 28, 4, 30, tzinfo=UTC
    )
    assert pacing.quiet_end(datetime(2027, 3, 28, 1, 0, tzinfo=UTC), rules) == datetime(
        2027, 3, 28, 4, 30, tzinfo=UTC
    )
    assert pacing.quiet_end(datetime(2027, 3, 28, 12, 0, tzinfo=UTC), rules) is None  # 14:00 local
    assert pacing.quiet_end(datetime(2027, 3, 27, 21, 59, tzinfo=UTC), rules) is None  # 22:59 local
    # A span within one day.
    day = quiet_rules("12:00-13:00", "UTC")
    assert pacing.quiet_end(datetime(2027, 1, 1, 12, 30, tzinfo=UTC), day) == datetime(
        2027, 1, 1, 13, 0, tzinfo=UTC
    )
    assert pacing.quiet_end(datetime(2027, 1, 1, 13, 0, tzinfo=UTC), day) is None


def test_pacing_settings_are_typed_and_inherited_by_every_network() -> None:
    from syndicator.targets.config import SettingError
    from syndicator.targets.registry import load

    for cls in load().values():
        names = {spec.name for spec in cls.settings_spec}
        assert set(pacing_names()) <= names, cls.kind
    from syndicator.targets.twitter import TwitterAdapter

    assert TwitterAdapter.spec("tier").parse(None) == "free"
    with pytest.raises(SettingError, match="IANA"):
        TwitterAdapter.spec("timezone").parse("Mars/Olympus")
    with pytest.raises(SettingError, match="23:00-06:30"):
        TwitterAdapter.spec("quiet_hours").parse("late")
    assert TwitterAdapter.spec("max_age").parse(None) is None  # then SYNDICATOR_MAX_AGE
    assert TwitterAdapter.spec("max_age").parse("36h") == 36 * 3600


def pacing_names() -> tuple[str, ...]:
    from syndicator.targets.config import PACING_NAMES

    return PACING_NAMES


# --- through a real worker -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_ten_posts_leave_min_interval_apart_in_publishing_order(
    celery_worker, limiter, fake_clock, telegram
) -> None:
    target = telegram.make_target(min_interval=60)
    start = fake_clock()
    publish(posts(10, start - timedelta(minutes=5)))
    settle(target, sent=1, queued=9)
    waiting = list(Delivery.objects.filter(target=target, status="queued").order_by("next_attempt_at"))
    assert [d.wait_reason for d in waiting] == [Wait.PACING] * 9
    assert [d.post.title for d in waiting] == [f"Story {i:02d}" for i in range(1, 10)]
    gaps = [(b.next_attempt_at - a.next_attempt_at).total_seconds() for a, b in itertools.pairwise(waiting)]
    assert gaps == [60.0] * 8
    assert abs((waiting[0].next_attempt_at - start).total_seconds() - 60) < 2
    for n in range(2, 11):
        fake_clock.advance(seconds=59)
        deliveries.sweep()  # not yet due: nothing leaves
        assert statuses(target).get("sent") == n - 1
        fake_clock.advance(seconds=1.5)
        deliveries.sweep()
        settle(target, sent=n, queued=10 - n)
    assert sent_titles(telegram) == [f"Story {i:02d}" for i in range(10)]


@pytest.mark.django_db(transaction=True)
def test_daily_limit_sends_17_and_holds_the_rest_to_the_next_window(
    celery_worker, limiter, fake_clock
) -> None:
    target = Target.objects.create(name="paced-out", kind="outbox", settings={"daily_limit": 17})
    start = fake_clock()
    publish(posts(20, start - timedelta(minutes=1)))
    settle(target, sent=17, queued=3)
    held = Delivery.objects.filter(target=target, status="queued")
    assert {d.wait_reason for d in held} == {Wait.DAILY_LIMIT}
    assert all(d.next_attempt_at >= start + timedelta(hours=24) - timedelta(seconds=5) for d in held)
    fake_clock.advance(hours=23)
    deliveries.sweep()
    assert statuses(target) == {"sent": 17, "queued": 3}
    fake_clock.advance(hours=1, seconds=30)
    deliveries.sweep()
    settle(target, sent=20, queued=0)


@pytest.mark.django_db(transaction=True)
def test_quiet_hours_across_midnight_and_dst_then_spaced_and_breaking_goes_at_once(
    celery_worker, limiter, fake_clock, telegram
) -> None:
    # 23:30 on 27 March 2027 in Berlin; clocks spring forward that night, quiet until 06:30 CEST.
    fake_clock.set(datetime(2027, 3, 27, 22, 30, tzinfo=UTC))
    target = telegram.make_target(
        quiet_hours="23:00-06:30",
        timezone="Europe/Berlin",
        min_interval=120,
        breaking_categories=["Breaking"],
    )
    publish(posts(3, fake_clock() - timedelta(minutes=10)))
    settle(target, sent=0, queued=3)
    held = list(Delivery.objects.filter(target=target).order_by("next_attempt_at"))
    end = datetime(2027, 3, 28, 4, 30, tzinfo=UTC)
    assert [d.next_attempt_at for d in held] == [end, end + timedelta(minutes=2), end + timedelta(minutes=4)]
    assert [d.wait_reason for d in held] == [Wait.QUIET_HOURS, Wait.PACING, Wait.PACING]
    # A breaking post in the quiet hours goes at once (its category is in breaking_categories).
    fake_clock.advance(hours=2)
    publish(posts(1, fake_clock(), categories=["breaking"]))
    settle(target, sent=1, queued=3)
    assert sent_titles(telegram) == ["Story 00"]
    # At 06:30 CEST the first of the night's posts goes, the others min_interval after it.
    fake_clock.set(end + timedelta(seconds=1))
    deliveries.sweep()
    settle(target, sent=2, queued=2)
    fake_clock.set(end + timedelta(minutes=4, seconds=1))
    deliveries.sweep()
    settle(target, sent=4, queued=0)


@pytest.mark.django_db(transaction=True)
def test_stale_post_is_skipped_with_its_reason_and_an_editor_can_still_send_it(
    celery_worker, limiter, fake_clock
) -> None:
    target = Target.objects.create(name="out", kind="outbox", settings={"max_age": "1d"})
    old = posts(1, fake_clock() - timedelta(days=3))[0]
    publish([old])
    wait_for(lambda: statuses(target) == {"skipped": 1})
    skipped = Delivery.objects.get(target=target)
    assert "max_age 24.0 h" in skipped.last_error and "published 3.0 days ago" in skipped.last_error
    repost(old, [target], requested_by="edna")
    wait_for(lambda: statuses(target) == {"skipped": 1, "sent": 1})


@pytest.mark.django_db(transaction=True)
def test_scheduled_repost_leaves_at_its_time_and_a_cancelled_one_never(
    celery_worker, limiter, fake_clock
) -> None:
    target = Target.objects.create(name="out", kind="outbox")
    post = posts(1, fake_clock() - timedelta(days=5))[0]
    at = fake_clock() + timedelta(hours=3)
    kept = repost(post, [target], requested_by="edna", at=at)[0]
    dropped = repost(post, [target], requested_by="edna", at=at)[0]
    kept.refresh_from_db()
    assert (kept.status, kept.wait_reason, kept.next_attempt_at) == ("queued", Wait.SCHEDULED, at)
    deliveries.cancel([dropped], by="edna")
    fake_clock.advance(hours=2, minutes=59)
    deliveries.sweep()
    assert statuses(target) == {"queued": 1, "cancelled": 1}
    fake_clock.advance(minutes=1, seconds=1)
    deliveries.sweep()
    wait_for(lambda: statuses(target) == {"sent": 1, "cancelled": 1})
    assert Delivery.objects.get(pk=kept.pk).status == "sent"


@pytest.mark.django_db(transaction=True)
def test_a_telegram_429_wins_over_our_own_pacing(celery_worker, limiter, fake_clock, telegram) -> None:
    target = telegram.make_target(min_interval=1)
    telegram.api.rate_limit_next(retry_after=40)
    publish(posts(1, fake_clock()))
    wait_for(lambda: statuses(target) == {"retrying": 1})
    d = Delivery.objects.get(target=target)
    assert d.wait_reason == Wait.RATE_LIMIT
    assert (d.next_attempt_at - fake_clock()).total_seconds() >= 39  # the network's retry_after, not 1 s
    fake_clock.advance(seconds=20)
    deliveries.sweep()
    assert statuses(target) == {"retrying": 1}
    fake_clock.advance(seconds=25)
    deliveries.sweep()
    wait_for(lambda: statuses(target) == {"sent": 1})


@pytest.mark.django_db(transaction=True)
def test_telegram_declared_per_chat_limit_holds_the_21st_in_a_minute(
    celery_worker, limiter, fake_clock, telegram
):
    target = telegram.make_target()
    publish(posts(21, fake_clock()))
    settle(target, sent=20, queued=1)
    held = Delivery.objects.get(target=target, status="queued")
    assert held.wait_reason == Wait.RATE_LIMIT
    assert 0 < (held.next_attempt_at - fake_clock()).total_seconds() <= 60
    fake_clock.advance(seconds=61)
    deliveries.sweep()
    settle(target, sent=21, queued=0)


# --- two processes share one limit ---------------------------------------------------------------

HAMMER = """
import os, sys, django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "syndicator.settings")
django.setup()
from django.conf import settings
from syndicator import pacing
from syndicator.targets.config import RateLimit
settings.SYNDICATOR_PACING_REDIS_URL = sys.argv[1]
settings.SYNDICATOR_PACING_PREFIX = sys.argv[2]
class D:  # the two fields the limiter reads of a delivery
    def __init__(self, pk): self.pk, self.attempts = pk, 1
client = pacing.redis_client()
limits = [(pacing._prefix() + "net:shared", RateLimit("account", 7, 60))]
taken = 0
for i in range(200):
    free_at, _ = pacing._take_windows(client, D(f"{sys.argv[3]}-{i}"), limits, None)
    taken += free_at is None
print(taken)
"""


def test_two_processes_never_exceed_a_shared_limit(tmp_path) -> None:
    prefix = f"pace-test-{uuid.uuid4().hex[:8]}:"
    env = {**os.environ}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", HAMMER, TEST_BROKER_URL, prefix, name],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for name in ("a", "b")
    ]
    taken = [int(p.communicate(timeout=60)[0].strip().splitlines()[-1]) for p in procs]
    assert sum(taken) == 7, taken


def test_no_pacing_and_no_declared_limit_adds_no_statement(django_assert_num_queries, db) -> None:
    target = Target.objects.create(name="plain", kind="outbox")
    post = posts(1, datetime.now(UTC))[0]
    d = Delivery.objects.create(post=post, target=target)
    d = Delivery.objects.select_related("post__feed", "target").get(pk=d.pk)
    with django_assert_num_queries(0):
        assert pacing.held(d) is False


def test_rate_limit_dataclass_scope_keys_never_hold_the_secret(db, monkeypatch) -> None:
    monkeypatch.setenv("SYNDICATOR_TEST_TELEGRAM_TOKEN", "123:secret-token")
    target = Target.objects.create(
        name="tg", kind="telegram", secret_env="SYNDICATOR_TEST_TELEGRAM_TOKEN", settings={"chat_id": "@x"}
    )
    keys = [key for key, _ in pacing.network_limits(target)]
    assert len(keys) == 2 and all("secret-token" not in key for key in keys)
    assert any(":chat:@x:" in key for key in keys)
    assert isinstance(pacing.network_limits(target)[0][1], RateLimit)


# --- the queue: CLI, send now, reschedule, cancel ------------------------------------------------


def run(*args: str) -> str:
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.mark.django_db
def test_queue_lists_per_target_in_order_and_person_decisions_are_logged_by_name(limiter) -> None:
    import json

    from syndicator import queueing
    from syndicator.models import DeliveryAttempt

    Target.objects.create(name="out", kind="outbox", settings={"timezone": "Asia/Tehran"})
    first, second = posts(2, datetime.now(UTC) - timedelta(hours=1))
    out = run("repost", str(second.pk), "--to", "out", "--at", "2026-12-03T08:00", "--user", "edna")
    assert "at 2026-12-03T04:30:00+00:00" in out  # 08:00 in Tehran (+03:30)
    run("repost", str(first.pk), "--to", "out", "--breaking", "--user", "edna")
    rows = json.loads(run("queue", "--target", "out", "--json"))
    assert [(r["title"], r["reason"], r["breaking"]) for r in rows] == [
        ("Story 00", "next", True),
        ("Story 01", "scheduled", False),
    ]
    assert "out:" in run("queue") and "[breaking]" in run("queue")
    scheduled = Delivery.objects.get(post=second)
    later = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
    assert queueing.reschedule([scheduled], later, by="edna") == 1
    scheduled.refresh_from_db()
    assert (scheduled.status, scheduled.next_attempt_at, scheduled.wait_reason) == (
        "queued",
        later,
        "scheduled",
    )
    assert queueing.reschedule([scheduled], None, by="edna") == 1
    scheduled.refresh_from_db()
    assert (scheduled.next_attempt_at, scheduled.wait_reason, scheduled.unpaced) == (None, "", True)
    verdicts = DeliveryAttempt.objects.filter(delivery=scheduled, kind="verdict").order_by("number")
    assert [(v.outcome, v.actor_name) for v in verdicts] == [("rescheduled", "edna"), ("rescheduled", "edna")]
    assert verdicts[1].message == "sent now (was queued) by edna"
    assert deliveries.cancel([scheduled], by="edna") == 1
    assert queueing.reschedule([scheduled], None, by="edna") == 0, "a cancelled delivery is not in the queue"
    assert [r["title"] for r in json.loads(run("queue", "--json"))] == ["Story 00"]


@pytest.mark.django_db
def test_a_target_lock_held_elsewhere_makes_the_delivery_wait_not_skip_the_rules(
    limiter, monkeypatch
) -> None:
    monkeypatch.setattr(pacing, "LOCK_WAIT", 0.2)
    target = Target.objects.create(name="out", kind="outbox", settings={"min_interval": 60})
    d = Delivery.objects.create(post=posts(1, datetime.now(UTC))[0], target=target)
    d = Delivery.objects.select_related("post__feed", "target").get(pk=d.pk)  # read, not yet claimed
    client = pacing.redis_client()
    other = client.lock(f"{pacing._prefix()}target:{target.pk}:lock", timeout=30)
    assert other.acquire(blocking=False)
    try:
        assert pacing.held(d) is True
    finally:
        other.release()
    d.refresh_from_db()
    assert (d.status, d.wait_reason, d.attempts) == ("queued", Wait.PACING, 0)


@pytest.mark.django_db
def test_the_default_max_age_is_48_hours_and_an_editors_repost_is_never_stale(settings) -> None:
    from syndicator import settings as defaults

    assert defaults.SYNDICATOR_MAX_AGE == 48 * 3600 or os.environ.get("SYNDICATOR_MAX_AGE")
    settings.SYNDICATOR_MAX_AGE = 48 * 3600.0
    target = Target.objects.create(name="plain", kind="outbox")
    fresh, old = (
        posts(1, datetime.now(UTC) - timedelta(hours=47))[0],
        posts(1, datetime.now(UTC) - timedelta(hours=49))[0],
    )
    made = [
        Delivery.objects.create(post=p, target=target, origin=o)
        for p, o in ((fresh, "auto"), (old, "auto"), (old, "manual"))
    ]
    held = []
    for d in made:  # as the worker reads them, before the claim
        held.append(pacing.held(Delivery.objects.select_related("post__feed", "target").get(pk=d.pk)))
    assert held == [False, True, False]
    assert Delivery.objects.get(pk=made[1].pk).status == "skipped"
