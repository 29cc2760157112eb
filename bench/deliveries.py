"""Deliveries per second against bare Celery no-op tasks: same broker, worker, options and machine.

    .venv/bin/python bench/deliveries.py                    # 3 runs, medians and the ratio
    .venv/bin/python bench/deliveries.py --root ../baseline  # the same bench against another checkout

Each run, with one real ``celery -A celeryproject worker`` (bench/e2e.py's options; the no-op task
module is added with ``--include``, nothing else changes):

- deliveries: posts stored as a poll stores them (50 per transaction, deliveries created and enqueued
  on commit by create_auto_deliveries) for ``--targets`` outbox targets; timed from the first post
  stored to the last delivery sent (Delivery.sent_at, the database's clock);
- bare tasks: the same number of ``bench.noop`` tasks sent one by one to the same queue
  (deliver.outbox); the task's only work is one Redis INCR so the bench can tell when all ran;
  timed from the first sent to the last counted.

It prints both rates, the ratio deliveries/s ÷ bare tasks/s, and the worker's CPU (user + system,
all its processes) per delivery and per bare task; then the medians over the runs. PostgreSQL
(127.0.0.1:5432, database ``--database``, created afresh) and Redis 127.0.0.1:6379/``--redis-db``
under a key prefix of its own, deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
NOOP_COUNTER = "bench-noop-done"


def worker_cpu(pid: int) -> float:
    """CPU seconds (user + system) of the worker and every process of its session."""
    import psutil

    total = 0.0
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getsid(proc.pid) == pid:
                times = proc.cpu_times()
                total += times.user + times.system
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue
    return total


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, default=HERE.parent, help="the checkout to measure")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--posts", type=int, default=500)
    parser.add_argument("--targets", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--database", default="syndicator_bench_deliveries")
    parser.add_argument("--redis-db", type=int, default=14)
    args = parser.parse_args()
    root = args.root.resolve()

    prefix = f"syndicator-bench-{uuid.uuid4().hex[:12]}:"
    broker = f"redis://127.0.0.1:6379/{args.redis_db}"
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "DEBUG", "DJANGO_SETTINGS_MODULE"):
        os.environ.pop(name, None)
    data_dir = Path(f"/tmp/synd-bench-deliveries-{os.getpid()}")
    data_dir.mkdir(exist_ok=True)
    os.environ.update(
        SYNDICATOR_DATA_DIR=str(data_dir),
        LOG_LEVEL="WARNING",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{args.database}",
        CELERY_BROKER_URL=broker,
        SYNDICATOR_BROKER_PREFIX=prefix,
        BENCH_NOOP_COUNTER=prefix + NOOP_COUNTER,
        DJANGO_SETTINGS_MODULE="syndicator.settings",
        # The worker imports the checkout's code, and this directory's no-op task module.
        PYTHONPATH=os.pathsep.join([str(root), str(HERE)]),
    )
    sys.path[:0] = [str(root), str(HERE)]

    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{args.database}"')

    import django

    django.setup()
    import e2e  # bench/e2e.py: the worker's options, storing posts, waiting for them sent
    import redis
    from django.core.management import call_command
    from django.db import connections

    e2e.ROOT = root  # the worker runs in the measured checkout
    call_command("migrate", interactive=False, verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    from syndicator.models import Delivery, Feed, Target
    from syndicator.targets.registry import formats, queue_name

    client = redis.Redis.from_url(broker)
    for i in range(args.targets):
        fmt = formats()[i % len(formats())]
        Target.objects.create(name=f"outbox-{i}-{fmt}", kind="outbox", settings={"format": fmt})
    n = args.posts * args.targets
    rows: list[dict[str, float]] = []
    log = data_dir / "worker.log"
    connections.close_all()
    worker = e2e.start_worker_with(args.concurrency, log, include="noop_task")
    try:
        warm = Feed.objects.create(url="http://127.0.0.1:9/warm", name="warm", enabled=False)
        e2e.store_posts(warm, 1, "warm")
        e2e.wait_sent(warm, args.targets, e2e.READY_TIMEOUT, worker, log)
        from celeryproject import app

        queue = queue_name("outbox")

        def bare() -> tuple[float, float]:
            client.delete(os.environ["BENCH_NOOP_COUNTER"])
            cpu0, t0 = worker_cpu(worker.pid), time.perf_counter()
            for k in range(n):
                app.send_task("bench.noop", args=[k], queue=queue)
            deadline = time.monotonic() + e2e.DRAIN_TIMEOUT
            while int(client.get(os.environ["BENCH_NOOP_COUNTER"]) or 0) < n:
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise RuntimeError("bare tasks did not all run; see " + str(log))
                time.sleep(0.01)
            elapsed = time.perf_counter() - t0
            return n / elapsed, (worker_cpu(worker.pid) - cpu0) / n

        bare()  # warm-up of the no-op task's path
        for run in range(args.runs):
            feed = Feed.objects.create(url=f"http://127.0.0.1:9/run{run}", name=f"run {run}", enabled=False)
            cpu0 = worker_cpu(worker.pid)
            t0 = time.perf_counter()
            e2e.store_posts(feed, args.posts, f"run{run}")
            e2e.wait_sent(feed, n, e2e.DRAIN_TIMEOUT, worker, log)
            wall = time.perf_counter() - t0
            cpu = (worker_cpu(worker.pid) - cpu0) / n
            dps = n / wall
            assert Delivery.objects.filter(post__feed=feed, status="sent").count() == n
            tps, tcpu = bare()
            rows.append({"dps": dps, "cpu": cpu, "tps": tps, "tcpu": tcpu, "ratio": dps / tps})
            print(
                f"run {run + 1}: deliveries {dps:.1f}/s (CPU {cpu * 1000:.2f} ms each); "
                f"bare tasks {tps:.1f}/s (CPU {tcpu * 1000:.2f} ms each); ratio {dps / tps:.3f}",
                flush=True,
            )
    finally:
        e2e.stop_worker(worker)
        connections.close_all()
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
    med = {key: statistics.median(r[key] for r in rows) for key in rows[0]}
    print(
        f"median of {len(rows)} ({root}, {n} deliveries to {args.targets} outbox targets, concurrency "
        f"{args.concurrency}): deliveries {med['dps']:.1f}/s, bare tasks {med['tps']:.1f}/s, "
        f"ratio deliveries/s ÷ bare tasks/s = {med['ratio']:.3f}; "
        f"CPU per delivery {med['cpu'] * 1000:.2f} ms, per bare task {med['tcpu'] * 1000:.2f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
