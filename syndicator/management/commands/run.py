"""``syndicator run``: migrations, a private Redis, the worker with its scheduler, and the web app.

The embedded default (DESIGN.md, "Running"): one command, one data directory, nothing else to
install. Redis is started in its own session and stopped last, so a Ctrl-C stops the web app and
the worker first and the worker can still acknowledge its tasks while it shuts down.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from syndicator.broker import BrokerError, PrivateRedis, die_with_parent
from syndicator.demo import (
    DEMO_FEEDS,
    DEMO_MAILBOX_TARGET,
    demo_feed_url,
    repoint_demo_feeds,
    repoint_demo_mailbox,
    seed_demo,
)
from syndicator.demo_mailbox import DemoMailbox, mailbox_dir
from syndicator.models import Feed
from syndicator.redact import redact
from syndicator.targets.registry import formats

CHILD_STOP_TIMEOUT = 20.0  # a warm Celery shutdown waits for running tasks; past this we SIGKILL
REDIS_STOP_TIMEOUT = 10.0
WEB_START_TIMEOUT = 30.0
PR_SET_CHILD_SUBREAPER = 36
LABELS = {"web": "web app (gunicorn)", "worker": "worker (celery)"}


class RunLock:
    """An exclusive flock on a file in the data directory: one ``syndicator run`` per directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

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
        self._fd = fd

    def release(self) -> None:
        """Release the lock (the file stays: deleting it would race with the next run)."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def connect_host(host: str) -> str:
    """The address to reach a server bound to host (a wildcard bind is reached on loopback)."""
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


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


def become_subreaper() -> None:
    """Adopt the orphans of our children (Linux), so that we can stop them.

    A worker killed outright leaves its embedded beat and pool processes behind; the beat would go
    on scheduling, and into the next run's Redis.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1)


def adopted_orphans(known: set[int]) -> list[int]:
    """Our child processes that we did not start (orphans we adopted as subreaper)."""
    me, found = os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after it.
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        pid = int(stat.parent.name)
        if ppid == me and pid not in known:
            found.append(pid)
    return found


