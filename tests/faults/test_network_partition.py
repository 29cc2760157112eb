"""A worker cut off from the network mid-send, beside one that runs normally (issue 15, item 9).

Worker B runs in a network namespace of its own (tests/faults/partition.py) and reaches
PostgreSQL, the broker and the emulators over a veth pair; worker A runs on the host. B takes
three deliveries: two whose requests reached the networks and whose answers the networks hold
(Mastodon, Facebook: lost mid-send), and one it has read but not claimed. Then B's cable is
pulled. Its leases expire by the database's clock, the sweeper settles what it held (the two in
flight become uncertain and A looks them up; the unclaimed one's message is sent again once
stranded, and A sends it) and A delivers new posts meanwhile. When the link is back, B's
stalled work resumes against deliveries that are no longer as it knew them: it must change no
delivery and send nothing; it comes back while A's own send of the read one is in flight, so
only the attempt number tells B's stale read from A's live claim. Each post reaches each
network exactly once.

The read-but-not-claimed delivery is made deterministic with a table lock: B's read (the
delivery with its post, feed and target, before pacing, rendering and the claim:
docs/delivery-states.md, "The statement budget") waits for an ACCESS EXCLUSIVE lock on the feed
table that this test holds; the cable is pulled, then the lock released, so B's read is answered
into the cut. B holds no transaction open across the cut (the read is one SELECT).

The second test loses B's claim's own answer in the cut (the claim and its attempt row, one
statement): the server commits it, and the sweeper takes it for lost mid-send once its lease
expires; A's look-up settles it (Mastodon's: a re-send under the same Idempotency-Key). When
B's answer comes at last, long after half its lease, B sends nothing and leaves the sweeper's
verdict on its attempt's row (delivery._give_back_late_claim).

The third test cuts B while its claim waits to insert its attempt row. Before issue 16.3 that
was a transaction (the lease UPDATE, then the attempt INSERT) whose row lock the server kept for
as long as the cut lasted, the sweeper waiting on it; it is one statement on PostgreSQL, which
the server finishes and commits by itself: B's attempt stands, the sweeper takes the send for
lost mid-send, and A's look-up settles it, posted once.

The fourth cuts a process of ours inside a transaction that holds a row lock (a
`select_for_update`, as the worker's own transactions may): the server keeps the lock for as
long as the cut lasts (the OS's TCP keepalive gives up after two hours) unless the session asked
it to drop a silent peer (settings.dead_peer_options, `SYNDICATOR_DB_DEAD_PEER_AFTER`); with
the bound, the lock is gone within seconds, while the link is still down.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote, unquote_plus

import pytest
from django.conf import settings as django_settings
from django.db import OperationalError, connection, transaction
from django.db.models import QuerySet

from syndicator import delivery as deliveries
from syndicator.clock import db_now
from syndicator.delivery import create_auto_deliveries
from syndicator.models import Delivery, DeliveryAttempt, Feed, Post, Target
from tests.conftest import wait_for
from tests.emulators import facebook, mastodon
from tests.emulators.base import EmulatedRequest, Reply
from tests.faults.conftest import TAG, WORKER_ENV
from tests.faults.partition import Forwarder, Namespace, NamespacedWorker, NotPermitted
from tests.faults.support import Broker

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

LEASE = float(WORKER_ENV["SYNDICATOR_SEND_LEASE"])
TIMEOUT = 10.0  # Facebook's API timeout: B gives up on its held answer (HOLD) about when it is back
HOLD = 40.0
DEAD_PEER_AFTER = 8  # the fourth test's bound, shorter than its cut
LATE = 60.0  # Mastodon's: B still waits for its answer when the link is back and the answer comes
ALLOW = "10.231.0.0/16"  # the namespaces' addresses (partition.SUBNETS), for the targets' guard
MARKER = re.compile(rf"{TAG} post (\d{{4}})")


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    try:
        made = Namespace().create()
    except NotPermitted as exc:
        # As the fault tests do on SQLite: fail, saying why, never skip (a skip would hide them).
        pytest.fail(f"no network namespace for the partitioned worker (needs root and iproute2): {exc}")
    try:
        yield made
    finally:
        made.destroy()


@pytest.fixture
def relay(namespace: Namespace) -> Iterator[Callable[[tuple[str, int] | Path], int]]:
    """forward(upstream) -> a port at the host end of the veth pair that leads to upstream."""
    running: list[Forwarder] = []

    def forward(upstream: tuple[str, int] | Path) -> int:
        running.append(Forwarder(namespace.host_address, upstream).start())
        return running[-1].port

    yield forward
    for forwarder in running:
        forwarder.stop()


@pytest.fixture
def social(transactional_db) -> Iterator[mastodon.Harness]:
    with mastodon.Harness() as harness:
        yield harness


@pytest.fixture
def page(transactional_db) -> Iterator[facebook.Harness]:
    with facebook.Harness() as harness:
        yield harness


@pytest.fixture
def partitioned_worker(
    namespace: Namespace, relay, broker: Broker, scratch: Path, celery_app, transactional_db
) -> Iterator[Callable[..., NamespacedWorker]]:
    """Start a worker in the namespace: the database and the broker over the veth pair."""
    started: list[NamespacedWorker] = []
    db = django_settings.DATABASES["default"]
    # Not relayed: the server must see the worker's side of the cut itself (Namespace.expose).
    assert (db["HOST"] or "127.0.0.1") in ("127.0.0.1", "localhost"), "PostgreSQL on this host's loopback"
    pg = namespace.expose(int(db["PORT"] or 5432))
    redis = relay(Path(broker.url.removeprefix("redis+socket://")))
    credentials = quote(db["USER"] or "", safe="") + (
        ":" + quote(db["PASSWORD"], safe="") if db.get("PASSWORD") else ""
    )
    assert namespace.reaches(namespace.host_address, pg), "the namespace reaches the host end"

    def start(*, concurrency: int, name: str, **env: str) -> NamespacedWorker:
        environment = {
            **os.environ,
            **WORKER_ENV,
            "DATABASE_URL": f"postgres://{credentials}@{namespace.host_address}:{pg}/{db['NAME']}",
            # The cache and the pacing limiter follow the broker (syndicator/settings.py).
            "CELERY_BROKER_URL": f"redis://{namespace.host_address}:{redis}/0",
            "SYNDICATOR_BROKER_PREFIX": celery_app.conf.broker_transport_options.get("global_keyprefix", ""),
            "SYNDICATOR_DATA_DIR": str(scratch / "data"),
            "SYNDICATOR_TARGET_ALLOW_PRIVATE": allowed_private(),
            # The server keeps B's sessions through cuts shorter than this (the late answers the
            # first tests are about); the fourth test sets a bound shorter than its cut.
            "SYNDICATOR_DB_DEAD_PEER_AFTER": "600",
            **env,
        }
        environment.pop("REDIS_URL", None)
        worker = NamespacedWorker(
            namespace, environment, scratch / f"{name}.log", concurrency=concurrency, name=name
        )
        started.append(worker.start())
        return worker

    yield start
    for worker in started:
        worker.stop()


def allowed_private() -> str:
    return ",".join([*django_settings.SYNDICATOR_TARGET_ALLOW_PRIVATE, ALLOW])


class HeldAnswer:
    """The next publishing request for post ``number`` is handled (the post is made), and its
    answer waits until ``release()``, or ``seconds``: an answer still on its way."""

    def __init__(self, emulator, number: int, *, seconds: float = 90.0) -> None:
        self._released = threading.Event()
        original = emulator.dispatch

        def dispatch(request: EmulatedRequest) -> Reply:
            reply = original(request)
            if request.method == "POST" and f"{TAG} post {number:04d}" in unquote_plus(request.body.decode()):
                emulator.dispatch = original  # the next ones (a look-up, a re-send) go through
                self._released.wait(seconds)
            return reply

        emulator.dispatch = dispatch

    def release(self) -> None:
        self._released.set()


class TableLock:
    """ACCESS EXCLUSIVE on a table, held by a connection of its own (a thread) until released:
    any statement that reads the table waits, one that does not goes on."""

    def __init__(self, table: str) -> None:
        self.table = table
        self._locked, self._release = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._hold, name="fault-table-lock", daemon=True)

    def _hold(self) -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f'LOCK TABLE "{self.table}" IN ACCESS EXCLUSIVE MODE')
                self._locked.set()
                self._release.wait(60)
        finally:
            connection.close()

    def take(self) -> TableLock:
        self._thread.start()
        assert self._locked.wait(10), f"could not lock {self.table}"
        return self

    def release(self) -> None:
        self._release.set()
        self._thread.join(10)


def posted(harness) -> Counter[int]:
    """How many times each post number reached the network."""
    found: Counter[int] = Counter()
    for sent in harness.sent():
        match = MARKER.search(sent["text"])
        assert match, sent["text"][:200]
        found[int(match[1])] += 1
    return found


def attempts(delivery: Delivery) -> list[tuple[int, str, str, str]]:
    """(number, kind, outcome, worker name) of each attempt."""
    return [
        (number, kind, outcome, worker.split("-", 1)[0])
        for number, kind, outcome, worker in DeliveryAttempt.objects.filter(delivery=delivery)
        .order_by("number")
        .values_list("number", "kind", "outcome", "worker")
    ]


def workers(tries: QuerySet[DeliveryAttempt]) -> set[str]:
    """The names of the workers that made these attempts (a hostname is name-pid@host)."""
    return {worker.split("-", 1)[0] for worker in tries.values_list("worker", flat=True)}


def snapshot() -> dict[str, list[tuple]]:
    """What B must not change once it is back: the deliveries, and the attempts of the others."""
    rows = Delivery.objects.values_list(
        "pk", "status", "attempts", "external_id", "sent_at", "updated_at", "lease_until", "last_error"
    )
    others = DeliveryAttempt.objects.exclude(worker__startswith="wB-").values_list(
        "pk", "delivery_id", "number", "kind", "outcome", "finished_at", "message"
    )
    return {
        "deliveries": sorted(rows),
        "attempts": sorted(others),
        "of_b": sorted(
            DeliveryAttempt.objects.filter(worker__startswith="wB-").values_list("delivery_id", "number")
        ),
    }


def test_a_worker_cut_off_mid_send_loses_nothing_posts_nothing_twice_and_acts_on_no_stale_claim(
    namespace, relay, social, page, partitioned_worker, start_worker, sweeper, settings, request
):
    settings.SYNDICATOR_TARGET_ALLOW_PRIVATE = allowed_private().split(",")
    # Both workers reach the networks at the host end's address (A over the host's own routing,
    # which a down link does not take away); the emulators listen on loopback behind forwarders.
    host = namespace.host_address
    toot_port = relay(("127.0.0.1", port(social)))
    toot = social.make_target(name="fault-mastodon", timeout=LATE, base_url=f"http://{host}:{toot_port}")
    page_port = relay(("127.0.0.1", port(page)))
    page.make_target(name="fault-facebook", timeout=TIMEOUT, base_url=f"http://{host}:{page_port}")
    feed = Feed.objects.create(url=f"http://127.0.0.1:9/{TAG}", enabled=False)  # never polled

    def post(number: int, *, auto: bool = True) -> Post:
        return make_post(feed, number, auto=auto)

    def held(number: int, harness, **wait: float) -> HeldAnswer:
        holding = HeldAnswer(harness.emulator, number, **wait)
        request.addfinalizer(holding.release)
        return holding

    # 1. B alone; post 1 goes to both networks, which make it and hold their answers: in flight.
    # Mastodon's answer comes once the link is back (a late success); Facebook's not in time (B
    # gives up after its 10 s timeout, a late "maybe").
    # Its tasks may run past the fault workers' 30 s time limit: they wait through the cut.
    b = partitioned_worker(concurrency=3, name="wB", CELERY_TASK_TIME_LIMIT="120")
    late_answer = held(1, social)
    held(1, page, seconds=HOLD)
    post(1)
    toot_delivery, page_delivery = (
        Delivery.objects.get(post__guid=f"{TAG}-1", target__kind=kind) for kind in ("mastodon", "facebook")
    )
    in_flight = [toot_delivery, page_delivery]
    wait_for(lambda: b.check() or (len(social.sent()), len(page.sent())) == (1, 1), timeout=60)
    assert all(attempts(d) == [(1, "send", "", "wB")] for d in in_flight), [attempts(d) for d in in_flight]

    # 2. Post 2's Mastodon delivery, read by B and stopped before its claim (B's read waits for
    # the locked feed table): never claimed by B. Not due until the lock is held, so no worker
    # reads it early.
    claimed = Delivery.objects.create(
        post=post(2, auto=False), target=toot, next_attempt_at=db_now() + timedelta(hours=1)
    )
    lock = TableLock(Feed._meta.db_table).take()
    try:
        Delivery.objects.filter(pk=claimed.pk).update(next_attempt_at=None)  # the sweeper sends it
        wait_for(
            lambda: (
                b.check()
                or (Delivery.objects.filter(pk=claimed.pk, status="queued").exists() and read_waiting())
            ),
            timeout=30,
        )
        # 3. The cable is pulled; then B's read is answered, into the cut.
        namespace.cut()
    finally:
        lock.release()
    assert not namespace.reaches(host, toot_port), "the link is down"

    # 4. A runs normally beside it: settles what B held and delivers four new posts. Its own send
    # of post 2 is held in flight, so that B comes back while A's newer claim is live.
    # A's leases and time limit are long: that send must stay live (not lost) until B is back
    # and has tried.
    resent = held(2, social)
    a = start_worker(
        concurrency=2,
        SYNDICATOR_TARGET_ALLOW_PRIVATE=allowed_private(),
        SYNDICATOR_SEND_LEASE="60",
        CELERY_TASK_TIME_LIMIT="120",
    )
    for number in range(3, 7):
        post(number)
    others = Delivery.objects.exclude(pk=claimed.pk)

    def settled() -> bool:
        a.check()
        return others.filter(status="sent").count() == others.count() == 2 + 2 * 4

    wait_for(settled, timeout=60)
    for delivery in in_flight:  # lost mid-send, uncertain, looked up by A: found, not re-posted
        assert attempts(delivery) == [(1, "send", "lost", "wB"), (2, "lookup", "sent", "w1")], delivery.target
    # Never claimed by B: its message, reserved by a worker that sends nothing under a lease, is
    # the sweeper's to send again once stranded (syndicator/waiting.py); A's claim is attempt 1.
    wait_for(lambda: attempts(claimed) == [(1, "send", "", "w1")] and posted(social)[2] == 1, timeout=30)
    assert workers(DeliveryAttempt.objects.exclude(delivery__in=in_flight, number=1)) == {"w1"}
    before = snapshot()

    # 5. The link is back: B's stalled tasks resume, each against a delivery that is no longer as
    # B knew it. The read one is A's live claim now (a newer attempt count): B's claim, a
    # compare-and-set on the count B read, takes nothing, and B sends nothing.
    namespace.restore()
    stale = DeliveryAttempt.objects.filter(delivery=claimed, worker__startswith="wB-")
    wait_for(
        lambda: b.check() or f"delivery {claimed.pk}: not claimed" in b.log_tail() or stale.exists(),
        timeout=60,
    )
    assert snapshot() == before, f"B acted on a claim that is no longer its own: {attempts(claimed)}"
    resent.release()  # A's send of post 2 is answered: sent, under A's attempt
    wait_for(lambda: Delivery.objects.filter(pk=claimed.pk, status="sent").exists(), timeout=30)
    assert attempts(claimed) == [(1, "send", "sent", "w1")]
    # The late answer and the late "maybe" change no delivery and no attempt of A's.
    before = snapshot()
    late_answer.release()
    wait_for(lambda: b.check() or b.log_tail(100_000).count("succeeded in") >= 3, timeout=60)
    assert f"delivery {toot_delivery.pk}: attempt 1 sent" in b.log_tail(100_000)
    assert snapshot() == before, "B changed a delivery it no longer held"
    # What B learned stays on its own attempt's row (delivery._record_success): the network's id
    # for the late answer, the timeout for the other; neither is the delivery's outcome.
    assert attempts(toot_delivery)[0] == (1, "send", "sent", "wB")
    assert attempts(page_delivery)[0] == (1, "send", "unknown", "wB")
    mastodon_posts, page_posts = posted(social), posted(page)
    assert mastodon_posts == Counter({n: 1 for n in (1, 2, 3, 4, 5, 6)}), mastodon_posts
    assert page_posts == Counter({n: 1 for n in (1, 3, 4, 5, 6)}), page_posts

    # 6. And B works again: with A stopped, it delivers a new post.
    a.stop()
    post(7)
    wait_for(
        lambda: b.check() or Delivery.objects.filter(post__guid=f"{TAG}-7", status="sent").count() == 2,
        timeout=60,
    )
    assert workers(DeliveryAttempt.objects.filter(delivery__post__guid=f"{TAG}-7")) == {"wB"}
    assert posted(social)[7] == posted(page)[7] == 1


def port(harness) -> int:
    return int(harness.emulator.base_url.rsplit(":", 1)[1])


def make_post(feed: Feed, number: int, *, auto: bool = True) -> Post:
    """A post whose number its messages carry; ``auto``: with its deliveries, enqueued."""
    made = Post.objects.create(
        feed=feed,
        guid=f"{TAG}-{number}",
        url=f"https://news.example/{TAG}/{number:04d}",
        title=f"{TAG} post {number:04d}: winter kits reach the villages",
        language="en",
    )
    if auto:
        with transaction.atomic():
            create_auto_deliveries([made])  # enqueued on commit
    return made


def test_a_claim_answered_into_the_cut_sends_nothing_and_leaves_the_sweepers_verdict(
    namespace, relay, social, partitioned_worker, start_worker, sweeper, settings
):
    """B's claim (with its attempt row) commits, and its answer is lost in the cut: the sweeper
    takes it for lost mid-send, and A's look-up re-sends under the same Idempotency-Key. When B's
    answer arrives at last, long past half its lease, B must send nothing and change nothing."""
    settings.SYNDICATOR_TARGET_ALLOW_PRIVATE = allowed_private().split(",")
    host = namespace.host_address
    target = social.make_target(
        name="fault-mastodon", timeout=LATE, base_url=f"http://{host}:{relay(('127.0.0.1', port(social)))}"
    )
    feed = Feed.objects.create(url=f"http://127.0.0.1:9/{TAG}", enabled=False)
    delivery = Delivery.objects.create(
        post=make_post(feed, 1, auto=False), target=target, next_attempt_at=db_now() + timedelta(hours=1)
    )
    b = partitioned_worker(concurrency=1, name="wB")
    wait_for(lambda: b.check() or "ready." in b.log_tail(), timeout=60)
    # B's claim waits for the attempt table (it inserts the attempt row), so it is answered only
    # once the cable is pulled; B's read, before it, does not touch that table. The sweeper waits
    # too, meanwhile (it reads the attempt rows): the message is B's.
    lock = TableLock(DeliveryAttempt._meta.db_table).take()
    try:
        Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=None)  # due: B's to claim
        deliveries.enqueue([(delivery.pk, "mastodon")])
        wait_for(lambda: b.check() or claim_waiting(), timeout=30)
        namespace.cut()
    finally:
        lock.release()
    # Lost mid-send: uncertain, and A's look-up (a re-send under the same key) held in flight
    # while B comes back.
    in_flight = HeldAnswer(social.emulator, 1)
    try:
        start_worker(
            concurrency=1,
            SYNDICATOR_TARGET_ALLOW_PRIVATE=allowed_private(),
            SYNDICATOR_SEND_LEASE="60",
            CELERY_TASK_TIME_LIMIT="120",
        )
        wait_for(
            lambda: (
                attempts(delivery) == [(1, "send", "lost", "wB"), (2, "lookup", "", "w1")]
                and len(social.sent()) == 1
            ),
            timeout=40,
        )
        before = snapshot()
        namespace.restore()
        wait_for(lambda: b.check() or re.search(r"succeeded in|raised", b.log_tail(100_000)), timeout=60)
        log = b.log_tail(100_000)
        assert f"delivery {delivery.pk}: attempt 1: the claim was answered after" in log, log[-1500:]
        assert snapshot() == before, "B acted on a claim the sweeper had settled"
    finally:
        in_flight.release()
    wait_for(lambda: Delivery.objects.filter(pk=delivery.pk, status="sent").exists(), timeout=30)
    assert attempts(delivery) == [(1, "send", "lost", "wB"), (2, "lookup", "sent", "w1")]
    assert posted(social) == Counter({1: 1})


def waiting_for_a_lock(statement_start: str) -> bool:
    """Whether a session runs a statement that starts so and waits for a lock now (only its start:
    pg_stat_activity keeps the first track_activity_query_size bytes, 1 kB)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND query LIKE %s",
            [statement_start + "%"],
        )
        return bool(cursor.fetchone()[0])


