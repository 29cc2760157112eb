"""``syndicator run`` end to end: the embedded default as a newcomer starts it, as real processes.

Each test runs the real command in a fresh data directory (SQLite and the private Redis, nothing
else configured), talks to it only through the CLI and HTTP, and stops it as Ctrl-C would.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import psutil
import pytest

from syndicator.targets.registry import formats
from tests.conftest import wait_for
from tests.feedserver import FeedServer

SYNDICATOR = Path(sys.executable).with_name("syndicator")
NEW_POST = "https://www.nejatngo.org/en/?p=90006"
DEMO_TARGETS = {
    *(f"demo-{fmt}" for fmt in formats()),
    "demo-mailbox",  # the email target that sends to the demo mailbox
}
STOP_TIMEOUT = 30


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Run:
    """One ``syndicator run`` in a process group of its own, as a terminal would start it."""

    def __init__(self, env: dict[str, str], output: Path, *args: str) -> None:
        self.env = env
        self.port = free_port()
        self.output = output
        with output.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(SYNDICATOR), "run", "--port", str(self.port), *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log_tail(self, lines: int = 40) -> str:
        """The end of what the run printed, for failure messages."""
        return "\n".join(self.output.read_text(errors="replace").splitlines()[-lines:])

    def healthy(self) -> bool:
        """Whether the web app answers /healthz; fails the test at once if the run has exited."""
        if self.proc.poll() is not None:
            raise AssertionError(f"syndicator run exited with {self.proc.returncode}:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def wait_until(self, predicate: Callable[[], object], timeout: float, interval: float = 0.5) -> None:
        """Poll predicate until it holds; on timeout, fail with what the run printed."""
        try:
            wait_for(predicate, timeout=timeout, interval=interval)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nsyndicator run printed, last:\n{self.log_tail(80)}") from None

    def wait_healthy(self, timeout: float = 60) -> None:
        """Wait until the web app answers."""
        self.wait_until(self.healthy, timeout=timeout, interval=0.2)

    def descendants(self) -> list[psutil.Process]:
        """Every process the run started (the private Redis, the worker, the web app, theirs)."""
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def ctrl_c(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGINT the whole process group, as Ctrl-C in a terminal does; return the exit code."""
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"syndicator run did not stop within {timeout} s:\n{self.log_tail()}"
            ) from None

    def kill(self) -> None:
        """SIGKILL the run and everything it started (teardown after a failed test)."""
        victims = self.descendants()
        with contextlib.suppress(ProcessLookupError):  # the group may be empty already
            os.killpg(self.proc.pid, signal.SIGKILL)
        for victim in victims:  # the private Redis runs in a session of its own
            with contextlib.suppress(psutil.NoSuchProcess):
                victim.kill()
        self.proc.wait(10)


def processes_mentioning(text: str) -> list[psutil.Process]:
    """Live processes whose command line contains text (a data directory, say)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if proc.pid != os.getpid() and text in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def env(data_dir: Path) -> dict[str, str]:
    """The embedded default: no database, broker or Redis configured; a fast scheduler."""
    unset = {"DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "SYNDICATOR_PUBLIC_URL"}
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(
        SYNDICATOR_DATA_DIR=str(data_dir),
        SYNDICATOR_SCHEDULE_INTERVAL="1",
        SYNDICATOR_SWEEP_INTERVAL="1",
        # Idle ticks ten minutes apart: whatever a test creates must wake the scheduler, or it
        # waits past the test's deadline (syndicator/scheduling.py).
        SYNDICATOR_SCHEDULER_MAX_IDLE="600",
        PYTHONUNBUFFERED="1",
        # The feed server is on 127.0.0.1, which feeds may not reach by default.
        SYNDICATOR_FEED_ALLOW_PRIVATE="127.0.0.0/8",
    )
    return env


@pytest.fixture
def start_run(env: dict[str, str], tmp_path: Path, data_dir: Path) -> Iterator[Callable[..., Run]]:
    """Start ``syndicator run`` with extra arguments; everything it started is killed afterwards."""
    runs: list[Run] = []

    def start(*args: str) -> Run:
        run = Run(env, tmp_path / f"run-{len(runs)}.out", *args)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.kill()
    # A private Redis that outlived its run would still name the data directory in its title.
    for leftover in processes_mentioning(str(data_dir)):
        leftover.kill()


def cli(env: dict[str, str], *args: str) -> str:
    """Run a ``syndicator`` command and return its stdout; fail the test if it fails."""
    result = subprocess.run(
        [str(SYNDICATOR), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"syndicator {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


def json_lines(env: dict[str, str], *args: str) -> list[dict]:
    """The objects a ``--json`` command prints, one per line."""
    return [json.loads(line) for line in cli(env, *args, "--json").splitlines() if line.strip()]


def deliveries_of(env: dict[str, str], post_url: str) -> list[dict]:
    """The delivery log's rows for one post."""
    return [row for row in json_lines(env, "log", "--limit", "0") if row["post_url"] == post_url]


