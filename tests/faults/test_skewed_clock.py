"""A real worker process whose clock is ten minutes off (libfaketime), beside a sweeper on time:
leases and lost sends follow the database's clock (issue 15, item 8; syndicator/clock.py).

libfaketime is preloaded into the worker only (Debian's ``faketime``; make test installs it): the
worker's time(), gettimeofday() and clock_gettime(CLOCK_REALTIME) are off, its monotonic clock is
not, the database and this process are on time.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from syndicator import delivery as deliveries
from syndicator.clock import db_now
from syndicator.models import Delivery, DeliveryAttempt, Feed, Post
from tests.conftest import wait_for
from tests.emulators.mastodon import Harness

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

# Where Debian's faketime package puts it, whatever the architecture.
LIBFAKETIME = next(iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))), None)
LEASE = 6.0  # tests/faults/conftest.py's WORKER_ENV


def skewed(offset: str) -> dict[str, str]:
    """The environment that sets a process's clock off by ``offset`` (libfaketime's "+10m")."""
    if LIBFAKETIME is None or shutil.which("faketime") is None:
        pytest.fail("these tests need libfaketime: scripts/ensure-faketime (make test runs it)")
    return {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": offset, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


@pytest.fixture
def social(transactional_db) -> Iterator[Harness]:
    with Harness() as harness:
        yield harness


def one_delivery(social: Harness) -> Delivery:
    feed = Feed.objects.create(url="http://127.0.0.1:9/skew", enabled=False)
    post = Post.objects.create(
        feed=feed, guid="skew-1", url="https://news.example/skew/1", title="Kits arrive"
    )
    delivery = Delivery.objects.create(post=post, target=social.make_target(timeout=60))
    deliveries.enqueue([(delivery.pk, "mastodon")])
    return delivery


def status(delivery: Delivery) -> str:
    return Delivery.objects.values_list("status", flat=True).get(pk=delivery.pk)


def test_the_skew_is_real(transactional_db):
    import subprocess
    import sys

    env = {**skewed("+10m"), "PATH": "/usr/bin:/bin"}
    code = "import time; print(time.time())"
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    ahead = float(run.stdout)
    assert ahead - db_now().timestamp() > 590, "libfaketime sets the worker's clock ten minutes fast"


def test_a_slow_workers_live_send_is_not_taken_for_lost(social, start_worker, sweeper):
    # The status is made at once and its answer comes after 3 s: within the 6 s lease.
    social.emulator.lose_next_answers(seconds=3.0)
    worker = start_worker(**skewed("-10m"))
    delivery = one_delivery(social)
    seen: set[str] = set()

    def done() -> bool:
        worker.check()
        seen.add(status(delivery))
        return "sent" in seen

    wait_for(done, timeout=30, interval=0.05)

    assert "uncertain" not in seen, "the sweeper did not take the live send for lost"
    assert [a.outcome for a in DeliveryAttempt.objects.filter(delivery=delivery)] == ["sent"]
    assert len(social.sent()) == 1


def test_a_fast_workers_lease_expires_on_the_databases_schedule(social, start_worker, sweeper):
    # The status is made and its answer held past anything the test waits: the worker dies mid-send.
    social.emulator.lose_next_answers(seconds=120.0)
    fast = start_worker(**skewed("+10m"))
    delivery = one_delivery(social)
    wait_for(lambda: fast.check() or len(social.sent()) == 1, timeout=30)
    lease_until = Delivery.objects.values_list("lease_until", flat=True).get(pk=delivery.pk)
    assert lease_until is not None and (lease_until - db_now()).total_seconds() <= LEASE
    fast.kill()

    # Lost within the lease by the database's clock (not ten minutes later), then settled by a
    # worker on time: re-sent under the same Idempotency-Key, one status.
    wait_for(lambda: status(delivery) == "uncertain", timeout=LEASE + 10)
    start_worker()
    wait_for(lambda: status(delivery) == "sent", timeout=30)
    assert len(social.sent()) == 1
    log = DeliveryAttempt.objects.filter(delivery=delivery).order_by("number")
    assert [(a.kind, a.outcome) for a in log] == [("send", "lost"), ("lookup", "sent")]
