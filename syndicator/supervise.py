"""The supervisor of ``syndicator run`` once it has prepared: it imports no Django (issue #16).

``syndicator run`` (syndicator/management/commands/run.py) takes the run lock, migrates and seeds
the demo in a Django process, then replaces itself (``os.execve``) with this module, handing it a
plan in the environment (``SYNDICATOR_RUN_PLAN``, JSON) and its lock's descriptor. Holding Django,
its models and its migrations only to wait for children cost ~100 MB for the whole run; this
process is ~20 MB. Same pid, same terminal, same process group: a Ctrl-C, a SIGTERM from a
service manager and the orphan handling work as before.

It starts the private Redis (syndicator/broker.py: redis-py, no Django), the demo mailbox's SMTP
server (in this process, on the port the demo target was seeded with), the web app, and, once the
web app answers, the worker with its scheduler; it stops them in the reverse order.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from syndicator.broker import BrokerError, PrivateRedis, die_with_parent

PLAN_ENV = "SYNDICATOR_RUN_PLAN"
CHILD_STOP_TIMEOUT = 20.0  # a warm Celery shutdown waits for running tasks; past this we SIGKILL
REDIS_STOP_TIMEOUT = 10.0
WEB_START_TIMEOUT = 30.0
# How often the idle supervisor looks at its children when no signal woke it: a child's exit
# sends SIGCHLD, which wakes it at once (the 0.2 s poll it had cost ~0.001 CPU-s/s doing nothing).
WATCH_INTERVAL = 5.0
PR_SET_CHILD_SUBREAPER = 36
LABELS = {"web": "web app (gunicorn)", "worker": "worker (celery)"}


class Failure(Exception):
    """The run must stop: why (the first line) and details (the rest)."""


def connect_host(host: str) -> str:
    """The address to reach a server bound to host (a wildcard bind is reached on loopback)."""
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((connect_host(host), port), timeout=0.5):
            return True
    except OSError:
        return False


def become_subreaper() -> None:
    """Adopt the orphans of our children (Linux), so that we can stop them.

    A worker killed outright leaves its pool processes (and a gunicorn master its workers) behind;
    they would go on working, and into the next run's Redis.
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


