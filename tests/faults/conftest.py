"""Fixtures of the fault tests: worker processes, a private broker, the sweeper, the six networks.

Tests marked ``faults`` run real worker processes against this test's database, which they can
only share on PostgreSQL (`make test` runs them there); on SQLite they fail saying so, never skip.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from tests.faults.networks import Networks
from tests.faults.support import Broker, Sweeper, Worker, app_publishing_to, database_url

TAG = "fault"  # in every post's title, so each message a network received names its post

# What a worker of these tests runs with: short leases and a retry policy in fractions of a second,
# so lost sends and retries settle within a test.
WORKER_ENV = {
    "CELERY_TASK_TIME_LIMIT": "30",
    "SYNDICATOR_SEND_LEASE": "6",
    "SYNDICATOR_RETRY_BACKOFF": "0.3,0.6,1",
    "SYNDICATOR_RETRY_JITTER": "0.2",
    "SYNDICATOR_RETRY_MAX_ATTEMPTS": "12",
    "SYNDICATOR_RETRY_MAX_DELAY": "2",
    "SYNDICATOR_RECORD_RETRY": "20",
    "SYNDICATOR_VERIFY_AFTER": "0.5",  # as the sweeper fixture's: a worker refuses an early look-up
    "LOG_LEVEL": "INFO",
}


@pytest.fixture(autouse=True)
def _postgresql_only(request: pytest.FixtureRequest) -> None:
    """Fail `faults` tests, saying why, when the database is not PostgreSQL (a skip would hide them)."""
    engine = django_settings.DATABASES["default"]["ENGINE"]
    if request.node.get_closest_marker("faults") and "postgresql" not in engine:
        pytest.fail("fault tests share the database with worker processes: run them on PostgreSQL")


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A short directory (a unix socket path must stay under 104 bytes) for broker and worker files."""
    path = Path(tempfile.mkdtemp(prefix="synd-f-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def broker(scratch: Path, celery_app) -> Iterator[Broker]:
    """A private Redis that this test may crash; this process publishes to it while the test runs."""
    running = Broker(scratch / "broker")
    running.start()
    try:
        with app_publishing_to(running.url):
            yield running
    finally:
        running.stop()


@pytest.fixture
def start_worker(
    transactional_db, broker: Broker, scratch: Path, celery_app
) -> Iterator[Callable[..., Worker]]:
    """Start worker processes on this test's database and broker; every one is killed at the end."""
    import os

    started: list[Worker] = []
    prefix = celery_app.conf.broker_transport_options.get("global_keyprefix", "")

    def start(*, concurrency: int = 2, **env: str) -> Worker:
        environment = {
            **os.environ,
            **WORKER_ENV,
            "DATABASE_URL": database_url(),
            "CELERY_BROKER_URL": broker.url,
            "SYNDICATOR_BROKER_PREFIX": prefix,  # the keys this process publishes under
            "SYNDICATOR_DATA_DIR": str(scratch / "data"),
            **env,
        }
        environment.pop("REDIS_URL", None)
        name = f"w{len(started) + 1}"
        worker = Worker(environment, scratch / f"{name}.log", concurrency=concurrency, name=name)
        started.append(worker.start())
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def sweeper(transactional_db, broker: Broker, settings) -> Iterator[Sweeper]:
    """The sweeper every 0.3 s: stranded messages re-sent after 3 s, uncertain looked up after 0.5 s."""
    settings.SYNDICATOR_STRANDED_AFTER = 3
    settings.SYNDICATOR_VERIFY_AFTER = 0.5
    running = Sweeper(interval=0.3).start()
    yield running
    running.stop()


@pytest.fixture
def networks(transactional_db) -> Iterator[Networks]:
    """The six emulators (threads of this process); Networks.make_targets gives each a target."""
    with Networks(TAG) as running:
        yield running
