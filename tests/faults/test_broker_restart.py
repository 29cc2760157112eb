"""The broker crashes mid-run and comes back: deliveries finish or are re-sent; none lost, none twice."""

from __future__ import annotations

import time

import pytest

from tests.conftest import wait_for
from tests.faults.conftest import TAG
from tests.faults.networks import KINDS, reconcile
from tests.faults.support import settled, status_counts, store_posts

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

POSTS = 12
DOWN_SECONDS = 2.0


def test_a_broker_crash_mid_run_loses_nothing_and_sends_nothing_twice(
    networks, broker, start_worker, sweeper
):
    networks.make_targets(timeout=10)
    networks.pace = 0.2  # slow enough that the crash finds deliveries queued and in flight
    worker = start_worker(concurrency=2)
    store_posts(TAG, POSTS)
    wait_for(lambda: worker.check() or status_counts()["sent"] >= 8, timeout=60)

    broker.crash()  # kill -9: queued, reserved and unacknowledged messages are all at stake
    crashed_with = dict(status_counts())
    time.sleep(DOWN_SECONDS)  # the worker and the sweeper find no broker for a while
    broker.start()  # same socket, same append-only file

    wait_for(lambda: worker.check() or settled(POSTS * len(KINDS)), timeout=90)
    books = reconcile(networks)
    print(f"\nbroker crashed with {crashed_with}; after: {dict(status_counts())}; {books.summary()}")
    assert not books.problems, books.problems
    assert crashed_with.get("sent", 0) < POSTS * len(KINDS), "the crash came mid-run"
    # The worker process lived through it: nothing it was sending is in doubt.
    assert status_counts() == {"sent": POSTS * len(KINDS)}
