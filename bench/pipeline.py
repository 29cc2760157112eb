"""Pipeline benchmark: feed polling, and delivery end to end through broker, worker and outbox.

Prints (a) polls per second for unchanged feeds (HTTP 304) and for changed 50-item feeds, and
(b) deliveries per second through Redis, a real Celery worker and the outbox adapter, with the
median and p99 time from post stored to delivery sent, on two setups:

    postgres   PostgreSQL (127.0.0.1:5432, database syndicator_bench) + Redis (127.0.0.1:6379/14)
    embedded   the default: SQLite (WAL) in a fresh data directory + a private Redis on its socket

    .venv/bin/python bench/pipeline.py                      # both, then a summary table
    .venv/bin/python bench/pipeline.py --setup embedded     # one

Django reads its settings from the environment once, at import, so each setup runs in a
subprocess of its own (``--setup X``), which sets the environment before Django starts.
Polling runs in that process, one poll at a time, so polls/s is 1 / mean poll time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from e2e import bench_delivery, percentile  # bench/ is on sys.path: it holds this script

ROOT = Path(__file__).resolve().parents[1]
SETUPS = ("postgres", "embedded")
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_BENCH_DB = "syndicator_bench"
BENCH_BROKER_URL = "redis://127.0.0.1:6379/14"
SETUP_TIMEOUT = 900.0  # one whole setup, as seen by the parent
ITEMS = 50  # per changed feed body


def dur(seconds: float) -> str:
    """A duration for people: 4.2 ms, 180 ms, 12.3 s."""
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.1 else f"{seconds * 1000:.1f} ms"


def polls_line(r: dict[str, Any]) -> str:
    return (
        f"polls, one at a time: 304 {r['polls_per_s_304']:.1f}/s (median {dur(r['poll_median_s_304'])}, "
        f"p99 {dur(r['poll_p99_s_304'])}); {ITEMS} new items {r['polls_per_s_new']:.2f}/s "
        f"(median {dur(r['poll_median_s_new'])}, p99 {dur(r['poll_p99_s_new'])}, "
        f"{r['items_per_s_new']:.0f} items/s)"
    )


def delivery_line(r: dict[str, Any]) -> str:
    return (
        f"deliveries: {r['deliveries']} ({r['attempts']} attempts, {r['empty_renders']} empty texts) "
        "from first post stored to last sent "
        f"{dur(r['delivery_span_s'])} = {r['deliveries_per_s']:.1f}/s (posts stored in {dur(r['store_s'])}); "
        f"latency p50 {dur(r['latency_p50_s'])}, p99 {dur(r['latency_p99_s'])}, "
        f"max {dur(r['latency_max_s'])}; one post into an idle pipeline: p50 "
        f"{dur(r['idle_latency_p50_s'])}, max {dur(r['idle_latency_max_s'])}"
    )


# --- one setup, in its own process --------------------------------------------------------------


def configure_environment(setup: str, data_dir: Path) -> None:
    """Point Django and Celery at the setup's database and broker before Django is imported."""
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "DEBUG", "DJANGO_SETTINGS_MODULE"):
        os.environ.pop(name, None)
    os.environ["SYNDICATOR_DATA_DIR"] = str(data_dir)
    # The benchmark's feeds are served from 127.0.0.1, which feeds may not reach by default.
    os.environ["SYNDICATOR_FEED_ALLOW_PRIVATE"] = "127.0.0.0/8"
    # INFO logs a line per stored batch and per delivery: that is logging cost, not pipeline cost.
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    if setup == "postgres":
        os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{PG_BENCH_DB}"
        os.environ["CELERY_BROKER_URL"] = BENCH_BROKER_URL
        # A prefix of our own: nothing else using db 14 sees our queues, and we can delete them all.
        os.environ["SYNDICATOR_BROKER_PREFIX"] = f"syndicator-bench-{uuid.uuid4().hex[:12]}:"


def recreate_postgres_database() -> None:
    """A fresh database each run: migrations are still changing, so a kept schema could be stale."""
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PG_BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{PG_BENCH_DB}"')


def broker_facts(setup: str) -> dict[str, str]:
    """The Redis server's version, asked of the server the setup actually uses."""
    import redis
    from django.conf import settings

    if setup == "embedded":
        client = redis.Redis(unix_socket_path=str(settings.EMBEDDED_REDIS_SOCKET))
    else:
        client = redis.Redis.from_url(BENCH_BROKER_URL)
    try:
        return {"redis_server": str(client.info("server")["redis_version"])}
    finally:
        client.close()


def database_facts() -> dict[str, str]:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW server_version")
            return {"database": f"PostgreSQL {cursor.fetchone()[0]}"}
        cursor.execute("select sqlite_version()")
        return {"database": f"SQLite {cursor.fetchone()[0]} (WAL)"}


