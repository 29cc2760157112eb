"""A year of a newsroom: how fast the pages people read every day answer on a database of that size.

Fills a PostgreSQL database (127.0.0.1:5432, database bench_history, made afresh) with a year of
a newsroom (bench/yearfill.py: 20,000 posts x 8 targets, ~200,000 attempts, a 10,000-subscriber
email list with per-recipient results for a sample of its deliveries), then times, in this
process, the median of 5 runs (after a warm-up) of:

    the start page (/admin/, as an admin), the delivery log's first page unfiltered and with each
    filter (status, target, feed, origin, date range, a search), a CSV export of a filtered log
    (to its first row and to its last, and its peak memory), /metrics, /api/health (an admin's
    view) and ``syndicator log --since 1h``

and says for each whether it is under 200 ms. A benchmark, not a test: it never fails on a slow
page. Pages go through Django's test Client (the whole middleware stack, no HTTP server).

    .venv/bin/python bench/history.py                  # fill, measure, drop the database
    .venv/bin/python bench/history.py --keep           # keep it, to look at it in psql
    .venv/bin/python bench/history.py --reuse          # measure the kept one again (no fill)
    .venv/bin/python bench/history.py --email-results 2000   # more per-recipient rows
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from yearfill import RARE_WORD, Made, Sizes, Year  # bench/ is on sys.path: it holds this script

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BUDGET_S = 0.200  # what each read should stay under
LOG = "/admin/syndicator/delivery/"


def dur(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.1 else f"{seconds * 1000:.1f} ms"


def configure_environment(database: str, data_dir: Path) -> None:
    """Point Django at the benchmark's database before it is imported."""
    for name in ("DATABASE_URL", "DEBUG", "DJANGO_SETTINGS_MODULE", "SYNDICATOR_METRICS_PUBLIC"):
        os.environ.pop(name, None)
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{database}"
    os.environ["SYNDICATOR_DATA_DIR"] = str(data_dir)
    os.environ["ALLOWED_HOSTS"] = "testserver,localhost"  # the test Client's host
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["DJANGO_SETTINGS_MODULE"] = "syndicator.settings"
    sys.path.insert(0, str(ROOT))