def describe_exit(code: int) -> str:
    """'exited with code N' or 'was killed by SIGNAME' for a Popen return code."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((connect_host(host), port), timeout=0.5):
            return True
    except OSError:
        return False


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
        become_subreaper()
        self._say(f"syndicator: starting; data in {data_dir}")
        self._stop_signal: int | None = None
        self._hurry = False
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        children: dict[str, subprocess.Popen[bytes]] = {}
        redis: PrivateRedis | None = None
        mailbox: DemoMailbox | None = None
        failure: str | None = None
        try:
            self._check_port(host, port)
            call_command("migrate", interactive=False, verbosity=0)
            embedded = PrivateRedis(data_dir, Path(settings.EMBEDDED_REDIS_SOCKET))
            # Only the embedded default needs our own Redis; a production broker is someone else's.
            if embedded.url == settings.CELERY_BROKER_URL:
                redis = embedded
                redis.start(timeout=30)
            seeded = False
            if not no_demo:
                # The demo email target sends here: a catch-all SMTP server on loopback, in this
                # process, whose messages the web UI's demo mailbox page reads from the data dir.
                mailbox = DemoMailbox(mailbox_dir(data_dir))
                mailbox.start()
                seeded = seed_demo(base_url(host, port), mailbox_port=mailbox.port)
                repoint_demo_feeds(base_url(host, port))
                repoint_demo_mailbox(mailbox.port)
            own_demo = Feed.objects.filter(url__startswith=demo_feed_url(base_url(host, port), "")).exists()
            connections.close_all()  # the children open their own; we keep no SQLite handle
            if self._stop_signal is not None:
                return

            env = {**os.environ, "SYNDICATOR_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
            if own_demo:  # the demo feeds this web app serves may be polled
                env = allowing_own_address(env, host)
            # Unsubscribe links in email point at this web app unless the user said otherwise; that
            # address is for this machine's browser, not for hubs and CMSs: push stays off.
            if "SYNDICATOR_PUBLIC_URL" not in env:
                env["SYNDICATOR_PUBLIC_URL"] = base_url(host, port)
                env["SYNDICATOR_PUSH"] = "0"
            children["web"] = self._spawn(self._web_argv(host, port), env)
            # The worker starts once the web app answers: the demo feeds are served by it, and a
            # first poll that found nothing listening would back the feed off for a minute.
            failure = self._watch(
                children, redis, until=lambda: port_open(host, port), timeout=WEB_START_TIMEOUT
            )
            if failure or self._stop_signal is not None:
                return
            if not port_open(host, port):
                self.stderr.write(f"syndicator: the web app does not answer after {WEB_START_TIMEOUT:g} s")
            children["worker"] = self._spawn(self._worker_argv(data_dir), env)
            self._banner(host, port, data_dir, seeded, redis, mailbox)
            failure = self._watch(children, redis)
        except BrokerError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            signal.signal(signal.SIGINT, self._on_signal_while_stopping)
            signal.signal(signal.SIGTERM, self._on_signal_while_stopping)
            self._shutdown(children, redis)
            if mailbox is not None:
                mailbox.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            lock.release()
            if failure:
                head, newline, details = failure.partition("\n")
                raise CommandError(f"{head}; everything was stopped{newline}{details}")

    # --- signals ---------------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: object) -> None:
        # Only a flag: the main loop notices it within a fraction of a second and stops in order.
        if self._stop_signal is None:
            self._stop_signal = signum

    def _on_signal_while_stopping(self, signum: int, frame: object) -> None:
        # A second Ctrl-C: stop waiting for the web app and the worker (Redis still stops cleanly).
        self._hurry = True

    # --- children --------------------------------------------------------------------------------

    def _web_argv(self, host: str, port: int) -> list[str]:
        bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        argv = [
            sys.executable, "-m", "gunicorn", "syndicator.wsgi",
            "--bind", bind, "--workers", "2", "--access-logfile", "-",
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
        return [
            sys.executable, "-m", "celery", "-A", "celeryproject", "worker", "--beat",
            "--loglevel", "INFO", "-Q", queues, "--concurrency", "2",
            "--schedule", str(data_dir / "celerybeat-schedule"), "--hostname", "syndicator@%h",
        ]  # fmt: skip

    def _spawn(self, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        # Our process group (the default), so a terminal Ctrl-C reaches it too; stdout and stderr
        # are ours, so the user sees its logs.
        return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)

    def _failed_child(self, children: dict[str, subprocess.Popen[bytes]], redis: PrivateRedis | None) -> str:
        if redis is not None and (code := redis.poll()) is not None:
            tail = redis.log_tail(5)
            return f"the private Redis server {describe_exit(code)}; {redis.logfile} ends with:\n{tail}"
        for name, proc in children.items():
            if (code := proc.poll()) is not None:
                return f"the {LABELS[name]} {describe_exit(code)} unexpectedly"
        return ""

    def _watch(
        self,
        children: dict[str, subprocess.Popen[bytes]],
        redis: PrivateRedis | None,
        until: Callable[[], bool] | None = None,
        timeout: float | None = None,
    ) -> str:
        """Wait for a stop signal, until(), or timeout; return why a child failed, if one did."""
        deadline = time.monotonic() + timeout if timeout is not None else None
        while self._stop_signal is None:
            if failure := self._failed_child(children, redis):
                return failure
            if until is not None and until():
                return ""
            if deadline is not None and time.monotonic() > deadline:
                return ""
            time.sleep(0.2)
        return ""

    def _shutdown(self, children: dict[str, subprocess.Popen[bytes]], redis: PrivateRedis | None) -> None:
        """Stop the web app and the worker (warm shutdown), then Redis, each with a deadline."""
        running = {name: proc for name, proc in children.items() if proc.poll() is None}
        if running or redis is not None:
            self._say("syndicator: stopping the web app and the worker, then Redis")
        for proc in running.values():
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + CHILD_STOP_TIMEOUT
        while any(p.poll() is None for p in running.values()) and time.monotonic() < deadline:
            if self._hurry:
                break
            time.sleep(0.1)
        for name, proc in running.items():
            if proc.poll() is None:
                self.stderr.write(f"syndicator: the {LABELS[name]} did not stop in time; killing it")
                _kill_tree(proc)
        known = {proc.pid for proc in children.values()} | ({redis.pid} if redis and redis.pid else set())
        self._stop_orphans(known)
        if redis is not None:
            redis.stop(timeout=REDIS_STOP_TIMEOUT)

    def _stop_orphans(self, known: set[int]) -> None:
        """SIGTERM what our children left behind (a dead worker's beat and pool), SIGKILL it after 5 s."""
        orphans = adopted_orphans(known)
        if not orphans:
            return
        self.stderr.write(f"syndicator: stopping {len(orphans)} leftover processes: {orphans}")
        for pid in orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while orphans and time.monotonic() < deadline:
            orphans = [pid for pid in orphans if not _reaped(pid)]
            time.sleep(0.1)
        for pid in orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)

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
        redis: PrivateRedis | None,
        mailbox: DemoMailbox | None = None,
    ) -> None:
        url = base_url(host, port)
        broker = "private Redis (in the data directory)" if redis else redact(settings.CELERY_BROKER_URL)
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
                f"  mailbox:     SMTP on 127.0.0.1:{mailbox.port} takes the {DEMO_MAILBOX_TARGET!r} "
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
        self._say("\n".join(lines))

    def _say(self, text: str) -> None:
        # Flushed at once: the children write to the same terminal, unbuffered.
        self.stdout.write(text)
        self.stdout.flush()


def _reaped(pid: int) -> bool:
    """Reap a child if it has exited; True once it is gone."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return True


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a child and its own children (a Celery pool, gunicorn workers), then reap it."""
    victims = []
    try:
        import psutil

        victims = psutil.Process(proc.pid).children(recursive=True)
    except Exception:  # psutil missing or the process already gone: kill what we know
        pass
    proc.kill()
    for victim in victims:
        with contextlib.suppress(Exception):  # already gone
            victim.kill()
    proc.wait()
