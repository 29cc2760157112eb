"""Polling at scale: N feeds every 5 minutes, each answering 304 after a set latency, polled by a
real worker and beat laid out as `syndicator run` lays them out (issue 16, item 2).

Prints polls/s, lateness (when the feed server saw the poll minus when the feed was due: p50,
p99, max), the CPU the worker's processes used as a share of the machine, and their RSS.

    .venv/bin/python bench/feeds_scale.py --feeds 10000                  # embedded: SQLite + private Redis
    .venv/bin/python bench/feeds_scale.py --feeds 10000 --setup postgres # PostgreSQL + Redis

The feeds' first due times are spread evenly over one interval, starting once the worker is up,
and the run lasts `--duration` seconds (150): the load is the full rate (N / 300 polls a second)
for that long, without waiting a whole cycle. Each feed is due once in the window; one that was
never polled by its end counts as late by (end - due) and is reported as missed. The feeds are
spread over `--hosts` loopback addresses (127.0.0.1 ...), as feeds come from many sites.

The worker is started with the command line syndicator/management/commands/run.py builds (so
this follows the embedded layout as it changes); for `postgres` the same worker is pointed at
PostgreSQL (database h_poll_bench, made afresh) and Redis 127.0.0.1:6379/5 (a key prefix of its
own). To measure another checkout, run this file with that checkout first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

INTERVAL = 300
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_BENCH_DB = "h_poll_bench"
BENCH_BROKER_URL = "redis://127.0.0.1:6379/5"
ETAG = '"v1"'
BODY = (
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>bench</title><link>https://bench.example/</link>'
    b"<item><guid>one</guid><title>One</title><link>https://bench.example/one</link></item></channel></rss>"
)


# --- the feed server (its own process: its CPU is not the worker's) -----------------------------


def serve(hosts: int, port: int, latency: float, ready: Path) -> None:
    """Answer GET /feed/<n> after `latency`: 304 to If-None-Match "v1", else the body with that
    ETag; record when each request arrived. GET /_log answers the record as JSON."""
    arrivals: list[tuple[str, float]] = []
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                arrived = time.time()
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {
                    k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)
                }
                if path == "/_log":
                    data = json.dumps({"arrivals": arrivals, "connections": connections}).encode()
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(data)
                    )
                    writer.write(data)
                    await writer.drain()
                    break
                arrivals.append((path, arrived))
                await asyncio.sleep(latency)
                if headers.get("if-none-match") == ETAG:
                    writer.write(b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\n\r\n')
                else:
                    writer.write(
                        b'HTTP/1.1 200 OK\r\nETag: "v1"\r\nContent-Type: application/rss+xml\r\n'
                        b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
                    )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        addresses = [f"127.0.0.{n}" for n in range(1, hosts + 1)]
        server = await asyncio.start_server(handle, host=addresses, port=port, backlog=1024)
        ready.write_text("ready")
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- the run -----------------------------------------------------------------------------------


def configure_environment(setup: str, data_dir: Path) -> None:
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "DEBUG", "DJANGO_SETTINGS_MODULE"):
        os.environ.pop(name, None)
    os.environ["SYNDICATOR_DATA_DIR"] = str(data_dir)
    os.environ["SYNDICATOR_FEED_ALLOW_PRIVATE"] = "127.0.0.0/8"
    os.environ["LOG_LEVEL"] = "WARNING"  # a line per task is logging cost, not polling cost
    if setup == "postgres":
        os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{PG_BENCH_DB}"
        os.environ["CELERY_BROKER_URL"] = BENCH_BROKER_URL
        os.environ["SYNDICATOR_BROKER_PREFIX"] = f"syndicator-feeds-bench-{uuid.uuid4().hex[:12]}:"


def recreate_postgres_database() -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PG_BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{PG_BENCH_DB}"')


def tree(pid: int) -> list[Any]:
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(procs: list[Any]) -> dict[int, float]:
    import psutil

    seconds = {}
    for proc in procs:
        try:
            times = proc.cpu_times()
            seconds[proc.pid] = times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return seconds


def rss_mb(procs: list[Any]) -> float:
    import psutil

    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total / 2**20


def pss_mb(procs: list[Any]) -> float:
    """Proportional set size, summed: a shared page counts once over the processes sharing it."""
    import psutil

    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, AttributeError):
            total += proc.memory_full_info().pss
    return total / 2**20


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(int(len(ordered) * p / 100), len(ordered) - 1)]


def run(args: argparse.Namespace) -> dict[str, Any]:
    import psutil

    data_dir = Path(tempfile.mkdtemp(prefix="fs-", dir="/tmp"))  # short: the Redis socket path
    configure_environment(args.setup, data_dir)
    port = free_port()
    ready = data_dir / "server.ready"
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(args.hosts), str(port), str(args.latency), str(ready)]
    )
    worker = None
    redis = None
    try:
        if args.setup == "postgres":
            recreate_postgres_database()
        import django

        os.environ["DJANGO_SETTINGS_MODULE"] = "syndicator.settings"
        django.setup()
        from django.conf import settings
        from django.core.management import call_command
        from django.db import connections

        from syndicator.broker import PrivateRedis
        from syndicator.management.commands.run import Command
        from syndicator.models import Feed

        call_command("migrate", interactive=False, verbosity=0)
        if args.setup == "embedded":
            redis = PrivateRedis(data_dir, Path(settings.EMBEDDED_REDIS_SOCKET))
            redis.start(timeout=30)
        while not ready.exists():
            time.sleep(0.05)
        start = datetime.now(UTC) + timedelta(seconds=args.warmup)
        feeds = [
            Feed(
                url=f"http://127.0.0.{1 + n % args.hosts}:{port}/feed/{n}",
                name=f"bench {n}",
                poll_interval=INTERVAL,
                next_poll_at=start + timedelta(seconds=INTERVAL * n / args.feeds),
                etag=ETAG,
                body_hash="0" * 64,
                first_polled_at=start - timedelta(days=1),
                last_status=Feed.Status.NOT_MODIFIED,
            )
            for n in range(args.feeds)
        ]
        Feed.objects.bulk_create(feeds, batch_size=500)
        due = {f"/feed/{n}": start.timestamp() + INTERVAL * n / args.feeds for n in range(args.feeds)}
        connections.close_all()
        argv = Command()._worker_argv(data_dir)
        import syndicator

        checkout = Path(syndicator.__file__).resolve().parents[1]  # celeryproject.py is there
        path = os.pathsep.join(filter(None, [str(checkout), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}
        log = open(data_dir / "worker.log", "wb")  # noqa: SIM115 - closed with the worker
        worker = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=checkout
        )
        window_start = start.timestamp()
        window_end = window_start + args.duration
        time.sleep(max(window_start - time.time(), 0))
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited: see {data_dir / 'worker.log'}")
        procs = tree(worker.pid)
        cpu_before = cpu_seconds(procs)
        machine_before = psutil.cpu_times()
        peak_rss = 0.0
        while time.time() < window_end:
            time.sleep(min(5.0, max(window_end - time.time(), 0)))
            peak_rss = max(peak_rss, rss_mb(tree(worker.pid)))
        procs = tree(worker.pid)
        cpu_after = cpu_seconds(procs)
        machine_after = psutil.cpu_times()
        end_rss, end_pss = rss_mb(procs), pss_mb(procs)
        time.sleep(args.grace)  # polls of the window's last due feeds that are a little late
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_log", timeout=30) as answer:
            record = json.loads(answer.read())
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
        if redis is not None:
            redis.stop()
        server.terminate()
        server.wait(10)

    first_seen: dict[str, float] = {}
    for path, at in record["arrivals"]:
        first_seen.setdefault(path, at)
    in_window = [path for path, at in due.items() if at < window_end]
    lateness, missed = [], 0
    seen_by = window_end + args.grace
    for path in in_window:
        at = first_seen.get(path)
        if at is None:
            missed += 1
            at = seen_by
        lateness.append(at - due[path])
    polls = sum(1 for _, at in record["arrivals"] if window_start <= at < window_end)
    used = sum(cpu_after.get(pid, 0.0) - cpu_before.get(pid, 0.0) for pid in cpu_after)
    cores = psutil.cpu_count() or 1
    busy = lambda t: t.user + t.system + t.nice + getattr(t, "irq", 0) + getattr(t, "softirq", 0)  # noqa: E731
    machine_busy = (busy(machine_after) - busy(machine_before)) / args.duration / cores * 100
    return {
        "setup": args.setup,
        "feeds": args.feeds,
        "latency_s": args.latency,
        "duration_s": args.duration,
        "polls_per_s": polls / args.duration,
        "expected_per_s": args.feeds / INTERVAL,
        "due_in_window": len(in_window),
        "missed": missed,
        "late_p50_s": statistics.median(lateness),
        "late_p99_s": percentile(lateness, 99),
        "late_max_s": max(lateness),
        "worker_cpu_pct": used / args.duration / cores * 100,
        "cpu_per_poll_ms": used / max(polls, 1) * 1000,
        "machine_busy_pct": machine_busy,
        "worker_rss_mb": end_rss,
        "worker_pss_mb": end_pss,
        "worker_peak_rss_mb": peak_rss,
        "worker_processes": len(procs),
        "connections": record["connections"],
        "cores": cores,
        "checkout": str(checkout),
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        hosts, port, latency, ready = sys.argv[2:6]
        serve(int(hosts), int(port), float(latency), Path(ready))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds before each answer (0.2)")
    parser.add_argument("--duration", type=float, default=150.0, help="measured seconds (150)")
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds for the worker to start (20)")
    parser.add_argument("--grace", type=float, default=15.0, help="seconds a late poll may still come (15)")
    parser.add_argument("--hosts", type=int, default=50, help="loopback addresses serving the feeds (50)")
    parser.add_argument("--setup", choices=("embedded", "postgres"), default="embedded")
    args = parser.parse_args()
    r = run(args)
    print(
        f"{r['setup']}: {r['feeds']} feeds / {INTERVAL} s, {r['latency_s'] * 1000:.0f} ms per 304, "
        f"{r['duration_s']:.0f} s measured on {r['cores']} cores ({r['checkout']})\n"
        f"  polls/s {r['polls_per_s']:.1f} (due rate {r['expected_per_s']:.1f}); "
        f"lateness p50 {r['late_p50_s']:.2f} s, p99 {r['late_p99_s']:.2f} s, max {r['late_max_s']:.2f} s; "
        f"missed {r['missed']} of {r['due_in_window']}\n"
        f"  worker CPU {r['worker_cpu_pct']:.1f}% of the machine ({r['cpu_per_poll_ms']:.1f} ms per poll; "
        f"machine busy {r['machine_busy_pct']:.0f}%, others included); "
        f"worker RSS {r['worker_rss_mb']:.0f} MB "
        f"in {r['worker_processes']} processes (peak {r['worker_peak_rss_mb']:.0f} MB; "
        f"PSS {r['worker_pss_mb']:.0f} MB); "
        f"{r['connections']} TCP connections",
        flush=True,
    )
    print("json " + json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