def bench_polling(n_feeds: int, n_polls: int) -> dict[str, float]:
    """(a) polls in this process, no broker: unchanged feeds answer 304, changed ones 50 new items."""
    from feedgen import wordpress_feed

    from syndicator import watch
    from syndicator.models import Feed
    from tests.feedserver import FeedServer

    results: dict[str, float] = {}
    with FeedServer() as server:
        paths = [f"/feed/{i}/" for i in range(n_feeds)]
        feeds = []
        for i, path in enumerate(paths):
            server.set(path, wordpress_feed(i, 0, ITEMS))  # with a strong ETag
            feeds.append(Feed.objects.create(url=server.url(path), name=f"bench {i}", poll_interval=3600))
        for feed in feeds:  # warm-up: the first poll parses and records the 50 items
            report = watch.poll_feed(feed.pk)
            if report.status != "ok" or len(report.new_posts) != ITEMS:
                raise RuntimeError(f"warm-up poll of {feed.url}: {report.status} {report.error}")

        def timed(prepare: Callable[[int, int], None], expect: str, new_posts: int) -> list[float]:
            durations = []
            for n in range(n_polls):
                index = n % n_feeds
                prepare(index, n // n_feeds + 1)  # outside the clock: serving is not polling
                start = time.perf_counter()
                report = watch.poll_feed(feeds[index].pk)
                durations.append(time.perf_counter() - start)
                if report.status != expect or len(report.new_posts) != new_posts:
                    raise RuntimeError(f"poll {n}: {report.status} {len(report.new_posts)} {report.error}")
            return durations

        unchanged = timed(lambda i, gen: None, "not_modified", 0)
        changed = timed(lambda i, gen: server.set(paths[i], wordpress_feed(i, gen, ITEMS)), "ok", ITEMS)
    for key, durations in (("304", unchanged), ("new", changed)):
        results[f"polls_per_s_{key}"] = len(durations) / sum(durations)
        results[f"poll_median_s_{key}"] = statistics.median(durations)
        results[f"poll_p99_s_{key}"] = percentile(durations, 99)
    results["items_per_s_new"] = results["polls_per_s_new"] * ITEMS
    return results


def run_setup(setup: str, args: argparse.Namespace) -> dict[str, Any]:
    """Everything for one setup; cleans up its worker, database connections, broker and data dir."""
    data_dir = Path(tempfile.mkdtemp(prefix="synd-bench-"))  # short: a unix socket path goes here
    configure_environment(setup, data_dir)
    private_redis = None
    try:
        if setup == "postgres":
            recreate_postgres_database()
        os.environ["DJANGO_SETTINGS_MODULE"] = "syndicator.settings"
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command

        if setup == "embedded":
            from syndicator.broker import PrivateRedis

            private_redis = PrivateRedis(data_dir, Path(settings.EMBEDDED_REDIS_SOCKET))
            private_redis.start(timeout=30)
        call_command("migrate", interactive=False, verbosity=0)
        call_command("flush", interactive=False, verbosity=0)  # empty even if a migration seeds rows
        result: dict[str, Any] = {"setup": setup, **database_facts(), **broker_facts(setup)}
        print(f"[{setup}] {result['database']}, Redis {result['redis_server']}", flush=True)
        result.update(bench_polling(args.feeds, args.polls))
        print(f"  {polls_line(result)}", flush=True)
        result.update(bench_delivery(args.targets, args.posts, args.workers_concurrency, data_dir))
        print(f"  {delivery_line(result)}", flush=True)
        return result
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut the clean-up short
        if "django" in sys.modules:
            from django.db import connections

            connections.close_all()
        if private_redis is not None:
            private_redis.stop()
        elif setup == "postgres":
            delete_broker_keys(os.environ["SYNDICATOR_BROKER_PREFIX"])
        shutil.rmtree(data_dir, ignore_errors=True)


def delete_broker_keys(prefix: str) -> None:
    """Remove the queues this run left in the shared Redis (only keys under our own prefix)."""
    import redis

    client = redis.Redis.from_url(BENCH_BROKER_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


# --- the parent: both setups, and the summary ---------------------------------------------------


def machine_facts() -> list[str]:
    import celery
    import django

    from syndicator.broker import PrivateRedis

    server = subprocess.run([PrivateRedis.binary(), "--version"], capture_output=True, text=True, check=False)
    return [
        f"machine: {os.cpu_count()} CPUs, {platform.platform()}, load average now "
        + "/".join(f"{load:.2f}" for load in os.getloadavg()),
        f"python {platform.python_version()}, django {django.get_version()}, celery {celery.__version__}, "
        f"{server.stdout.split(' sha=')[0].strip()}",
        f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}",
    ]


def summary(results: dict[str, dict[str, Any] | None], args: argparse.Namespace) -> str:
    """The table: one row per setup, then what each setup ran on."""
    columns = (
        ("setup", 9), ("polls/s 304", 11), ("p50", 8), (f"polls/s {ITEMS}-item new", 20), ("p50", 8),
        ("items/s", 7), ("deliveries/s", 12), ("latency p50", 11), ("p99", 8), ("max", 8), ("idle p50", 8),
    )  # fmt: skip
    lines = [
        f"sizes: {args.feeds} feeds, {args.polls} timed polls of each kind, {args.posts} posts x "
        f"{args.targets} outbox targets = {args.posts * args.targets} deliveries, "
        f"worker concurrency {args.workers_concurrency} (prefork)",
        " ".join(f"{name:>{width}}" if i else f"{name:<{width}}" for i, (name, width) in enumerate(columns)),
    ]
    for setup, r in results.items():
        if r is None:
            lines.append(f"{setup:<9} FAILED (see its output above)")
            continue
        cells = (
            f"{r['polls_per_s_304']:.1f}", dur(r["poll_median_s_304"]), f"{r['polls_per_s_new']:.2f}",
            dur(r["poll_median_s_new"]), f"{r['items_per_s_new']:.0f}", f"{r['deliveries_per_s']:.1f}",
            dur(r["latency_p50_s"]), dur(r["latency_p99_s"]), dur(r["latency_max_s"]),
            dur(r["idle_latency_p50_s"]),
        )  # fmt: skip
        lines.append(
            f"{setup:<9} " + " ".join(f"{c:>{w}}" for c, (_, w) in zip(cells, columns[1:], strict=True))
        )
    lines += [f"{setup}: {r['database']}, Redis {r['redis_server']}" for setup, r in results.items() if r]
    lines.append(
        "polls run one at a time in one process (polls/s = 1 / mean poll time); latency = post stored to "
        f"delivery sent, for the burst of {args.posts} posts (mostly time in the queue) and for single "
        "posts into an idle pipeline (idle p50)"
    )
    return "\n".join(lines)


def stop_child(child: subprocess.Popen[bytes], grace: float) -> None:
    """Wait grace seconds for a setup's process, then SIGTERM it (its finally blocks clean up)."""
    try:
        child.wait(grace)
    except subprocess.TimeoutExpired:
        child.terminate()
        try:
            child.wait(60)
        except subprocess.TimeoutExpired:
            child.kill()  # its worker and Redis die with it (PR_SET_PDEATHSIG)
            child.wait()


def run_all(args: argparse.Namespace, setups: tuple[str, ...]) -> int:
    """Run each setup in a child process, then print the facts and the summary table."""
    sys.path.insert(0, str(ROOT))
    from syndicator.broker import die_with_parent

    results: dict[str, dict[str, Any] | None] = {}
    passthrough = [
        f"--feeds={args.feeds}", f"--polls={args.polls}", f"--posts={args.posts}",
        f"--targets={args.targets}", f"--workers-concurrency={args.workers_concurrency}",
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="synd-bench-results-") as tmp:
        for setup in setups:
            out = Path(tmp) / f"{setup}.json"
            argv = [sys.executable, __file__, "--setup", setup, *passthrough, "--result-file", str(out)]
            # die_with_parent: a SIGKILLed bench still has its setup (and so its worker) stopped.
            child = subprocess.Popen(argv, cwd=ROOT, preexec_fn=die_with_parent)
            grace = 0.0
            try:
                child.wait(SETUP_TIMEOUT)
            except subprocess.TimeoutExpired:
                print(f"bench: {setup} took over {SETUP_TIMEOUT:g} s; stopping it", file=sys.stderr)
            except KeyboardInterrupt:
                grace = 30.0  # the child had the Ctrl-C too: let it stop its worker and Redis
                raise
            finally:
                stop_child(child, grace)
            results[setup] = json.loads(out.read_text()) if child.returncode == 0 and out.exists() else None
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "syndicator.settings")
    print("\n" + "\n".join(machine_facts()))
    print(summary(results, args))
    return 0 if all(results.values()) else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--setup", choices=SETUPS, help="run one setup (default: all, with a summary)")
    parser.add_argument("--feeds", type=int, default=20, help="feeds served and polled (default 20)")
    parser.add_argument("--polls", type=int, default=100, help="timed polls of each kind (default 100)")
    parser.add_argument("--posts", type=int, default=500, help="posts delivered end to end (default 500)")
    parser.add_argument("--targets", type=int, default=4, help="outbox targets, formats in turn (default 4)")
    parser.add_argument("--workers-concurrency", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in ("feeds", "polls", "posts", "targets", "workers_concurrency"):
        if not 0 < getattr(args, name) <= 100_000:
            parser.error(f"--{name.replace('_', '-')} must be between 1 and 100000")
    # SIGTERM runs the finally blocks that stop the setup, its worker and its private Redis.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        if args.setup is None:
            return run_all(args, SETUPS)
        result = run_setup(args.setup, args)
    except KeyboardInterrupt:  # the finally blocks have stopped what this process started
        print(f"bench: interrupted{' (' + args.setup + ')' if args.setup else ''}", file=sys.stderr)
        return 130
    if args.result_file:
        args.result_file.write_text(json.dumps(result))
    else:
        print("\n".join(machine_facts()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