def add_feed_and_target(env: dict[str, str], feed_server: FeedServer) -> None:
    """A feed served by the test (its first poll records the backlog) and a Telegram-format outbox."""
    feed_server.set_file("/feed.rss", "nejat-en-recent.rss")
    cli(env, "feeds", "add", feed_server.url("/feed.rss"), "--interval", "1", "--name", "Test feed")
    cli(env, "targets", "add", "outbox", "--name", "test-outbox", "--format", "telegram")


def publish_new_post_and_wait_until_sent(run: Run, env: dict[str, str], feed_server: FeedServer) -> None:
    """After the first poll, serve the next version of the feed and wait for its new post."""
    # Its first poll records the backlog (backfill 0: nothing is delivered); later polls see no change.
    run.wait_until(lambda: json_lines(env, "feeds", "list")[0]["last_success_at"], timeout=60)
    feed_server.set_file("/feed.rss", "nejat-en-recent-next.rss")
    run.wait_until(lambda: any(row["status"] == "sent" for row in deliveries_of(env, NEW_POST)), timeout=30)


def test_run_delivers_a_new_post_once_and_ctrl_c_stops_everything(
    start_run: Callable[..., Run], env: dict[str, str], feed_server: FeedServer, data_dir: Path
) -> None:
    run = start_run("--no-demo")
    run.wait_healthy()
    add_feed_and_target(env, feed_server)

    publish_new_post_and_wait_until_sent(run, env, feed_server)
    redis_pid = int((data_dir / "redis" / "redis.pid").read_text())
    started = run.descendants()
    assert redis_pid in {p.pid for p in started}
    code = run.ctrl_c()

    assert code == 0, run.log_tail()
    rows = deliveries_of(env, NEW_POST)
    assert [(r["target"], r["status"], r["attempts"]) for r in rows] == [("test-outbox", "sent", 1)]
    said = run.output.read_text(errors="replace")
    assert said.count("need SYNDICATOR_PUBLIC_URL") == 1, "without a public URL, said once: push is off"
    assert rows[0]["text"]
    _, alive = psutil.wait_procs(started, timeout=5)
    assert alive == [], f"left running: {[p.pid for p in alive]}"
    assert processes_mentioning(str(data_dir)) == []
    assert not (data_dir / "redis.sock").exists()


