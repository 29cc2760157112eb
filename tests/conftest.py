"""Shared fixtures: a real Celery worker on the real Redis broker, feed servers, targets."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.feedserver import FeedServer

# The broker for in-process workers: this machine's Redis (make test sets TEST_BROKER_URL).
TEST_BROKER_URL = os.environ.get("TEST_BROKER_URL", "redis://127.0.0.1:6379/15")


def wait_for(predicate: Callable[[], object], timeout: float = 20.0, interval: float = 0.05) -> object:
    """Poll until predicate() is truthy and return its value; fail the test after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {predicate}")
        time.sleep(interval)


@pytest.fixture(scope="session", autouse=True)
def celery_app():
    """The project's Celery app, pointed at the test broker under a prefix of its own (always:
    no test may publish to the embedded default's socket)."""
    from celeryproject import app

    app.conf.broker_url = TEST_BROKER_URL
    # In-process worker threads must not keep connections to the test database open past a test:
    # the database could not be dropped at the end of the session.
    app.conf.CELERY_DB_REUSE_MAX = None
    app.conf.broker_transport_options = {
        **app.conf.broker_transport_options,
        "global_keyprefix": f"synd-test-{uuid.uuid4().hex[:8]}:",
    }
    return app


# The emulators listen on loopback, and harnesses keep their secrets in variables of their own.
TARGET_ALLOWANCES = {
    "SYNDICATOR_TARGET_ALLOW_PRIVATE": ["127.0.0.0/8", "::1"],
    "SYNDICATOR_SECRET_ENV_ALLOW": ["SYNDICATOR_TEST_*"],
}


@pytest.fixture(scope="session", autouse=True)
def allow_loopback_targets() -> Iterator[None]:
    """Targets may reach the loopback emulators and read the harnesses' secret variables, in this
    process and in every process a test starts (syndicator/targets/guard.py refuses both by
    default)."""
    from django.conf import settings

    saved = {name: (getattr(settings, name), os.environ.get(name)) for name in TARGET_ALLOWANCES}
    for name, value in TARGET_ALLOWANCES.items():
        setattr(settings, name, value)
        os.environ[name] = ",".join(value)
    yield
    for name, (setting, env) in saved.items():
        setattr(settings, name, setting)
        if env is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = env


@pytest.fixture(scope="session", autouse=True)
def allow_loopback_feeds() -> Iterator[None]:
    """Feeds here are served from 127.0.0.1, which syndicator refuses by default (no feed may
    reach the machine it runs on: syndicator/netguard.py). Allowed in this process, and in every
    process a test starts (they inherit the environment)."""
    from django.conf import settings

    previous = (settings.SYNDICATOR_FEED_ALLOW_PRIVATE, os.environ.get("SYNDICATOR_FEED_ALLOW_PRIVATE"))
    settings.SYNDICATOR_FEED_ALLOW_PRIVATE = ["127.0.0.0/8", "::1"]
    os.environ["SYNDICATOR_FEED_ALLOW_PRIVATE"] = "127.0.0.0/8,::1"
    yield
    settings.SYNDICATOR_FEED_ALLOW_PRIVATE = previous[0]
    if previous[1] is None:
        os.environ.pop("SYNDICATOR_FEED_ALLOW_PRIVATE", None)
    else:
        os.environ["SYNDICATOR_FEED_ALLOW_PRIVATE"] = previous[1]


@pytest.fixture(scope="session", autouse=True)
def no_default_max_age() -> Iterator[None]:
    """The fixtures' posts (the demo feeds, fixed dates) are years old: without a target's own
    max_age, nothing is stale here (tests/test_pacing.py tests the default and the setting)."""
    from django.conf import settings

    previous = settings.SYNDICATOR_MAX_AGE, os.environ.get("SYNDICATOR_MAX_AGE")
    settings.SYNDICATOR_MAX_AGE = None
    os.environ["SYNDICATOR_MAX_AGE"] = "off"
    yield
    settings.SYNDICATOR_MAX_AGE = previous[0]
    if previous[1] is None:
        os.environ.pop("SYNDICATOR_MAX_AGE", None)
    else:
        os.environ["SYNDICATOR_MAX_AGE"] = previous[1]


@pytest.fixture
def celery_worker(celery_app, transactional_db) -> Iterator[object]:
    """A real Celery worker (threads pool) consuming every queue, for the duration of a test."""
    from celery.contrib.testing.worker import start_worker

    from celeryproject import ALL_QUEUES

    queues = ",".join(ALL_QUEUES)
    with start_worker(
        celery_app,
        pool="threads",
        concurrency=4,
        perform_ping_check=False,
        queues=queues.split(","),
        shutdown_timeout=30,
    ) as worker:
        yield worker


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    """A loopback HTTP server whose answers a test sets and changes."""
    with FeedServer() as server:
        yield server


@pytest.fixture
def fast_retries(settings):
    """A retry policy in fractions of a second, so retries run end to end within a test."""
    settings.SYNDICATOR_RETRY = {"backoff": [0.2, 0.4], "jitter": 0.0, "max_attempts": 4, "max_delay": 1.0}
    return settings.SYNDICATOR_RETRY


@pytest.fixture
def beat(transactional_db) -> Iterator[None]:
    """What celery beat does, in a thread: find due feeds and sweep deliveries every 0.2 s."""
    import threading

    from django.db import connection

    from syndicator import delivery
    from tasks.watch import schedule_due_feeds

    stop = threading.Event()

    def tick() -> None:
        try:
            while not stop.wait(0.2):
                schedule_due_feeds()
                delivery.sweep()
        finally:
            connection.close()

    thread = threading.Thread(target=tick, name="test-beat", daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(timeout=10)


@pytest.fixture
def admin_role_client(client):
    """Django's test client logged in as a user with the Admins role (not a superuser)."""
    from tests.accounts import make_user

    client.force_login(make_user("ada", "admin"))
    return client


@pytest.fixture
def editor_client(client):
    """Django's test client logged in as a user with the Editors role."""
    from tests.accounts import make_user

    client.force_login(make_user("edna", "editor"))
    return client
