"""A long outage heals itself (issue 15, item 6): uncertain deliveries are looked up again with the
retry policy's backoff while the network is away, and end `sent`, each post made exactly once.

Mastodon, Bluesky and Facebook go down for ten minutes during a load: a post is made but its answer
is lost (Mastodon also answers 503 without making it), so every send ends `uncertain`; every look-up
of the outage fails (a 5xx, every third one the network's rate limit with its wait): Mastodon's
re-send under the Idempotency-Key, Bluesky's listRecords, the Page's feed. Through a real worker
with the production retry schedule; the ten minutes (and the half hour of backoff after them) are
compressed by moving the database's times back (``Timeline``), never slept through.

Then, in-process: past its horizon a failing look-up waits for an admin with the reason, a 429's
wait is the next look-up's floor, and the last try is moved before the horizon.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import transaction
from django.db.models import Count, F, Min, Q

from syndicator import delivery as deliveries
from syndicator.clock import db_now
from syndicator.models import Delivery, DeliveryAttempt, Feed, Post
from syndicator.recovery import LAST_LOOK_UP_MARGIN, unverified
from syndicator.targets import ADAPTERS
from syndicator.targets.mastodon import IDEMPOTENCY_WINDOW
from tests.emulators import bluesky, mastodon
from tests.emulators import facebook as graph
from tests.emulators.base import EmulatedRequest, Emulator, Reply
from tests.faults.support import store_posts

POSTS = 4  # per batch and network: one batch as the outage begins, one five minutes into it
OUTAGE = timedelta(minutes=10)
HANG = 1.5  # a Facebook answer held past the targets' 1 s timeout
STATUSES = "/api/v1/statuses"
# The production schedule (syndicator/settings.py): the clock is what the test compresses.
PRODUCTION_RETRY = {
    "SYNDICATOR_RETRY_BACKOFF": "10,60,300,1800,7200,21600",
    "SYNDICATOR_RETRY_JITTER": "0.2",
    "SYNDICATOR_RETRY_MAX_ATTEMPTS": "8",
    "SYNDICATOR_RETRY_MAX_DELAY": "21600",
}


# --- the outage: a fault switch on each emulator ----------------------------------------------------


class Outage:
    """A network that is down, switched on and off with ``down``.

    While down, a post (``is_post``) is handled — made, or not when ``makes`` says so — and its
    answer lost (``lose``); every look-up (``is_look_up``) gets the network's "unavailable", every
    third its rate limit (``limited``, with its wait). Other calls (a login) get through.
    """

    def __init__(
        self,
        emulator: Emulator,
        *,
        is_post: Callable[[EmulatedRequest], bool],
        is_look_up: Callable[[EmulatedRequest], bool],
        lose: Callable[[Reply], Reply],
        unavailable: Callable[[], Reply],
        limited: Callable[[], Reply],
        makes: Callable[[EmulatedRequest], bool] = lambda request: True,
    ) -> None:
        self.down = False
        self.served: Counter[str] = Counter()
        turns = itertools.count(1)
        original = emulator.dispatch

        def dispatch(request: EmulatedRequest) -> Reply:
            if not self.down:
                return original(request)
            if is_post(request):
                if makes(request):
                    self.served["made, answer lost"] += 1
                    return lose(original(request))
                self.served["not made"] += 1
                emulator.requests.append(request)
                return unavailable()
            if is_look_up(request):
                emulator.requests.append(request)
                if next(turns) % 3 == 0:
                    self.served["rate limited"] += 1
                    return limited()
                self.served["unavailable"] += 1
                return unavailable()
            return original(request)

        emulator.dispatch = dispatch  # type: ignore[method-assign]


def mastodon_outage(emulator: mastodon.MastodonEmulator) -> Outage:
    """The first POST of a key is a send (every other post number is made before its 503), a
    repeat of a key is the look-up (the re-send under it)."""
    keys: set[str] = set()

    def first_of_its_key(request: EmulatedRequest) -> bool:
        key = request.headers.get("idempotency-key", "")
        if request.path != STATUSES or key in keys:
            return False
        keys.add(key)
        return True

    def number(request: EmulatedRequest) -> int:
        found = re.search(r"post (\d{4})", str(request.params().get("status", "")))
        return int(found[1]) if found else 0

    unavailable = lambda: Reply(503, json={"error": "Service Unavailable"})  # noqa: E731
    limited = lambda: {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": mastodon.rate_limit_reset(2)}  # noqa: E731
    return Outage(
        emulator,
        is_post=first_of_its_key,
        is_look_up=lambda r: r.path == STATUSES,
        lose=lambda reply: unavailable(),
        unavailable=unavailable,
        limited=lambda: Reply(429, json={"error": "Too many requests"}, headers=limited()),
        makes=lambda request: number(request) % 2 == 0,
    )


def bluesky_outage(emulator: bluesky.BlueskyEmulator) -> Outage:
    """createRecord commits the record and answers 500; listRecords answers 503 or 429."""
    xrpc = "/xrpc/com.atproto.repo."
    reset = lambda: {"ratelimit-remaining": "0", "ratelimit-reset": str(int(time.time()) + 2)}  # noqa: E731
    return Outage(
        emulator,
        is_post=lambda r: r.path == xrpc + "createRecord",
        is_look_up=lambda r: r.path == xrpc + "listRecords",
        lose=lambda reply: Reply(500, json=bluesky.xrpc_error("InternalServerError", "Internal")),
        unavailable=lambda: Reply(503, json=bluesky.xrpc_error("NotEnoughResources", "Unavailable")),
        limited=lambda: Reply(
            429, json=bluesky.xrpc_error("RateLimitExceeded", "Rate Limit Exceeded"), headers=reset()
        ),
    )


def facebook_outage(emulator: graph.GraphEmulator) -> Outage:
    """POST /feed makes the post and its answer comes too late; GET /feed fails (code 2, or the
    Page's request limit, code 32, with its wait in the usage header)."""
    feed = re.compile(rf"{graph.VERSIONED}/{emulator.page_id}/feed")
    limited = graph.graph_error(32, "(#32) Page request limit reached", is_transient=True)
    return Outage(
        emulator,
        is_post=lambda r: r.method == "POST" and bool(feed.fullmatch(r.path)),
        is_look_up=lambda r: r.method == "GET" and bool(feed.fullmatch(r.path)),
        lose=lambda reply: dataclasses.replace(reply, delay=HANG),
        unavailable=lambda: Reply(500, json=graph.graph_error(2, "Service temporarily unavailable", type="")),
        limited=lambda: Reply(400, json=limited, headers=graph.buc_usage(emulator.page_id, 0.02)),
    )


# --- compressed time ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Timeline:
    """The world's clock moved forward by ``dt`` = every stored time of the deliveries and their
    attempts moved back by ``dt``: due times, when each became uncertain, each attempt's start
    (what the Idempotency-Key hour and a look-up's horizon count from). Workers and the sweeper
    keep reading the database's real clock; only done while no delivery is being sent. Not
    ``created_at``: it is part of a delivery's identity (Mastodon's Idempotency-Key is made from it)."""

    elapsed: timedelta = timedelta(0)

    def advance(self, dt: timedelta) -> None:
        with transaction.atomic():
            Delivery.objects.update(
                **{name: F(name) - dt for name in ("updated_at", "next_attempt_at", "enqueued_at", "sent_at")}
            )
            DeliveryAttempt.objects.update(started_at=F("started_at") - dt, finished_at=F("finished_at") - dt)
        self.elapsed += dt


def reading(now: datetime) -> dict[str, Any]:
    """One snapshot: how many deliveries are sent, in flight, waiting for an admin, waiting for a
    look-up now, and when the earliest waiting look-up is due."""
    looked_up_later = Q(status="uncertain") & unverified() & Q(next_attempt_at__gt=now)
    return Delivery.objects.aggregate(
        total=Count("pk"),
        sent=Count("pk", filter=Q(status="sent")),
        busy=Count("pk", filter=Q(status__in=("queued", "sending", "retrying"))),
        given_up=Count("pk", filter=Q(status__in=("failed", "skipped", "cancelled"))),
        for_admin=Count("pk", filter=Q(status="uncertain") & ~unverified()),
        due=Count("pk", filter=Q(status="uncertain") & unverified() & ~Q(next_attempt_at__gt=now)),
        next_due=Min("next_attempt_at", filter=looked_up_later),
    )


# --- through a worker --------------------------------------------------------------------------------


@pytest.fixture
def three_networks(transactional_db) -> Iterator[dict[str, Any]]:
    """Mastodon, Bluesky and Facebook emulators, each with its outage switch (off)."""
    harnesses = {"mastodon": mastodon.Harness(), "bluesky": bluesky.Harness(), "facebook": graph.Harness()}
    for harness in harnesses.values():
        harness.__enter__()
    try:
        yield harnesses
    finally:
        for harness in harnesses.values():
            harness.__exit__(None, None, None)


def posted(harness: Any, tag: str) -> Counter[int]:
    """How many times the network received each post number of this batch."""
    marker = re.compile(rf"{re.escape(tag)} post (\d{{4}})")
    return Counter(int(m[1]) for sent in harness.sent() if (m := marker.search(sent["text"])))


@pytest.mark.faults
@pytest.mark.django_db(transaction=True)
def test_a_ten_minute_outage_of_each_network_ends_with_every_delivery_sent_once(
    three_networks, start_worker, sweeper
):
    outages = {
        "mastodon": mastodon_outage(three_networks["mastodon"].emulator),
        "bluesky": bluesky_outage(three_networks["bluesky"].emulator),
        "facebook": facebook_outage(three_networks["facebook"].emulator),
    }
    for kind, harness in three_networks.items():
        harness.make_target(name=f"heal-{kind}")  # a 1 s timeout
    for outage in outages.values():
        outage.down = True
    worker = start_worker(concurrency=2, **PRODUCTION_RETRY)
    batches = ["heal-a", "heal-b"]
    store_posts(batches[0], POSTS)
    expected = len(batches) * POSTS * len(three_networks)
    timeline, jumps, deadline = Timeline(), 0, time.monotonic() + 240

    while True:
        worker.check()
        assert time.monotonic() < deadline, f"not healed: {reading(db_now())}, {timeline.elapsed}"
        now = db_now()
        state = reading(now)
        if state["sent"] == expected:
            break
        waiting = Delivery.objects.filter(status="uncertain").exclude(unverified())
        assert not state["for_admin"], [d.last_error for d in waiting]
        assert not state["given_up"], list(Delivery.objects.values_list("status", "last_error"))
        quiet = not state["busy"] and not state["due"] and state["total"] in (expected // 2, expected)
        if quiet and timeline.elapsed >= OUTAGE / 2 and state["total"] < expected:
            store_posts(batches[1], POSTS)  # the second batch, five minutes into the outage
        elif quiet and state["next_due"] is not None and state["next_due"] - now > timedelta(seconds=0.5):
            # Jump to the earliest look-up and a little past it, so look-ups due close together run
            # in one round (a sweeper that is a little late).
            gap = state["next_due"] - now
            step = gap + min(gap / 4, timedelta(minutes=1))
            if timeline.elapsed + step >= OUTAGE:
                for outage in outages.values():
                    outage.down = False  # before the jump: the look-ups it makes due find it up
            timeline.advance(step)
            jumps += 1
        time.sleep(0.1)

    print(
        f"\nhealed after {timeline.elapsed} simulated ({jumps} jumps): "
        f"{ {kind: dict(o.served) for kind, o in outages.items()} }"
    )
    assert OUTAGE <= timeline.elapsed < timedelta(seconds=IDEMPOTENCY_WINDOW)
    for kind, harness in three_networks.items():
        for tag in batches:
            assert posted(harness, tag) == {n: 1 for n in range(POSTS)}, (kind, tag, posted(harness, tag))
        ids = {harness.external_id(sent) for sent in harness.sent()}
        assert set(Delivery.objects.filter(target__kind=kind).values_list("external_id", flat=True)) == ids
        served = outages[kind].served
        assert served["unavailable"] and served["rate limited"], (kind, served)
    assert outages["mastodon"].served["not made"], "some Mastodon statuses were made only by a re-send"
    for d in Delivery.objects.all():
        log = list(d.attempt_log.order_by("number").values_list("kind", "outcome"))
        assert log[0] == ("send", "unknown"), (d.pk, log)  # uncertain …
        assert log[-1] == ("lookup", "sent"), (d.pk, log)  # … then sent, by a look-up
        failed = {outcome for kind, outcome in log[1:-1]}
        assert len(log) >= 4 and failed <= {"transient", "rate_limited"}, (d.pk, log)


# --- in-process: the horizon, the 429 floor, the last try ----------------------------------------------


@pytest.fixture
def post() -> Post:
    feed = Feed.objects.create(url="https://news.example/feed", enabled=False)
    return Post.objects.create(
        feed=feed, guid="g-1", url="https://news.example/a", title="Kits reach the villages"
    )


@pytest.fixture
def retry_policy(settings) -> dict[str, Any]:
    settings.SYNDICATOR_VERIFY_AFTER = 0
    settings.SYNDICATOR_RETRY = {
        "backoff": [10, 60, 21600],
        "jitter": 0,
        "max_attempts": 2,
        "max_delay": 21600,
    }
    return settings.SYNDICATOR_RETRY


def age(d: Delivery, by: timedelta) -> None:
    """The delivery's times (and its attempts') as if ``by`` had passed since."""
    Delivery.objects.filter(pk=d.pk).update(
        updated_at=F("updated_at") - by, next_attempt_at=F("next_attempt_at") - by
    )
    DeliveryAttempt.objects.filter(delivery=d).update(
        started_at=F("started_at") - by, finished_at=F("finished_at") - by
    )


def look_up_now(d: Delivery) -> DeliveryAttempt:
    """Make the waiting look-up due (its due time moved to now) and run it in this process."""
    Delivery.objects.filter(pk=d.pk, next_attempt_at__isnull=False).update(next_attempt_at=db_now())
    attempt = deliveries.attempt_delivery(d.pk)
    assert attempt is not None and attempt.kind == "lookup", attempt
    d.refresh_from_db()
    return attempt


def answer_late_once(emulator: graph.GraphEmulator, seconds: float) -> None:
    """The next POST is handled (the post is made), and its answer comes after the client gave up."""
    original = emulator.dispatch

    def dispatch(request: EmulatedRequest) -> Reply:
        reply = original(request)
        if request.method == "POST":
            emulator.dispatch = original  # type: ignore[method-assign]
            return dataclasses.replace(reply, delay=seconds)
        return reply

    emulator.dispatch = dispatch  # type: ignore[method-assign]


class Network:
    """One network's side for the in-process tests: an uncertain delivery, a failing look-up."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.harness: Any = {"mastodon": mastodon, "bluesky": bluesky, "facebook": graph}[kind].Harness()

    @property
    def horizon(self) -> timedelta:
        return timedelta(seconds=ADAPTERS[self.kind].verify_horizon)

    def uncertain(self, post: Post, *, made: bool) -> Delivery:
        """A delivery whose send timed out (1 s): the post made and its answer late, or not made."""
        d = Delivery.objects.create(post=post, target=self.harness.make_target())
        api = self.harness.emulator
        if not made:
            self.harness.inject("timeout")
        elif self.kind == "mastodon":
            api.lose_next_answers(seconds=2)
        elif self.kind == "bluesky":
            api.answer_late = 2
        else:
            answer_late_once(api, 2)
        assert deliveries.attempt_delivery(d.pk).outcome == "unknown"
        d.refresh_from_db()
        assert d.status == "uncertain"
        return d

    def fail_look_up(self, *, wait: float | None = None) -> None:
        """The next look-up fails transiently: a 503 (Graph: code 2), or a 429 asking ``wait`` s."""
        api = self.harness.emulator
        if self.kind == "mastodon":
            if wait is None:
                api.fail_next(status=503, json={"error": "Service Unavailable"})
            else:
                reset = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": mastodon.rate_limit_reset(wait)}
                api.fail_next(status=429, json={"error": "Too many requests"}, headers=reset)
        elif self.kind == "bluesky":
            if wait is None:
                api.fail_method(
                    "com.atproto.repo.listRecords", status=503, json=bluesky.xrpc_error("X", "down")
                )
            else:
                reset = {"ratelimit-remaining": "0", "ratelimit-reset": str(int(time.time() + wait))}
                api.fail_method(
                    "com.atproto.repo.listRecords",
                    status=429,
                    json=bluesky.xrpc_error("X", "slow"),
                    headers=reset,
                )
        elif wait is None:
            api.fail_next(status=500, json=graph.graph_error(2, "Service temporarily unavailable", type=""))
        else:
            limited = graph.graph_error(32, "(#32) Page request limit reached", is_transient=True)
            api.fail_next(status=400, json=limited, headers=graph.buc_usage(api.page_id, wait / 60))


@pytest.fixture(params=["mastodon", "bluesky", "facebook"])
def network(request) -> Iterator[Network]:
    net = Network(request.param)
    with net.harness:
        yield net


@pytest.mark.django_db
def test_a_failing_look_up_is_tried_again_with_backoff_and_a_429_as_its_floor(network, post, retry_policy):
    d = network.uncertain(post, made=True)

    network.fail_look_up()
    first = look_up_now(d)
    assert first.outcome == "transient"
    assert d.status == "uncertain" and d.next_attempt_at is not None
    assert d.next_attempt_at - first.finished_at == timedelta(seconds=10), "the policy's first step"
    assert "looked up again at" in d.last_error and "before: " in d.last_error
    assert Delivery.objects.filter(unverified(), pk=d.pk).exists(), "not left to an admin"
    assert deliveries.attempt_delivery(d.pk) is None, "not before its time"

    network.fail_look_up(wait=600)  # a 429 that asks for more than the next step (60 s)
    limited = look_up_now(d)
    assert limited.outcome == "rate_limited"
    assert d.next_attempt_at - limited.finished_at >= timedelta(seconds=590), "the 429's wait is the floor"

    network.fail_look_up()
    again = look_up_now(d)
    # Three look-ups failed, more than the policy's max_attempts (2): the horizon bounds look-ups.
    assert again.outcome == "transient" and d.next_attempt_at is not None
    assert d.next_attempt_at - again.finished_at == timedelta(seconds=60), (
        "rate limits do not step the backoff"
    )

    assert look_up_now(d).outcome == "sent"
    d.refresh_from_db()
    assert d.status == "sent" and len(network.harness.sent()) == 1


@pytest.mark.django_db
def test_past_its_horizon_a_failing_look_up_waits_for_an_admin_with_the_reason(network, post, retry_policy):
    d = network.uncertain(post, made=False)
    age(d, network.horizon - timedelta(seconds=LAST_LOOK_UP_MARGIN + 5))  # the last call is 5 s away
    network.fail_look_up(wait=30)  # and the network asks for 30 s

    assert look_up_now(d).outcome == "rate_limited"

    assert d.status == "uncertain" and d.next_attempt_at is None
    assert not Delivery.objects.filter(unverified(), pk=d.pk).exists(), "left to an admin"
    assert deliveries.sweep()["verifying"] == 0 and deliveries.attempt_delivery(d.pk) is None
    assert "not looked up again: the look-ups since the attempt of" in d.last_error, d.last_error
    assert "mark the delivery sent; if not, retry it" in d.last_error
    reason = "Idempotency-Key for about an hour" if network.kind == "mastodon" else "after a day"
    assert reason in d.last_error and "before: " in d.last_error, d.last_error
    assert network.harness.sent() == []


@pytest.mark.django_db
def test_the_last_look_up_is_moved_before_the_horizon(network, post, retry_policy):
    d = network.uncertain(post, made=True)
    horizon = network.horizon
    age(d, horizon - timedelta(minutes=10))
    retry_policy["backoff"] = [10, 3600]  # the first step fits before the horizon, the second not

    network.fail_look_up()
    first = look_up_now(d)
    assert d.next_attempt_at - first.finished_at == timedelta(seconds=10)
    network.fail_look_up()
    last = look_up_now(d)
    since = DeliveryAttempt.objects.get(delivery=d, number=1).started_at
    assert d.next_attempt_at == since + horizon - timedelta(seconds=LAST_LOOK_UP_MARGIN), (
        d.next_attempt_at,
        last.finished_at,
    )
    assert look_up_now(d).outcome == "sent", "the last look-up, a minute before the horizon, is safe"
    assert len(network.harness.sent()) == 1
