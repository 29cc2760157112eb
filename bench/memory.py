"""Memory and idle cost of ``syndicator run`` (issue #16 items 1 and 6).

    .venv/bin/python bench/memory.py [--feeds N] [--idle-seconds 60] [--no-demo] [--settle 20]

Starts ``syndicator run`` on a free port in a fresh data directory (the embedded default: SQLite
and the private Redis; DATABASE_URL and CELERY_BROKER_URL are removed from its environment), waits
until it is idle (with the demo: seeded, and every delivery settled, none queued or sending; then
``--settle`` seconds more), and prints every process of the run with its RSS and PSS (from
/proc/PID/smaps_rollup; PSS shares a page among the processes that map it, so the PSS total is what
the run really costs the machine) and the totals. Then it samples utime + stime (/proc/PID/stat) of
every process over ``--idle-seconds`` and prints CPU-seconds per second, per process and in total.

``--feeds N`` adds N enabled feeds (before the run starts, on a migrated database) at this web
app's address (each answers 404: a poll that fails, and backs its feed off), polled hourly and
first due over the coming hour: the memory with many feeds being scheduled and polled (measured
after ``--settle``). ``--no-demo`` runs with nothing configured: the idle cost with nothing ever
due. ``--no-scheduler`` runs the worker without its scheduler thread (SYNDICATOR_RUN_SCHEDULER=0):
the idle floor that the scheduler's cost is counted from.
The figures vary with the machine's load: run it on a quiet machine, and compare medians.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SYNDICATOR = [sys.executable, "-c", "from syndicator.cli import main; main()"]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tree(root: int) -> list[int]:
    """root and all its descendants (by /proc/PID/stat's ppid)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, ppid in parents.items() if ppid in frontier]
        found += frontier
    return found


def describe(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [w.decode(errors="replace") for w in argv if w]
    text = " ".join(words)
    if "from syndicator.cli import main" in text:
        text = "syndicator " + " ".join(words[3:])
    return text[:90]


def memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB from smaps_rollup."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


def wait_idle(db: Path, proc: subprocess.Popen[bytes], demo: bool, timeout: float) -> None:
    """With the demo: until there are deliveries and none is queued, retrying or sending."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"syndicator run exited with {proc.returncode}")
        if not demo:
            if db.exists():
                return
        else:
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
                    total, busy = conn.execute(
                        "SELECT COUNT(*), SUM(status IN ('queued','sending','retrying'))"
                        " FROM syndicator_delivery"
                    ).fetchone()
                if total and not busy:
                    return
            except sqlite3.Error:
                pass
        time.sleep(1)
    raise SystemExit(f"not idle after {timeout:g} s")


def add_feeds(env: dict[str, str], count: int, port: int, code: Path) -> None:
    """Migrate the fresh data directory and add `count` enabled feeds, due over the next hour."""
    subprocess.run([*SYNDICATOR, "migrate", "--verbosity", "0"], env=env, cwd=code, check=True)
    script = f"""
import django, os, random
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "syndicator.settings")
django.setup()
from datetime import timedelta
from django.utils import timezone
from syndicator.models import Feed
now = timezone.now()
Feed.objects.bulk_create([
    Feed(name=f"bench {{i}}", url=f"http://127.0.0.1:{port}/demo/feeds/bench-{{i}}.xml", enabled=True,
         poll_interval=3600, next_poll_at=now + timedelta(seconds=random.uniform(0, 3600)))
    for i in range({count})
], batch_size=1000)
"""
    subprocess.run([sys.executable, "-c", script], env=env, cwd=code, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--feeds", type=int, default=0)
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--settle", type=float, default=20)
    parser.add_argument("--no-demo", action="store_true")
    parser.add_argument("--no-scheduler", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument(
        "--code", type=Path, default=ROOT, help="run another checkout's code with this venv (a baseline)"
    )
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="syndicator-membench-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL")}
    env["SYNDICATOR_DATA_DIR"] = str(data_dir)
    if args.no_scheduler:
        env["SYNDICATOR_RUN_SCHEDULER"] = "0"
    if args.feeds:
        add_feeds(env, args.feeds, port, args.code)
    argv = [*SYNDICATOR, "run", "--port", str(port)] + (["--no-demo"] if args.no_demo else [])
    log = open(data_dir / "bench-run.log", "wb")  # noqa: SIM115 (closed at the end)
    started = time.monotonic()
    proc = subprocess.Popen(
        argv, env=env, cwd=args.code, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        wait_idle(
            data_dir / "syndicator.sqlite3", proc, demo=not args.no_demo and not args.feeds, timeout=180
        )
        print(f"idle after {time.monotonic() - started:.0f} s; settling {args.settle:g} s", flush=True)
        time.sleep(args.settle)
        pids = tree(proc.pid)
        print(f"\n{'pid':>7} {'RSS MB':>8} {'PSS MB':>8}  process")
        total_rss = total_pss = 0
        for pid in pids:
            rss, pss = memory(pid)
            total_rss += rss
            total_pss += pss
            print(f"{pid:>7} {rss / 1024:8.1f} {pss / 1024:8.1f}  {describe(pid)}")
        print(f"{'total':>7} {total_rss / 1024:8.1f} {total_pss / 1024:8.1f}  ({len(pids)} processes)")

        if args.idle_seconds > 0:
            before = {pid: cpu_ticks(pid) for pid in pids}
            time.sleep(args.idle_seconds)
            after = {pid: cpu_ticks(pid) for pid in tree(proc.pid)}
            what = "CPU while polling" if args.feeds else "idle CPU"
            print(f"\n{what} over {args.idle_seconds:g} s (CPU-s per second)")
            total = 0.0
            for pid in sorted(set(before) | set(after)):
                used = (after.get(pid, before.get(pid, 0)) - before.get(pid, 0)) / CLK_TCK
                total += used
                print(f"{pid:>7} {used / args.idle_seconds:8.4f}  {describe(pid)}")
            print(f"{'total':>7} {total / args.idle_seconds:8.4f}")
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        if args.keep:
            print(f"data directory kept: {data_dir}")
        else:
            subprocess.run(["rm", "-rf", str(data_dir)], check=False)


if __name__ == "__main__":
    main()