class Supervisor:
    """Runs the plan: Redis, the mailbox, the web app, the worker; stops them in order."""

    def __init__(self, plan: dict[str, Any], env: dict[str, str]) -> None:
        self.plan = plan
        self.env = env
        self.host: str = plan["host"]
        self.port: int = plan["port"]
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.redis: PrivateRedis | None = None
        self.mailbox: Any = None
        self.stop_signal: int | None = None
        self.hurry = False
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)

    # --- signals ---------------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: object) -> None:
        # Only a flag: the main loop wakes (the wakeup fd) and stops in order.
        if self.stop_signal is None:
            self.stop_signal = signum

    def _on_signal_while_stopping(self, signum: int, frame: object) -> None:
        # A second Ctrl-C: stop waiting for the web app and the worker (Redis still stops cleanly).
        self.hurry = True

    def _sleep(self, seconds: float) -> None:
        """Sleep until a signal (a stop, a child's exit: SIGCHLD) arrives, at most seconds."""
        with contextlib.suppress(InterruptedError):
            ready, _, _ = select.select([self._wake_r], [], [], seconds)
            if ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 512)

    # --- the run ---------------------------------------------------------------------------------

    def run(self) -> int:
        signal.set_wakeup_fd(self._wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # its delivery writes to the wakeup fd
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        become_subreaper()
        failure = ""
        try:
            self._start()
        except Failure as exc:
            failure = str(exc)
        except BrokerError as exc:
            failure = str(exc)
        finally:
            signal.signal(signal.SIGINT, self._on_signal_while_stopping)
            signal.signal(signal.SIGTERM, self._on_signal_while_stopping)
            self._shutdown()
            if self.mailbox is not None:
                self.mailbox.stop()
            self._release_lock()
        if failure:
            head, newline, details = failure.partition("\n")
            sys.stderr.write(f"CommandError: {head}; everything was stopped{newline}{details}\n")
            return 1
        return 0

    def _start(self) -> None:
        plan = self.plan
        if plan.get("redis"):
            self.redis = PrivateRedis(Path(plan["data_dir"]), Path(plan["redis"]))
            self.redis.start(timeout=30)
        if plan.get("mailbox"):
            from syndicator.demo_mailbox import DemoMailbox

            self.mailbox = DemoMailbox(Path(plan["mailbox"]["dir"]))
            self.mailbox.start(port=plan["mailbox"]["port"])
        if self.stop_signal is not None:
            return
        self.children["web"] = self._spawn(plan["web"])
        # The worker starts once the web app answers: the demo feeds are served by it, and a
        # first poll that found nothing listening would back the feed off for a minute.
        self._watch(until=lambda: port_open(self.host, self.port), timeout=WEB_START_TIMEOUT)
        if self.stop_signal is not None:
            return
        if not port_open(self.host, self.port):
            sys.stderr.write(f"syndicator: the web app does not answer after {WEB_START_TIMEOUT:g} s\n")
        self.children["worker"] = self._spawn(plan["worker"])
        self._say(plan["banner"])
        self._watch()

    def _spawn(self, argv: list[str]) -> subprocess.Popen[bytes]:
        # Our process group (the default), so a terminal Ctrl-C reaches it too; stdout and stderr
        # are ours, so the user sees its logs.
        return subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)

    def _failed_child(self) -> str:
        if self.redis is not None and (code := self.redis.poll()) is not None:
            tail = self.redis.log_tail(5)
            return f"the private Redis server {describe_exit(code)}; {self.redis.logfile} ends with:\n{tail}"
        for name, proc in self.children.items():
            if (code := proc.poll()) is not None:
                return f"the {LABELS[name]} {describe_exit(code)} unexpectedly"
        return ""

    def _watch(self, until: Callable[[], bool] | None = None, timeout: float | None = None) -> None:
        """Wait for a stop signal, until(), or timeout; raise Failure if a child failed."""
        deadline = time.monotonic() + timeout if timeout is not None else None
        while self.stop_signal is None:
            if failure := self._failed_child():
                raise Failure(failure)
            if until is not None and until():
                return
            if deadline is not None and time.monotonic() > deadline:
                return
            self._sleep(0.2 if until is not None else WATCH_INTERVAL)

    def _shutdown(self) -> None:
        """Stop the web app and the worker (warm shutdown), then Redis, each with a deadline."""
        running = {name: proc for name, proc in self.children.items() if proc.poll() is None}
        if running or self.redis is not None:
            self._say("syndicator: stopping the web app and the worker, then Redis")
        for proc in running.values():
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + CHILD_STOP_TIMEOUT
        while any(p.poll() is None for p in running.values()) and time.monotonic() < deadline:
            if self.hurry:
                break
            self._sleep(0.1)
        for name, proc in running.items():
            if proc.poll() is None:
                sys.stderr.write(f"syndicator: the {LABELS[name]} did not stop in time; killing it\n")
                _kill_tree(proc)
        redis_pid = self.redis.pid if self.redis else None
        known = {proc.pid for proc in self.children.values()} | ({redis_pid} if redis_pid else set())
        self._stop_orphans(known)
        if self.redis is not None:
            self.redis.stop(timeout=REDIS_STOP_TIMEOUT)

    def _stop_orphans(self, known: set[int]) -> None:
        """SIGTERM what our children left behind (a dead worker's pool), SIGKILL it after 5 s."""
        orphans = adopted_orphans(known)
        if not orphans:
            return
        sys.stderr.write(f"syndicator: stopping {len(orphans)} leftover processes: {orphans}\n")
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

    def _release_lock(self) -> None:
        """Release the run lock (the file stays: deleting it would race with the next run)."""
        fd = self.plan.get("lock_fd")
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                os.close(fd)  # closing the descriptor drops the flock

    def _say(self, text: str) -> None:
        # Flushed at once: the children write to the same terminal, unbuffered.
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def _reaped(pid: int) -> bool:
    """Reap a child if it has exited; True once it is gone."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return True


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a child and its own children (gunicorn's worker, a Celery pool), then reap it."""
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


def main() -> None:
    env = dict(os.environ)
    plan = json.loads(env.pop(PLAN_ENV))
    sys.exit(Supervisor(plan, env).run())


if __name__ == "__main__":
    main()