def admin_sql(*statements: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def database_exists(database: str) -> bool:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone() is not None


# --- the measurements -----------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    median: float
    low: float
    high: float
    queries: int
    slowest_sql: str
    slowest_s: float
    sql_s: float  # every query's time together, in the counted run
    note: str = ""


def measure(name: str, run: Callable[[], Any], runs: int, note: str = "") -> Row:
    """Median of ``runs`` timed runs after one warm-up; then one more run to count its queries."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    with CaptureQueriesContext(connection) as captured:
        run()
    slowest = max(captured.captured_queries, key=lambda q: float(q["time"]), default={"sql": "", "time": 0})
    row = Row(name, statistics.median(times), min(times), max(times), len(captured.captured_queries),
              slowest["sql"], float(slowest["time"]),
              sum(float(q["time"]) for q in captured.captured_queries), note)  # fmt: skip
    print(f"  {name}: {dur(row.median)}", flush=True)
    return row


def page(client: Any, url: str, expect: str = "") -> Callable[[], None]:
    def get() -> None:
        response = client.get(url)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url}: HTTP {response.status_code}")
        if expect and expect.encode() not in response.content:
            raise RuntimeError(f"GET {url}: the page lacks {expect!r}")

    return get


def export(client: Any, url: str) -> Callable[[], tuple[float, int]]:
    """Download a CSV export to the end: (seconds to the first data row, data rows)."""

    def get() -> tuple[float, int]:
        start = time.perf_counter()
        response = client.get(url)
        if response.status_code != 200 or not response.streaming:
            raise RuntimeError(f"GET {url}: HTTP {response.status_code}, streamed: {response.streaming}")
        chunks = iter(response.streaming_content)
        next(chunks)  # the header line, written before the first query
        first = -1.0
        rows = 0
        for _chunk in chunks:
            if first < 0:
                first = time.perf_counter() - start
            rows += 1
        response.close()
        return first, rows

    return get


def peak_memory(run: Callable[[], Any]) -> tuple[float, float]:
    """(Python heap peak, resident set growth) of one run, in MB."""
    hwm = Path("/proc/self/clear_refs")
    try:
        hwm.write_text("5")  # resets VmHWM, the peak resident size (Linux)
        base = _rss_kb("VmRSS")
    except OSError:
        base = None
    tracemalloc.start()
    try:
        run()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    rss = (_rss_kb("VmHWM") - base) / 1024 if base is not None else float("nan")
    return peak / 2**20, rss


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(field)


def log_command(since: str) -> Callable[[], None]:
    from django.core.management import call_command

    def run() -> None:
        out = io.StringIO()
        call_command("log", since=since, stdout=out)
        if not out.getvalue():
            raise RuntimeError("syndicator log printed nothing")

    return run


def measure_all(made: Any, runs: int) -> tuple[list[Row], list[str]]:
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.utils import timezone

    from syndicator.models import Delivery, Feed, Target

    client = Client()
    client.force_login(get_user_model().objects.get(username=made.admin_username))
    email = Target.objects.get(kind="email") if Target.objects.filter(kind="email").exists() else None
    target = Target.objects.order_by("id").first()
    feed = Feed.objects.order_by("id").first()
    half_year_ago = timezone.localdate() - timedelta(days=180)
    span = {
        "created_from": half_year_ago.isoformat(),
        "created_to": (half_year_ago + timedelta(days=29)).isoformat(),
    }
    views = [
        ("start page /admin/", "/admin/", "at the desk"),
        ("log, first page", LOG, ""),
        ("log ?status=failed", f"{LOG}?status__exact=failed", ""),
        (f"log ?target={target.name}", f"{LOG}?target__id__exact={target.pk}", ""),
        (f"log ?feed={feed.name}", f"{LOG}?post__feed__id__exact={feed.pk}", ""),
        ("log ?origin=manual", f"{LOG}?origin__exact=manual", ""),
        ("log ?period=7d", f"{LOG}?period=7d", ""),
        ("log 30 days, 6 months ago", f"{LOG}?{urlencode(span)}", ""),
        (f"log ?q={RARE_WORD}", f"{LOG}?q={RARE_WORD}", ""),
        ("/metrics", "/metrics", "syndicator_deliveries"),
        ("/api/health (admin)", "/api/health", '"targets"'),
    ]
    rows = [measure(name, page(client, url, expect), runs) for name, url, expect in views]
    rows.append(measure("syndicator log --since 1h", log_command("1h"), runs))

    export_target = email or target
    big = f"{LOG}export/?target__id__exact={export_target.pk}&status__exact=sent"
    small = f"{big}&period=7d"
    big_rows = Delivery.objects.filter(target=export_target, status="sent").count()
    download = export(client, big)
    firsts: list[float] = []

    def whole_export() -> None:
        firsts.append(download()[0])

    name = f"CSV export, {export_target.name} sent"
    whole = measure(
        f"{name}, all {big_rows:,} rows", whole_export, runs, "total; the budget is the first row's"
    )
    timed = firsts[1 : runs + 1]  # the warm-up came first, the query-counting run last
    first = Row(f"{name}, to its first row", statistics.median(timed), min(timed), max(timed),
                whole.queries, whole.slowest_sql, whole.slowest_s, whole.sql_s)  # fmt: skip
    heap_big, rss_big = peak_memory(download)
    heap_small, rss_small = peak_memory(export(client, small))
    small_rows = export(client, small)()[1]
    memory = [
        f"CSV export peak memory: {big_rows:,} rows: Python heap {heap_big:.1f} MB, "
        f"resident +{rss_big:.1f} MB; "
        f"{small_rows:,} rows (?period=7d): heap {heap_small:.1f} MB, resident +{rss_small:.1f} MB",
        f"CSV export throughput: {big_rows / whole.median:,.0f} rows/s (whole export {dur(whole.median)})",
    ]
    rows += [first, whole]
    return rows, memory


# --- the report -------------------------------------------------------------------------------------


def sizes_lines(fill_s: float | None, vacuum_s: float | None) -> list[str]:
    from django.db import connection

    from syndicator.models import Delivery, DeliveryAttempt, EmailRecipientResult, Post, Subscriber, Target

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_size_pretty(pg_database_size(current_database())), version()")
        size, version = cursor.fetchone()
    results = EmailRecipientResult.objects.count()
    with_results = EmailRecipientResult.objects.values("delivery_id").distinct().count()
    manual = Delivery.objects.filter(origin="manual").count()
    line = (
        f"sizes: {Target.objects.count()} targets, {Post.objects.count():,} posts, "
        f"{Delivery.objects.count():,} deliveries ({manual:,} manual), "
        f"{DeliveryAttempt.objects.count():,} attempts, {Subscriber.objects.count():,} subscribers, "
        f"{results:,} per-recipient results ({with_results:,} email deliveries x the list); "
        f"database {size}"
    )
    lines = [line, f"database: {version.split(' on ')[0]}"]
    if fill_s is not None:
        lines.append(f"fill: {dur(fill_s)} (COPY; per-recipient results by INSERT ... SELECT), "
                     f"then VACUUM ANALYZE {dur(vacuum_s or 0)}")  # fmt: skip
    return lines


def table(rows: list[Row], runs: int) -> list[str]:
    width = max(len(r.name) for r in rows) + 2
    columns = ("median", 9), ("min", 9), ("max", 9), ("queries", 9), ("SQL", 9), ("slowest q", 11)
    head = f"{'read':<{width}}" + "".join(f"{name:>{w}}" for name, w in columns) + "  under 200 ms"
    lines = [
        f"each: median of {runs} runs after a warm-up, in-process (Django test Client, call_command)",
        head,
    ]
    for r in rows:
        met = "met" if r.median < BUDGET_S else "NOT MET"
        if r.note:
            met = f"({r.note})"
        lines.append(
            f"{r.name:<{width}}{dur(r.median):>9}{dur(r.low):>9}{dur(r.high):>9}{r.queries:>9}"
            f"{dur(r.sql_s):>9}{dur(r.slowest_s):>11}  {met}"
        )
    return lines


def slow_queries(rows: list[Row]) -> list[str]:
    lines = []
    for r in rows:
        if r.median >= BUDGET_S and not r.note:
            sql = " ".join(r.slowest_sql.split())
            lines.append(
                f"{r.name}: slowest query {dur(r.slowest_s)}: {sql[:400]}{'...' if len(sql) > 400 else ''}"
            )
    return lines


def machine_lines() -> list[str]:
    import django

    return [
        f"machine: {os.cpu_count()} CPUs, {platform.platform()}, load average now "
        + "/".join(f"{load:.2f}" for load in os.getloadavg()),
        f"python {platform.python_version()}, django {django.get_version()}",
        f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}",
    ]


# --- main ---------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    data_dir = Path(tempfile.mkdtemp(prefix="synd-history-"))
    configure_environment(args.database, data_dir)
    fresh = not (args.reuse and database_exists(args.database))
    if fresh:
        admin_sql(
            f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)', f'CREATE DATABASE "{args.database}"'
        )
    try:
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection, connections

        call_command("migrate", interactive=False, verbosity=0)
        fill_s = vacuum_s = None
        if fresh:
            from django.utils import timezone

            print(f"filling {args.database}: a year of a newsroom", flush=True)
            start = time.perf_counter()
            made = Year(Sizes(args.posts, args.subscribers, args.email_results), timezone.now()).fill()
            fill_s = time.perf_counter() - start
            start = time.perf_counter()
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE")  # as autovacuum would have, long before a year is over
            vacuum_s = time.perf_counter() - start
        else:
            print(
                f"reusing {args.database} as it was filled (its recent windows have aged since)", flush=True
            )
            made = Made()
        print("measuring", flush=True)
        rows, memory = measure_all(made, args.runs)
        report = [*sizes_lines(fill_s, vacuum_s), *table(rows, args.runs), *memory]
        report += slow_queries(rows)
        print("\n" + "\n".join([*report, *machine_lines()]))
        connections.close_all()
        return 0
    finally:
        if not args.keep:
            from contextlib import suppress

            if "django" in sys.modules:
                from django.db import connections

                connections.close_all()
            with suppress(Exception):
                admin_sql(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--database", default="bench_history", help="database to make (default bench_history)"
    )
    parser.add_argument("--posts", type=int, default=20_000, help="posts over the year (default 20000)")
    parser.add_argument("--subscribers", type=int, default=10_000, help="email list size (default 10000)")
    parser.add_argument(
        "--email-results", type=int, default=300,
        help="email deliveries with a result for every subscriber (default 300: 3 million rows)",
    )  # fmt: skip
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each read (default 5)")
    parser.add_argument("--keep", action="store_true", help="keep the database at the end")
    parser.add_argument("--reuse", action="store_true", help="measure a kept database without filling it")
    args = parser.parse_args()
    if not args.database.replace("_", "").isalnum():
        parser.error("--database: letters, digits and _ only")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