def read_waiting() -> bool:
    """Whether a worker's read of a delivery (delivery.read_for_sending) waits for a lock now."""
    return waiting_for_a_lock('SELECT d."id", d."post_id", d."target_id", ')


def claim_waiting() -> bool:
    """Whether a worker's claim (the UPDATE to `sending` with its attempt row) waits for a lock now."""
    return waiting_for_a_lock('WITH claimed AS (UPDATE "syndicator_delivery" SET "status" = \'sending\'')


class HeldInsert:
    """An attempt row for (delivery, number) inserted and not committed, by a connection of its own
    (a thread): a worker claiming that attempt (delivery._claim_and_insert: the claim's UPDATE and
    this INSERT, one statement) waits at the INSERT, the delivery's row locked by its UPDATE."""

    def __init__(self, delivery: Delivery, number: int) -> None:
        self.delivery, self.number = delivery, number
        self._held, self._release = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._hold, name="fault-held-insert", daemon=True)

    def _hold(self) -> None:
        try:
            with transaction.atomic():
                DeliveryAttempt.objects.create(
                    delivery=self.delivery, number=self.number, started_at=db_now()
                )
                self._held.set()
                self._release.wait(60)
                transaction.set_rollback(True)  # never there: the worker's INSERT goes on
        finally:
            connection.close()

    def take(self) -> HeldInsert:
        self._thread.start()
        assert self._held.wait(10), "could not insert the attempt row"
        return self

    def release(self) -> None:
        self._release.set()
        self._thread.join(10)


