"""The machinery of the fault tests: worker processes, a broker that can crash, a sweeper, posts.

Workers are real ``celery -A celeryproject worker`` processes (prefork, their own process group,
so a kill -9 takes the pool children too) on this test's PostgreSQL database; the sweeper is a
thread doing what beat does. The networks are in networks.py.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Count, Q
from kombu import pools as kombu_pools
from kombu.utils.collections import eqhash

from syndicator.broker import PrivateRedis, die_with_parent

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = {"sent", "failed", "uncertain"}
# A warm shutdown gets this long; then the group is killed (nothing of a worker outlives its test).
WORKER_STOP_TIMEOUT = 5.0


# --- the worker -----------------------------------------------------------------------------------


def database_url() -> str:
    """DATABASE_URL of the database this test runs on (pytest-django's test_<name>)."""
    db = settings.DATABASES["default"]
    credentials = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    return f"postgres://{credentials}@{host}/{db['NAME']}"


class Worker:
    """A Celery worker subprocess consuming every queue, in a process group of its own."""

    def __init__(self, env: dict[str, str], log_path: Path, *, concurrency: int = 2, name: str = "w") -> None:
        self.env, self.log_path, self.concurrency, self.name = env, log_path, concurrency, name
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        """The worker's command line (a namespaced worker prefixes it: tests/faults/partition.py)."""
        from celeryproject import ALL_QUEUES

        return [
            sys.executable, "-m", "celery", "-A", "celeryproject", "worker",
            "-Q", ",".join(ALL_QUEUES),
            "--pool", "prefork", "--concurrency", str(self.concurrency), "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "--hostname", f"{self.name}-{os.getpid()}@%h",
        ]  # fmt: skip

    def start(self) -> Worker:
        """Start it; tasks wait in the broker until it consumes them."""
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: killpg reaches the pool children
                preexec_fn=die_with_parent,  # a killed test run leaves no worker behind
            )
        return self

    def kill(self) -> None:
        """kill -9 the whole worker: main process and pool children, nothing gets to clean up."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(WORKER_STOP_TIMEOUT)

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL the group if it lingers."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(WORKER_STOP_TIMEOUT)
        self.kill()  # also any pool child that outlived its parent

    def check(self) -> None:
        """Fail the test, with the worker's log, if the worker has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"worker {self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the worker's log."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


# --- the broker -----------------------------------------------------------------------------------


class Broker:
    """A private redis-server (AOF on, unix socket) this test may crash and restart at will."""

    def __init__(self, directory: Path) -> None:
        self.redis = PrivateRedis(directory, directory / "redis.sock")

    @property
    def url(self) -> str:
        return self.redis.url

    def start(self) -> None:
        self.redis.start()

    def crash(self) -> None:
        """kill -9 the server: what it acknowledged is in its AOF (written before it replies)."""
        assert self.redis.pid is not None
        os.kill(self.redis.pid, signal.SIGKILL)
        self.redis.stop()  # reaps it and removes the socket and pidfile a crash leaves behind

    def stop(self) -> None:
        self.redis.stop()


@contextlib.contextmanager
def app_publishing_to(url: str) -> Iterator[None]:
    """Point this process's Celery app (what delivery.enqueue publishes with) at another broker."""
    from celeryproject import app

    def forget_pools() -> None:
        # Celery caches the connection and producer pools of the URL it first used; kombu keeps
        # them in a registry by URL, where the usual broker's stay open for after this test.
        app._pool = None
        app.amqp._producer_pool = None

    old = app.conf.broker_url
    forget_pools()
    app.conf.broker_url = url
    try:
        yield
    finally:
        # Close this broker's pools and unregister them, so nothing reuses their dead sockets.
        key = eqhash(app.connection_for_write())
        for group in (kombu_pools.producers, kombu_pools.connections):
            if key in group:
                dict.pop(group, key).force_close_all()
        forget_pools()
        app.conf.broker_url = old


# --- the sweeper ----------------------------------------------------------------------------------


class Sweeper:
    """What beat does, in a thread: syndicator.delivery.sweep() every `interval` seconds.

    A database or broker that is away fails one round, not the thread.
    """

    def __init__(self, interval: float = 0.3) -> None:
        self.interval = interval
        self.rounds = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-sweeper", daemon=True)

    def start(self) -> Sweeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        from syndicator.delivery import sweep

        try:
            while not self._stop.wait(self.interval):
                try:
                    sweep()
                    self.rounds += 1
                except DatabaseError as exc:
                    self.errors.append(repr(exc))
                    with contextlib.suppress(DatabaseError):
                        connection.close()
        finally:
            connection.close()


def db_poll(query: Callable[[], Any]) -> Any:
    """query(), or None while the database is away (the connection is dropped for a fresh one)."""
    try:
        return query()
    except DatabaseError:
        with contextlib.suppress(DatabaseError):
            connection.close()
        return None


# --- posts and their state --------------------------------------------------------------------------


def store_posts(tag: str, count: int, batch: int = 50) -> None:
    """Store posts as a poll does (a transaction per batch, deliveries enqueued on commit)."""
    from syndicator.delivery import create_auto_deliveries
    from syndicator.models import Feed, Post

    # Never polled (disabled, discard port): it only owns the posts.
    feed, _ = Feed.objects.get_or_create(url=f"http://127.0.0.1:9/{tag}", defaults={"enabled": False})
    for first in range(0, count, batch):
        with transaction.atomic():
            posts = [
                Post.objects.create(
                    feed=feed,
                    guid=f"{tag}-{n}",
                    url=f"https://news.example/{tag}/{n:04d}",
                    title=f"{tag} post {n:04d}: winter kits reach the villages",
                    summary="Volunteers delivered winter kits to families this week.",
                    language="en",
                )
                for n in range(first, min(first + batch, count))
            ]
            create_auto_deliveries(posts)


def status_counts() -> Counter[str]:
    """How many deliveries are in each status."""
    from syndicator.models import Delivery

    return Counter(Delivery.objects.values_list("status", flat=True))


def settled(expected: int) -> bool:
    """Every delivery is sent, failed or uncertain, and each uncertain one its policy looked up.

    One statement, so one snapshot. Read as two (the statuses, then "any uncertain one not looked
    up yet?"), a look-up claimed in between (uncertain -> sending) made a delivery in flight pass
    for settled: the Facebook delivery once seen "back in sending" after a settled reading.
    """
    from syndicator.models import Delivery
    from syndicator.recovery import unverified

    reading = Delivery.objects.aggregate(
        total=Count("pk"), open=Count("pk", filter=~Q(status__in=TERMINAL) | unverified())
    )
    return reading["total"] == expected and reading["open"] == 0
