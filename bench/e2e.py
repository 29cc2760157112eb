"""End to end: posts stored as a poll stores them, delivered by a real Celery worker to outbox targets.

Used by pipeline.py once Django is set up for a setup; the worker is a subprocess with the same
environment, so it talks to the same database and broker.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
POSTS_PER_TRANSACTION = 50  # what one busy poll stores at once
READY_TIMEOUT = 60.0  # worker start-up, measured by its first delivery
DRAIN_TIMEOUT = 300.0  # every measured delivery sent
WORKER_STOP_TIMEOUT = 20.0
DB_POLL_INTERVAL = 0.05
IDLE_ROUNDS = 5  # single posts into an idle pipeline: latency without a queue in front


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (p99 of 2,000 values is the 1,980th smallest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def start_worker(concurrency: int, log_path: Path) -> subprocess.Popen[bytes]:
    """A real Celery worker consuming every queue, in its own session so we can stop its group."""
    return start_worker_with(concurrency, log_path)


def start_worker_with(concurrency: int, log_path: Path, include: str = "") -> subprocess.Popen[bytes]:
    """start_worker, also importing the module ``include`` (bench/deliveries.py's no-op task)."""
    from celeryproject import ALL_QUEUES
    from syndicator.broker import die_with_parent

    argv = [
        sys.executable, "-m", "celery", "-A", "celeryproject", "worker",
        "-Q", ",".join(ALL_QUEUES),
        "--concurrency", str(concurrency), "--loglevel", "WARNING",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
        "--hostname", f"bench-{os.getpid()}@%h",
    ]  # fmt: skip
    if include:
        argv += ["--include", include]
    with log_path.open("ab") as log:
        return subprocess.Popen(
            argv,
            cwd=ROOT,
            env=os.environ.copy(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,  # SIGKILL of this bench must not leave a worker behind
        )


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    """Warm shutdown (SIGTERM: the worker stops its pool), SIGKILL the group after WORKER_STOP_TIMEOUT."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(WORKER_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        print("bench: the worker did not stop in time; killing it", file=sys.stderr)
        # Still unreaped, so the group id is still the worker's: its pool children go with it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def store_posts(feed: Any, count: int, prefix: str) -> None:
    """Store posts and their deliveries as a poll does: batches, one transaction each."""
    from django.db import transaction
    from django.utils import timezone

    from syndicator.delivery import create_auto_deliveries
    from syndicator.models import Post

    for first in range(0, count, POSTS_PER_TRANSACTION):
        with transaction.atomic():
            posts = [
                Post.objects.create(
                    feed=feed,
                    guid=f"{prefix}-{n}",
                    url=f"https://bench.example.org/{prefix}/{n}/",
                    title=f"Winter relief update {n}: kits reach families in the northern villages",
                    summary="<p>Volunteers delivered winter kits to families this week. " * 4 + "</p>",
                    content="<p>" + "Relief work continues across the region with our partners. " * 30,
                    author="Field Team",
                    categories=["News", "Winter Campaign", "أخبار"],
                    image_url=f"https://bench.example.org/img/{n}.jpg",
                    language="en",
                    first_seen_at=timezone.now(),  # "post stored": the latency clock starts here
                )
                for n in range(first, min(first + POSTS_PER_TRANSACTION, count))
            ]
            create_auto_deliveries(posts)  # enqueued by on_commit, as after a poll


def wait_sent(feed: Any, expected: int, timeout: float, worker: subprocess.Popen[bytes], log: Path) -> None:
    """Poll the database until every delivery of feed is sent; fail loudly on anything else."""
    from django.db.models import Count

    from syndicator.models import Delivery

    deadline = time.monotonic() + timeout
    while True:
        counts = dict(
            Delivery.objects.filter(post__feed=feed)
            .order_by()
            .values("status")
            .annotate(n=Count("id"))
            .values_list("status", "n")
        )
        if counts.get("sent", 0) == expected and sum(counts.values()) == expected:
            return
        stuck = {k: v for k, v in counts.items() if k in ("failed", "uncertain", "retrying", "skipped")}
        problem = ""
        if stuck:
            sample = Delivery.objects.filter(post__feed=feed, status__in=stuck).values_list("last_error")[:3]
            problem = f"deliveries went wrong {stuck}: {[e for (e,) in sample]}"
        elif worker.poll() is not None:
            problem = f"the worker exited with code {worker.returncode}"
        elif time.monotonic() > deadline:
            problem = f"not all {expected} deliveries were sent within {timeout:g} s"
        if problem:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"{problem}; status counts {counts}\nworker log ends with:\n{tail}")
        time.sleep(DB_POLL_INTERVAL)


def latencies(feed: Any) -> list[float]:
    """Seconds from post stored (first_seen_at) to delivery sent, for every delivery of feed."""
    from syndicator.models import Delivery

    rows = Delivery.objects.filter(post__feed=feed).values_list("sent_at", "post__first_seen_at")
    return [(sent - seen).total_seconds() for sent, seen in rows]


def bench_delivery(n_targets: int, n_posts: int, concurrency: int, data_dir: Path) -> dict[str, float]:
    """(b) posts stored in batches here, delivered by a worker subprocess to outbox targets."""
    from django.db import connections
    from django.db.models import Max, Min

    from syndicator.models import Delivery, DeliveryAttempt, Feed, Target
    from syndicator.targets.registry import formats

    for i in range(n_targets):
        fmt = formats()[i % len(formats())]
        Target.objects.create(name=f"outbox-{i}-{fmt}", kind="outbox", settings={"format": fmt})
    # Never polled (disabled, discard port): they only own the posts of each phase.
    warmup, burst, idle = (
        Feed.objects.create(url=f"http://127.0.0.1:9/{name}", name=f"bench {name}", enabled=False)
        for name in ("warmup", "burst", "idle")
    )
    log = data_dir / "logs" / "worker.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    connections.close_all()  # nothing of ours is inherited by the worker
    worker = start_worker(concurrency, log)
    try:
        # Ready when a first post has gone all the way through (imports, templates, connections).
        started = time.monotonic()
        store_posts(warmup, 1, "warmup")
        wait_sent(warmup, n_targets, READY_TIMEOUT, worker, log)
        print(
            f"  worker ready: first post delivered {time.monotonic() - started:.1f} s after start", flush=True
        )

        produce_start = time.perf_counter()
        store_posts(burst, n_posts, "burst")
        store_s = time.perf_counter() - produce_start
        wait_sent(burst, n_posts * n_targets, DRAIN_TIMEOUT, worker, log)

        # The burst's latency is mostly time in the queue; one post at a time shows the pipeline's own.
        for n in range(IDLE_ROUNDS):
            store_posts(idle, 1, f"idle-{n}")
            wait_sent(idle, (n + 1) * n_targets, READY_TIMEOUT, worker, log)
    finally:
        stop_worker(worker)
    span = Delivery.objects.filter(post__feed=burst).aggregate(
        first=Min("post__first_seen_at"), last=Max("sent_at")
    )
    span_s = (span["last"] - span["first"]).total_seconds()
    burst_latency, idle_latency = latencies(burst), latencies(idle)
    return {
        "deliveries": len(burst_latency),
        # More attempts than deliveries would mean a delivery was tried twice.
        "attempts": DeliveryAttempt.objects.filter(delivery__post__feed=burst).count(),
        # The outbox stores what it rendered: an empty text would mean formatting did nothing.
        "empty_renders": Delivery.objects.filter(post__feed=burst, rendered_text="").count(),
        "store_s": store_s,
        "delivery_span_s": span_s,
        "deliveries_per_s": len(burst_latency) / span_s,
        "latency_p50_s": statistics.median(burst_latency),
        "latency_p99_s": percentile(burst_latency, 99),
        "latency_max_s": max(burst_latency),
        "idle_latency_p50_s": statistics.median(idle_latency),
        "idle_latency_max_s": max(idle_latency),
    }
