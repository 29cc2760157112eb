"""``syndicator run``: migrations, a private Redis, the worker with its scheduler, and the web app.

The embedded default (DESIGN.md, "Running"): one command, one data directory, nothing else to
install. Redis is started in its own session and stopped last, so a Ctrl-C stops the web app and
the worker first and the worker can still acknowledge its tasks while it shuts down.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from syndicator.broker import PrivateRedis
from syndicator.demo import (
    DEMO_FEEDS,
    DEMO_MAILBOX_TARGET,
    demo_feed_url,
    repoint_demo_feeds,
    repoint_demo_mailbox,
    seed_demo,
)
from syndicator.demo_mailbox import free_port, mailbox_dir
from syndicator.models import Feed
from syndicator.redact import redact
from syndicator.supervise import PLAN_ENV, connect_host
from syndicator.targets.registry import formats

# The embedded default's threads (issue #16: one process each for the web app and the worker).
WEB_THREADS = 8
WORKER_THREADS = 4


class RunLock:
    """An exclusive flock on a file in the data directory: one ``syndicator run`` per directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise CommandError naming the run that holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise CommandError(
                f"another `syndicator run`{who} holds the data directory {self.path.parent}; "
                "stop it first, or set SYNDICATOR_DATA_DIR to another directory"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self) -> None:
        """Release the lock (the file stays: deleting it would race with the next run)."""
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None


def base_url(host: str, port: int) -> str:
    """The web app's URL as seen from this machine."""
    target = connect_host(host)
    return f"http://[{target}]:{port}" if ":" in target else f"http://{target}:{port}"


def allowing_own_address(env: dict[str, str], host: str) -> dict[str, str]:
    """env with the web app's own address added to SYNDICATOR_FEED_ALLOW_PRIVATE.

    The demo feeds are served by the web app, on loopback (or this machine's LAN address), where
    feeds may not reach by default (syndicator/netguard.py). The allowance is for that address,
    any port; a user's own setting is kept.
    """
    allowed = [entry for entry in env.get("SYNDICATOR_FEED_ALLOW_PRIVATE", "").split(",") if entry.strip()]
    return {**env, "SYNDICATOR_FEED_ALLOW_PRIVATE": ",".join([*allowed, connect_host(host)])}