def test_second_run_resumes_without_sending_again(
    start_run: Callable[..., Run], env: dict[str, str], feed_server: FeedServer
) -> None:
    first = start_run("--no-demo")
    first.wait_healthy()
    add_feed_and_target(env, feed_server)
    publish_new_post_and_wait_until_sent(first, env, feed_server)
    assert first.ctrl_c() == 0, first.log_tail()
    stopped_at = time.time()

    second = start_run("--no-demo")
    second.wait_healthy()
    # The feed is polled again after the restart (it serves the same posts) before we stop.
    second.wait_until(lambda: feed_polled_since(env, stopped_at), timeout=30)
    assert second.ctrl_c() == 0, second.log_tail()

    rows = deliveries_of(env, NEW_POST)
    assert [(r["target"], r["status"], r["attempts"]) for r in rows] == [("test-outbox", "sent", 1)]
    assert {t["name"] for t in json_lines(env, "targets", "list")} == {"test-outbox"}  # no demo


def feed_polled_since(env: dict[str, str], since: float) -> bool:
    """Whether the first feed was polled after the given Unix time."""
    last = json_lines(env, "feeds", "list")[0]["last_polled_at"]
    return bool(last) and datetime.fromisoformat(last).timestamp() > since


def test_second_concurrent_run_on_the_same_data_dir_is_refused(
    start_run: Callable[..., Run], env: dict[str, str], data_dir: Path
) -> None:
    first = start_run("--no-demo")
    first.wait_healthy()

    second = subprocess.run(
        [str(SYNDICATOR), "run", "--no-demo", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert second.returncode != 0
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert "another `syndicator run`" in lines[0] and str(data_dir) in lines[0], lines[0]
    assert first.healthy()
    assert first.ctrl_c() == 0, first.log_tail()


def test_demo_delivers_to_every_outbox_format_and_is_seeded_once(
    start_run: Callable[..., Run], env: dict[str, str]
) -> None:
    # Nothing allowed by us: `syndicator run` allows the address its demo feeds are served from.
    env.pop("SYNDICATOR_FEED_ALLOW_PRIVATE")
    run = start_run()
    run.wait_healthy()

    def sent_targets() -> set[str]:
        rows = json_lines(env, "log", "--limit", "0")
        return {r["target"] for r in rows if r["status"] == "sent" and r["text"].strip()}

    run.wait_until(lambda: sent_targets() >= DEMO_TARGETS, timeout=60, interval=1)
    # The demo email target really sent: each subscriber's message is in the demo mailbox.
    mailbox = Path(env["SYNDICATOR_DATA_DIR"]) / "demo-mailbox"
    run.wait_until(lambda: len(list(mailbox.glob("*.eml"))) >= 2, timeout=30, interval=1)
    kept = b"".join(path.read_bytes() for path in mailbox.glob("*.eml"))
    assert b"reader@newsroom.example" in kept and b"lecteur@newsroom.example" in kept
    assert b"List-Unsubscribe: <http://127.0.0.1:" in kept  # pointing at this run's web app
    assert run.ctrl_c() == 0, run.log_tail()

    # A second run finds the configuration and seeds nothing more.
    again = start_run()
    again.wait_healthy()
    assert again.ctrl_c() == 0, again.log_tail()
    assert {t["name"] for t in json_lines(env, "targets", "list")} == DEMO_TARGETS
    assert len(json_lines(env, "feeds", "list")) == 3


def cmdline(proc: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return " ".join(proc.cmdline())
    return ""


def test_run_is_five_processes_a_supervisor_without_django_and_stops_them_all(
    start_run: Callable[..., Run], env: dict[str, str], data_dir: Path
) -> None:
    env["SYNDICATOR_HEARTBEAT_INTERVAL"] = "2"
    run = start_run("--no-demo")
    run.wait_healthy()
    run.wait_until(lambda: any("celery" in cmdline(p) for p in run.descendants()), timeout=30)

    supervisor = psutil.Process(run.proc.pid)
    assert "syndicator.supervise" in cmdline(supervisor), "the command handed over to the supervisor"
    maps = Path(f"/proc/{run.proc.pid}/maps").read_text()
    assert "/django/" not in maps, "the supervisor loaded no Django"
    children = run.descendants()
    kinds = sorted(
        "redis" if "redis-server" in cmdline(p) else "celery" if "celery" in cmdline(p) else "gunicorn"
        for p in children
    )
    # Redis, gunicorn's master and its one (threaded) worker, one worker with its scheduler thread.
    assert kinds == ["celery", "gunicorn", "gunicorn", "redis"], [cmdline(p) for p in children]
    worker = next(p for p in children if "celery" in cmdline(p))
    assert "--beat-thread" in cmdline(worker) and worker.children() == [], "no pool or beat process"
    with urllib.request.urlopen(f"http://127.0.0.1:{run.port}/admin/login/", timeout=5) as page:
        assert page.status == 200, "the web UI answers"
    # The scheduler thread sends the heartbeat the desk shows admins (desk.liveness) every 2 s
    # (the worker writes one more when it is ready: the heartbeat must move on from that).
    beat_at = (
        "from syndicator.models import Heartbeat; "
        'print(Heartbeat.objects.filter(name="worker").values_list("beat_at", flat=True).first())'
    )
    run.wait_until(lambda: cli(env, "shell", "-c", beat_at).split()[-1] != "None", timeout=30, interval=1)
    first = cli(env, "shell", "-c", beat_at).split()[-2:]
    run.wait_until(lambda: cli(env, "shell", "-c", beat_at).split()[-2:] != first, timeout=15, interval=1)

    assert run.ctrl_c() == 0, run.log_tail()
    _, alive = psutil.wait_procs(children, timeout=5)
    assert alive == [], f"left running: {[p.pid for p in alive]}"
    assert not (data_dir / "redis.sock").exists()
    assert (data_dir / "run.lock").read_text() == "", "the lock was released by the supervisor"


def test_a_web_app_killed_outright_stops_the_run_and_its_orphaned_worker(
    start_run: Callable[..., Run], data_dir: Path
) -> None:
    run = start_run("--no-demo")
    run.wait_healthy()
    run.wait_until(lambda: any("celery" in cmdline(p) for p in run.descendants()), timeout=30)
    master = next(p for p in run.descendants() if "gunicorn" in cmdline(p) and p.ppid() == run.proc.pid)
    orphan = master.children()[0]
    started = run.descendants()

    master.kill()  # its worker is left behind, adopted by the supervisor

    assert run.proc.wait(STOP_TIMEOUT) != 0
    said = run.output.read_text(errors="replace")
    assert "web app (gunicorn) was killed by SIGKILL" in said and "everything was stopped" in said
    assert "leftover processes" in said and str(orphan.pid) in said
    _, alive = psutil.wait_procs(started, timeout=5)
    assert alive == [], f"left running: {[p.pid for p in alive]}"


def test_a_delivery_scheduled_while_idle_is_sent_when_due(
    start_run: Callable[..., Run], env: dict[str, str], feed_server: FeedServer
) -> None:
    run = start_run("--no-demo")
    run.wait_healthy()
    add_feed_and_target(env, feed_server)
    run.wait_until(lambda: json_lines(env, "feeds", "list")[0]["last_success_at"], timeout=60)
    backlog_post = "https://www.nejatngo.org/en/?p=90005"  # recorded by the first poll, not delivered
    # --at takes minutes: the next minute that is at least 5 s away (the run is idle till then).
    at = (datetime.now().astimezone() + timedelta(seconds=65)).replace(second=0, microsecond=0)
    cli(env, "repost", backlog_post, "--to", "test-outbox", "--at", at.isoformat(timespec="minutes"))

    def sent() -> list[dict]:
        return [r for r in deliveries_of(env, backlog_post) if r["status"] == "sent"]

    run.wait_until(sent, timeout=(at - datetime.now().astimezone()).total_seconds() + 20, interval=1)
    sent_at = datetime.fromisoformat(sent()[0]["sent_at"])
    assert sent_at >= at and sent_at - at < timedelta(seconds=10), f"due {at}, sent {sent_at}"
    assert run.ctrl_c() == 0, run.log_tail()
