"""PostgreSQL stops for a few seconds mid-run: the worker recovers by itself and nothing is lost.

This stops the machine's PostgreSQL (every connection to it drops, other test runs' too), so it is
marked ``faults_pg_stop`` and `make test` runs it on its own, last. PostgreSQL is started again in
a ``finally``, whatever happens.
"""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
from django.conf import settings
from django.db import connection

from syndicator.models import Delivery
from tests.conftest import wait_for
from tests.faults.conftest import TAG
from tests.faults.networks import KINDS, reconcile
from tests.faults.support import db_poll, settled, status_counts, store_posts

pytestmark = [pytest.mark.faults, pytest.mark.faults_pg_stop, pytest.mark.django_db(transaction=True)]

POSTS = 10
DOWN_SECONDS = 3.0


def local_cluster() -> list[str]:
    """pg_ctlcluster's <version> <name> for the cluster serving this test's database."""
    db = settings.DATABASES["default"]
    if not shutil.which("pg_ctlcluster") or (db["HOST"] or "localhost") not in ("127.0.0.1", "localhost"):
        # .ci/run installs and starts the local cluster; a run without one must say so, not pass.
        pytest.fail("needs the local PostgreSQL cluster, managed with pg_ctlcluster")
    listing = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=True).stdout
    for line in listing.splitlines():
        version, name, port, *_ = line.split()
        if port == str(db["PORT"] or 5432):
            return [version, name]
    pytest.fail(f"no local cluster listens on port {db['PORT']}")


def pg_ctl(cluster: list[str], action: str, *extra: str) -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, action, *extra],
        check=True,
        capture_output=True,
        timeout=60,
    )


def pg_ready() -> bool:
    db = settings.DATABASES["default"]
    argv = ["pg_isready", "-q", "-h", db["HOST"] or "127.0.0.1", "-p", str(db["PORT"] or 5432)]
    return subprocess.run(argv, check=False).returncode == 0


def start_postgres(cluster: list[str]) -> None:
    """Start the cluster and wait until it accepts connections; retried, since everything needs it."""
    for attempt in range(3):
        try:
            pg_ctl(cluster, "start")
            break
        except subprocess.CalledProcessError:
            if pg_ready():
                break
            if attempt == 2:
                raise
            time.sleep(1)
    wait_for(pg_ready, timeout=60, interval=0.2)


def test_a_database_outage_mid_run_loses_nothing(networks, start_worker, sweeper):
    cluster = local_cluster()
    networks.make_targets(timeout=10)
    networks.pace = 0.2
    worker = start_worker(concurrency=2)
    store_posts(TAG, POSTS)
    wait_for(lambda: worker.check() or status_counts()["sent"] >= 6, timeout=60)

    connection.close()  # ours is not in use when it drops
    try:
        pg_ctl(cluster, "stop", "-m", "fast")  # every session is cut, mid-query or not
        down_at = time.monotonic()
        time.sleep(DOWN_SECONDS)
    finally:
        start_postgres(cluster)
    print(f"\nPostgreSQL was down {time.monotonic() - down_at:.1f} s")

    wait_for(lambda: worker.check() or db_poll(lambda: settled(POSTS * len(KINDS))), timeout=120)
    books = reconcile(networks)
    print(
        f"after the outage: {dict(status_counts())}; {books.summary()}; sweeper errors {len(sweeper.errors)}"
    )
    assert not books.problems, books.problems
    assert sweeper.errors, "the outage was felt"
    counts = status_counts()
    # A send whose outcome could not be written is written once the database is back (the worker
    # retries it). Only a network that keeps per-recipient rows while it sends (a mailing list),
    # cut mid-send, may end uncertain, never sent twice.
    uncertain = set(Delivery.objects.filter(status="uncertain").values_list("target__kind", flat=True))
    per_recipient = {kind for kind, harness in networks.harnesses.items() if harness.writes_while_sending}
    assert uncertain <= per_recipient, counts
    assert counts["sent"] + counts["uncertain"] == POSTS * len(KINDS), counts