class Command(BaseCommand):
    help = (
        "Run syndicator in one command: migrations, a private Redis broker, the worker with its "
        "scheduler, and the web app. With nothing configured it runs the demo."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8000, help="web app port (default 8000)")
        parser.add_argument("--host", default="127.0.0.1", help="web app address (default 127.0.0.1)")
        parser.add_argument("--no-demo", action="store_true", help="do not seed the demo configuration")

    def handle(self, *args: object, host: str, port: int, no_demo: bool, **options: object) -> None:
        data_dir = Path(settings.DATA_DIR)
        (data_dir / "logs").mkdir(parents=True, exist_ok=True)
        lock = RunLock(data_dir / "run.lock")
        lock.acquire()
        self._say(f"syndicator: starting; data in {data_dir}")
        self._stop_signal: int | None = None
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._check_port(host, port)
            plan = self._prepare(data_dir, host, port, no_demo)
        except BaseException:
            lock.release()
            raise
        if self._stop_signal is not None:
            lock.release()
            return
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        # Hand over to the supervisor, which imports no Django (syndicator/supervise.py): same
        # pid and process group, the lock's descriptor kept open across the exec.
        assert lock.fd is not None
        os.set_inheritable(lock.fd, True)
        plan["lock_fd"] = lock.fd
        env = {**plan.pop("env"), PLAN_ENV: json.dumps(plan)}
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, "-m", "syndicator.supervise"], env)

    def _prepare(self, data_dir: Path, host: str, port: int, no_demo: bool) -> dict[str, Any]:
        """Migrate, seed the demo, and the supervisor's plan: what to start, with which env."""
        call_command("migrate", interactive=False, verbosity=0)
        embedded = PrivateRedis(data_dir, Path(settings.EMBEDDED_REDIS_SOCKET))
        # Only the embedded default needs our own Redis; a production broker is someone else's.
        own_redis = embedded.url == settings.CELERY_BROKER_URL
        seeded = False
        mailbox: dict[str, Any] | None = None
        if not no_demo:
            # The demo email target sends here: a catch-all SMTP server on loopback, run by the
            # supervisor, whose messages the web UI's demo mailbox page reads from the data dir.
            mailbox = {"dir": str(mailbox_dir(data_dir)), "port": free_port()}
            seeded = seed_demo(base_url(host, port), mailbox_port=mailbox["port"])
            repoint_demo_feeds(base_url(host, port))
            repoint_demo_mailbox(mailbox["port"])
        own_demo = Feed.objects.filter(url__startswith=demo_feed_url(base_url(host, port), "")).exists()
        connections.close_all()  # the children open their own; we keep no SQLite handle

        env = {**os.environ, "SYNDICATOR_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
        if own_demo:  # the demo feeds this web app serves may be polled
            env = allowing_own_address(env, host)
        # Unsubscribe links in email point at this web app unless the user said otherwise; that
        # address is for this machine's browser, not for hubs and CMSs: push stays off.
        if "SYNDICATOR_PUBLIC_URL" not in env:
            env["SYNDICATOR_PUBLIC_URL"] = base_url(host, port)
            env["SYNDICATOR_PUSH"] = "0"
        # One worker, whose death stops the run: its broker's unacked messages need no scan every
        # 2 s for a dead peer's (settings.py; idle, ~0.0005 CPU-s per second, bench/memory.py).
        env.setdefault("SYNDICATOR_BROKER_RESTORE_INTERVAL", "30")
        return {
            "env": env,
            "host": host,
            "port": port,
            "data_dir": str(data_dir),
            "redis": str(embedded.socket_path) if own_redis else None,
            "mailbox": mailbox,
            "web": self._web_argv(host, port),
            "worker": self._worker_argv(data_dir),
            "banner": self._banner(host, port, data_dir, seeded, own_redis, mailbox),
        }

    # --- signals ---------------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: object) -> None:
        # Only a flag: after the migration or the seeding that runs, the run stops (nothing started).
        if self._stop_signal is None:
            self._stop_signal = signum

    # --- children --------------------------------------------------------------------------------

    def _web_argv(self, host: str, port: int) -> list[str]:
        bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        # One worker process with threads: one Django in memory instead of two (issue #16); the
        # threads serve the admin, the API and the demo feeds our own worker polls at once.
        argv = [
            sys.executable, "-m", "gunicorn", "syndicator.wsgi",
            "--bind", bind, "--workers", "1", "--worker-class", "gthread",
            "--threads", str(WEB_THREADS), "--access-logfile", "-",
        ]  # fmt: skip
        from gunicorn.config import KNOWN_SETTINGS

        # gunicorn >= 25.1 opens a control socket at one path per user (~/.gunicorn/gunicorn.ctl):
        # two runs would take it from each other, and we do not use it.
        if any(setting.name == "control_socket_disable" for setting in KNOWN_SETTINGS):
            argv.append("--no-control-socket")
        return argv

    def _worker_argv(self, data_dir: Path) -> list[str]:
        from celeryproject import ALL_QUEUES

        queues = ",".join(ALL_QUEUES)
        # One process: a thread pool (the tasks wait on the network, not the CPU; a feed task
        # fetches its feeds concurrently itself) and the scheduler as a thread of it (--beat-thread,
        # celeryproject.py), where the prefork pool and --beat made four processes of one Django.
        # SYNDICATOR_RUN_SCHEDULER=0: no scheduler (one runs elsewhere; bench/memory.py's baseline).
        beat = ["--beat-thread"] if os.environ.get("SYNDICATOR_RUN_SCHEDULER", "1") != "0" else []
        return [
            sys.executable, "-m", "celery", "-A", "celeryproject", "worker", *beat,
            "--loglevel", "INFO", "-Q", queues, "--pool", "threads", "--concurrency", str(WORKER_THREADS),
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "--schedule", str(data_dir / "celerybeat-schedule"), "--hostname", "syndicator@%h",
        ]  # fmt: skip

    # --- checks and messages ---------------------------------------------------------------------

    def _check_port(self, host: str, port: int) -> None:
        if not 0 < port < 65536:
            raise CommandError(f"--port must be between 1 and 65535, not {port}")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise CommandError(
                    f"cannot listen on {host}:{port} ({exc.strerror}); is something else using it? "
                    "Choose another port with --port"
                ) from None

    def _banner(
        self,
        host: str,
        port: int,
        data_dir: Path,
        seeded: bool,
        own_redis: bool,
        mailbox: dict[str, Any] | None,
    ) -> str:
        url = base_url(host, port)
        broker = "private Redis (in the data directory)" if own_redis else redact(settings.CELERY_BROKER_URL)
        lines = [
            "",
            "syndicator is running",
            f"  web app:     {url}/   (admin at {url}/admin/)",
            f"  data:        {data_dir}",
            f"  broker:      {broker}",
        ]
        if seeded:
            lines.append(
                f"  demo:        {len(DEMO_FEEDS)} bundled feeds delivered to {len(formats())} outbox "
                "(dry-run) targets; rendered posts show in the log within a minute"
            )
        if mailbox is not None:
            lines.append(
                f"  mailbox:     SMTP on 127.0.0.1:{mailbox['port']} takes the {DEMO_MAILBOX_TARGET!r} "
                f"target's mail; read it at {url}/admin/demo-mailbox/"
            )
        if settings.SYNDICATOR_PUSH_ENABLED:
            lines.append(f"  push:        WebSub callbacks and webhooks at {settings.SYNDICATOR_PUBLIC_URL}")
        else:
            # Said once, here: a hub or a CMS cannot call back a machine it cannot reach.
            lines.append(
                "  push:        off: WebSub and the publish webhook need SYNDICATOR_PUBLIC_URL "
                "(the URL hubs and your CMS reach this app at); feeds are polled"
            )
        lines += [
            "  admin user:  syndicator createsuperuser",
            "  the log:     syndicator log",
            "Ctrl-C to stop.",
            "",
        ]
        return "\n".join(lines)

    def _say(self, text: str) -> None:
        # Flushed at once: the children write to the same terminal, unbuffered.
        self.stdout.write(text)
        self.stdout.flush()
