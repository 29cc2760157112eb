"""Uncertain deliveries and their look-ups when sweeper, workers and readers interleave.

Each test replays one interleaving with the real functions, in the order that once went wrong.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from syndicator import delivery as deliveries
from syndicator.models import Delivery, DeliveryAttempt, Feed, Post
from syndicator.recovery import claim_verification, settle_lost_sends, unverified
from syndicator.targets.facebook import FacebookAdapter
from tests.conftest import wait_for
from tests.emulators import facebook as graph
from tests.faults.support import settled
from tests.helpers import require_postgresql

pytestmark = pytest.mark.django_db


@pytest.fixture
def post() -> Post:
    feed = Feed.objects.create(url="https://news.example/feed", enabled=False)
    return Post.objects.create(
        feed=feed, guid="g-1", url="https://news.example/a", title="Kits reach the villages"
    )


@pytest.fixture
def fb(settings) -> Iterator[graph.Harness]:
    settings.SYNDICATOR_VERIFY_AFTER = 0  # due a look-up as soon as it is uncertain
    with graph.Harness() as harness:
        yield harness


def expire_lease(delivery: Delivery) -> None:
    Delivery.objects.filter(pk=delivery.pk).update(lease_until=timezone.now() - timedelta(seconds=1))


def lost_mid_send(fb: graph.Harness, post: Post) -> Delivery:
    """A Facebook delivery whose worker died with its request out (no post made): uncertain."""
    d = Delivery.objects.create(post=post, target=fb.make_target())
    assert deliveries.claim(d.pk)
    DeliveryAttempt.objects.create(delivery=d, number=1)
    expire_lease(d)
    assert settle_lost_sends(timezone.now()) == (0, 1)
    return d


def look_ups(d: Delivery) -> list[str]:
    return list(DeliveryAttempt.objects.filter(delivery=d, kind="lookup").values_list("outcome", flat=True))


def test_a_look_up_claimed_while_the_state_is_read_is_never_read_as_settled(fb, post):
    # The flake of tests/faults/test_worker_killed.py: the fault tests read "every delivery sent,
    # failed or uncertain" and "no uncertain one waits for a look-up" as two statements, and a
    # worker's look-up claim (uncertain -> sending) landed between them.
    d = lost_mid_send(fb, post)
    claimed: list[DeliveryAttempt | None] = []

    def a_worker_claims_the_look_up_after_the_first_statement(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if not claimed:
            claimed.append(None)  # before the call: its own statements come through here too
            claimed[0] = claim_verification(d.pk)
        return result

    with connection.execute_wrapper(a_worker_claims_the_look_up_after_the_first_statement):
        reading = settled(1)

    assert claimed[0] is not None, "the look-up started during the reading"
    d.refresh_from_db()
    assert d.status == "sending"
    assert reading is False, "a delivery being looked up was read as settled"


@pytest.mark.django_db(transaction=True)
def test_two_workers_racing_for_one_look_up_make_one(fb, post):
    require_postgresql("row locks and statement snapshots as PostgreSQL takes them")
    d = lost_mid_send(fb, post)
    rival: dict[str, object] = {}

    def rival_worker() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                rival["pid"] = cursor.fetchone()[0]
            rival["attempt"] = claim_verification(d.pk, worker="rival")
        finally:
            connection.close()

    def rival_waits_for_the_row() -> bool:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted", [rival.get("pid")])
            return cursor.fetchone()[0] > 0

    thread = threading.Thread(target=rival_worker)
    with transaction.atomic():
        # The row is held while the rival's claim starts, so the rival takes its snapshot and
        # then waits; meanwhile this worker claims, looks the post up and finds nothing.
        Delivery.objects.select_for_update().get(pk=d.pk)
        thread.start()
        wait_for(lambda: "pid" in rival and rival_waits_for_the_row(), timeout=10)
        mine = claim_verification(d.pk, worker="mine")
        deliveries.verify_delivery(mine)
    thread.join(timeout=10)

    d.refresh_from_db()
    assert rival["attempt"] is None, "the rival saw the look-up that had run while it waited"
    assert look_ups(d) == ["unknown"] and d.attempts == 2
    assert d.status == "uncertain" and "not among the Page's 25 newest posts" in d.last_error
    listings = [r for r in fb.emulator.requests if r.method == "GET" and r.path.endswith("/feed")]
    assert len(listings) == 1, "the Page was listed once"


def test_a_look_up_lost_with_its_worker_stays_uncertain_and_says_so(fb, post):
    d = lost_mid_send(fb, post)
    assert claim_verification(d.pk) is not None
    expire_lease(d)  # the look-up's worker dies

    assert settle_lost_sends(timezone.now()) == (0, 1)

    d.refresh_from_db()
    assert d.status == "uncertain" and look_ups(d) == ["lost"]
    assert d.last_error.startswith("looking it up was lost with its worker"), d.last_error
    assert "an admin checks the account" in d.last_error
    assert "the post may or may not be published" in d.last_error, "the reason it had is kept"
    assert "looked up on the network shortly" not in d.last_error, "it will not be"
    assert not Delivery.objects.filter(unverified()).exists()
    assert deliveries.attempt_delivery(d.pk) is None, "looked up once"


def test_a_look_up_answering_after_its_lease_expired_still_records_what_it_found(fb, post, monkeypatch):
    d = lost_mid_send(fb, post)
    look_up = FacebookAdapter.verify

    def slow_look_up(self, delivery):
        expire_lease(delivery)  # the Page's listing is slow: the sweeper takes the look-up for lost
        assert settle_lost_sends(timezone.now()) == (0, 1)
        return look_up(self, delivery)  # then its answer comes: not on the Page

    monkeypatch.setattr(FacebookAdapter, "verify", slow_look_up)

    deliveries.attempt_delivery(d.pk)

    d.refresh_from_db()
    assert d.status == "uncertain" and look_ups(d) == ["unknown"]
    assert d.last_error.startswith("looked up: Facebook: not among the Page's 25 newest posts"), d.last_error
    assert "the post may or may not be published" in d.last_error
    assert (
        "lost with its worker" not in d.last_error and "looked up on the network shortly" not in d.last_error
    )