def test_a_worker_cut_off_inside_a_transaction_does_not_stall_the_sweeper(
    namespace, relay, social, partitioned_worker, start_worker, sweeper, settings
):
    settings.SYNDICATOR_TARGET_ALLOW_PRIVATE = allowed_private().split(",")
    host = namespace.host_address
    target = social.make_target(
        name="fault-mastodon", timeout=TIMEOUT, base_url=f"http://{host}:{relay(('127.0.0.1', port(social)))}"
    )
    feed = Feed.objects.create(url=f"http://127.0.0.1:9/{TAG}", enabled=False)
    delivery = Delivery.objects.create(
        post=make_post(feed, 1, auto=False), target=target, next_attempt_at=db_now() + timedelta(hours=1)
    )
    b = partitioned_worker(concurrency=1, name="wB")
    wait_for(lambda: b.check() or "ready." in b.log_tail(), timeout=60)
    # B claims it: the claim's UPDATE is done (the row locked, not yet committed), the INSERT waits.
    insert = HeldInsert(delivery, 1).take()
    try:
        Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=None)  # the sweeper sends it
        wait_for(lambda: b.check() or claim_waiting(), timeout=30)
        namespace.cut()  # then B's INSERT goes through: the server commits it, B never hears
    finally:
        insert.release()
    try:
        start_worker(concurrency=1, SYNDICATOR_TARGET_ALLOW_PRIVATE=allowed_private())
        # The claim's lease expires with B's attempt committed and nothing holding its row: the
        # sweeper takes it for lost mid-send (uncertain), and A's look-up settles it (Mastodon's:
        # a re-send under the same Idempotency-Key, posted once), while B is still cut off.
        # Before issue 16.3 B's open transaction kept the row locked here, and every sweep
        # waited for the link.
        wait_for(lambda: Delivery.objects.filter(pk=delivery.pk, status="sent").exists(), timeout=LEASE + 20)
    finally:
        namespace.restore()  # B commits or rolls back: its locks go, and the sweeper goes on
    assert posted(social) == Counter({1: 1})


LOCK_HOLDER = """
import os, sys, time
import django
django.setup()
from django.db import transaction
from syndicator.models import Delivery
with transaction.atomic():
    Delivery.objects.select_for_update().get(pk=int(sys.argv[1]))
    print("locked", flush=True)
    time.sleep(600)
"""


@pytest.mark.parametrize("bound", [DEAD_PEER_AFTER, 0], ids=["bounded", "os-default"])
def test_a_session_cut_off_inside_a_transaction_loses_its_locks_within_the_bound(
    namespace, scratch, transactional_db, bound
):
    """Our own database settings, over a real cut: with SYNDICATOR_DB_DEAD_PEER_AFTER the server
    ends the silent session and its row lock goes; with 0 (the OS's defaults) it stays."""
    db = django_settings.DATABASES["default"]
    pg = namespace.expose(int(db["PORT"] or 5432))
    feed = Feed.objects.create(url=f"http://127.0.0.1:9/{TAG}", enabled=False)
    target = Target.objects.create(name="fault-box", kind="outbox", settings={"format": "telegram"})
    delivery = Delivery.objects.create(post=make_post(feed, 1, auto=False), target=target)
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{quote(db['USER'] or '', safe='')}@{namespace.host_address}:{pg}/"
        + db["NAME"],
        "SYNDICATOR_DATA_DIR": str(scratch / "data"),
        "SYNDICATOR_DB_DEAD_PEER_AFTER": str(bound),
        "DJANGO_SETTINGS_MODULE": "syndicator.settings",
    }
    holder = subprocess.Popen(
        ["ip", "netns", "exec", namespace.name, sys.executable, "-c", LOCK_HOLDER, str(delivery.pk)],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked", holder.stdout.read()
        namespace.cut()
        # The sweeper's kind of write: it waits on the lock, at most the bound and some slack.
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '25s'")
            try:
                cursor.execute(
                    "UPDATE syndicator_delivery SET updated_at = now() WHERE id = %s", [delivery.pk]
                )
                released = True
            except OperationalError:
                released = False
            finally:
                cursor.execute("SET lock_timeout = 0")
        assert released is (bound > 0)
    finally:
        namespace.restore()
        holder.kill()
        holder.wait(timeout=10)
