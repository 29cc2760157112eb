"""Publish → sent latency: WebSub push, the signed publish webhook, and polling every 60 s.

For each way a new article reaches syndicator, it measures the time from the moment the article
is published (the feed server starts serving it; for push, the hub is told at that instant; for
the webhook, the CMS calls it at that instant) to ``Delivery.sent_at`` at two targets: an outbox
(telegram format) and a Telegram target on the Bot API emulator. The web app (gunicorn) and a
worker with its scheduler (celery --beat) run as ``syndicator run`` starts them.

    push      a feed whose headers name the hub emulator (tests/emulators/websub_hub.py); after
              the subscription is verified, each new item is published to the hub, which
              distributes it, signed, to our callback
    webhook   a feed with a Standard Webhooks-signed publish webhook, called as the WordPress
              plugin does, naming the article's URL
    poll60    --items feeds polled every 60 s (fixed interval), one new item each at a random
              moment within one minute

    .venv/bin/python bench/latency.py                    # both setups, then a summary
    .venv/bin/python bench/latency.py --setup embedded   # one

Setups as in bench/pipeline.py (embedded: SQLite + private Redis; postgres: PostgreSQL database
syndicator_latency + Redis 127.0.0.1:6379/14 under a prefix of its own).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from e2e import percentile, stop_worker  # bench/ is on sys.path: it holds this script
from pipeline import configure_environment, delete_broker_keys

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the emulators in tests/ are this benchmark's hub and Bot API
SETUPS = ("embedded", "postgres")
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_DB = "syndicator_latency"
SETUP_TIMEOUT = 1200.0
ITEM_TIMEOUT = 60.0  # one pushed or webhooked item sent everywhere
POLL_TIMEOUT = 300.0  # every polled item sent
GAP = 0.5  # seconds between two pushed (or webhooked) items: one at a time, like a newsroom


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss(prefix: str, count: int, *, start: float) -> bytes:
    """An RSS body with items 1…count of one scenario, the newest first."""
    from email.utils import formatdate

    items = "".join(
        f"<item><title>{prefix} story {n}</title><link>https://news.example/{prefix}/{n}</link>"
        f"<guid>{prefix}-{n}</guid><pubDate>{formatdate(start + n, usegmt=True)}</pubDate>"
        f"<description>Text of story {n}.</description></item>"
        for n in range(count, 0, -1)
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>{prefix}</title>'
        f"<link>https://news.example/{prefix}/</link>{items}</channel></rss>"
    ).encode()


def spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    from syndicator.broker import die_with_parent

    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            cwd=ROOT,
            env=os.environ.copy(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )


def wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.02)
    raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")


def sent_times(feed_id: int, guid: str, targets: int) -> dict[str, float] | None:
    """Target kind → sent time (unix) of a post's deliveries, once all are sent."""
    from syndicator.models import Delivery

    rows = list(
        Delivery.objects.filter(post__feed_id=feed_id, post__guid=guid, status="sent").values_list(
            "target__kind", "sent_at"
        )
    )
    return {kind: at.timestamp() for kind, at in rows} if len(rows) == targets else None


def add(samples: dict[str, list[float]], published: float, sent: dict[str, float]) -> None:
    for kind, at in sent.items():
        samples.setdefault(kind, []).append(at - published)


def bench_push(feed_server: Any, hub: Any, n: int) -> dict[str, list[float]]:
    from syndicator.models import Feed, PushSubscription

    start = time.time() - 86400
    topic = feed_server.url("/push")
    links = {"Link": f'<{hub.url}>; rel="hub", <{topic}>; rel="self"'}
    feed_server.set("/push", rss("push", 1, start=start), headers=links)
    feed = Feed.objects.create(url=topic, name="push", poll_interval=60)
    wait(lambda: PushSubscription.objects.filter(feed=feed, state="subscribed").exists(), 90, "subscription")
    hub.wait_subscribed(topic)  # the hub records it once our answer to its check is in
    samples: dict[str, list[float]] = {}
    for i in range(2, n + 2):
        body = rss("push", i, start=start)
        feed_server.set("/push", body, headers=links)
        published = time.time()
        if (statuses := hub.publish(topic, body)) != [204]:
            raise RuntimeError(f"item {i}: the callback answered {statuses}")
        add(samples, published, wait(partial(sent_times, feed.pk, f"push-{i}", 2), ITEM_TIMEOUT, "a push"))
        time.sleep(GAP)
    return samples


def bench_webhook(feed_server: Any, n: int) -> dict[str, list[float]]:
    import httpx
    from standardwebhooks.webhooks import Webhook

    from syndicator import webhook
    from syndicator.models import Feed

    start = time.time() - 86400
    feed_server.set("/hook", rss("hook", 1, start=start))
    feed = Feed.objects.create(url=feed_server.url("/hook"), name="webhook", poll_interval=3600)
    secret = webhook.configure(feed)
    wait(lambda: Feed.objects.get(pk=feed.pk).first_polled_at, 60, "the first poll")
    signer = Webhook(secret)
    samples: dict[str, list[float]] = {}
    with httpx.Client(timeout=10) as client:
        for i in range(2, n + 2):
            feed_server.set("/hook", rss("hook", i, start=start))
            published = time.time()
            body = json.dumps({"type": "post.published", "url": f"https://news.example/hook/{i}"})
            moment = datetime.now(UTC)
            headers = {
                "webhook-id": f"msg_{i}",
                "webhook-timestamp": str(int(moment.timestamp())),
                "webhook-signature": signer.sign(f"msg_{i}", moment, body),
                "content-type": "application/json",
            }
            response = client.post(webhook.url(feed), content=body, headers=headers)
            if response.status_code != 202:
                raise RuntimeError(f"webhook answered {response.status_code}: {response.text}")
            add(
                samples,
                published,
                wait(partial(sent_times, feed.pk, f"hook-{i}", 2), ITEM_TIMEOUT, "a webhook"),
            )
            time.sleep(GAP)
    return samples


def bench_polling(feed_server: Any, n: int, interval: int) -> dict[str, list[float]]:
    from syndicator.models import Feed

    start = time.time() - 86400
    feeds = []
    for k in range(n):
        feed_server.set(f"/poll/{k}", rss(f"poll{k}", 1, start=start))
        feeds.append(
            Feed.objects.create(url=feed_server.url(f"/poll/{k}"), name=f"poll {k}", poll_interval=interval)
        )
    wait(
        lambda: all(
            Feed.objects.filter(pk__in=[f.pk for f in feeds]).values_list("first_polled_at", flat=True)
        ),
        90,
        "first polls",
    )
    rng = random.Random(11)
    moments = sorted((rng.uniform(0, interval), k) for k in range(n))
    began = time.time()
    published: dict[int, float] = {}
    for offset, k in moments:
        time.sleep(max(began + offset - time.time(), 0))
        feed_server.set(f"/poll/{k}", rss(f"poll{k}", 2, start=start))
        published[k] = time.time()
    samples: dict[str, list[float]] = {}
    for k, feed in enumerate(feeds):
        remaining = max(POLL_TIMEOUT - (time.time() - began), 1)
        add(
            samples,
            published[k],
            wait(partial(sent_times, feed.pk, f"poll{k}-2", 2), remaining, "a polled item"),
        )
    return samples


def run_setup(setup: str, args: argparse.Namespace) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="synd-lat-"))
    configure_environment(setup, data_dir)
    port = free_port()
    os.environ["SYNDICATOR_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
    from tests.emulators.telegram import PUBLIC_CHANNEL, TOKEN, TelegramEmulator

    os.environ["TELEGRAM_BOT_TOKEN"] = TOKEN
    if setup == "postgres":
        import psycopg

        os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{PG_DB}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{PG_DB}"')
    children: list[subprocess.Popen[bytes]] = []
    private_redis = None
    try:
        os.environ["DJANGO_SETTINGS_MODULE"] = "syndicator.settings"
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command

        from syndicator.models import Target
        from tests.emulators.websub_hub import WebSubHub
        from tests.feedserver import FeedServer

        if setup == "embedded":
            from syndicator.broker import PrivateRedis

            private_redis = PrivateRedis(data_dir, Path(settings.EMBEDDED_REDIS_SOCKET))
            private_redis.start(timeout=30)
        call_command("migrate", interactive=False, verbosity=0)
        call_command("flush", interactive=False, verbosity=0)
        with FeedServer() as feed_server, WebSubHub() as hub, TelegramEmulator() as telegram:
            Target.objects.create(name="outbox", kind="outbox", settings={"format": "telegram"})
            Target.objects.create(
                name="telegram",
                kind="telegram",
                secret_env="TELEGRAM_BOT_TOKEN",
                settings={"chat_id": PUBLIC_CHANNEL, "base_url": telegram.base_url},
            )
            log = data_dir / "children.log"
            web = [sys.executable, "-m", "gunicorn", "syndicator.wsgi", "--bind", f"127.0.0.1:{port}"]
            children.append(spawn([*web, "--workers", "2", "--no-control-socket"], log))
            wait(lambda: _answers(port), 30, "the web app")
            from celeryproject import DELIVERY_QUEUES

            worker = [
                sys.executable, "-m", "celery", "-A", "celeryproject", "worker", "--beat",
                "--loglevel", "WARNING", "-Q", ",".join(["feeds", "maintenance", *DELIVERY_QUEUES]),
                "--concurrency", "2", "--schedule", str(data_dir / "celerybeat-schedule"),
                "--hostname", f"latency-{os.getpid()}@%h",
            ]  # fmt: skip
            children.append(spawn(worker, log))
            print(f"[{setup}] web app on {port}, worker started", flush=True)
            results: dict[str, Any] = {"setup": setup}
            for name, run in (
                ("push", lambda: bench_push(feed_server, hub, args.items)),
                ("webhook", lambda: bench_webhook(feed_server, args.items)),
                ("poll60", lambda: bench_polling(feed_server, args.items, args.poll_interval)),
            ):
                samples = run()
                results[name] = {kind: stats(values) for kind, values in samples.items()}
                print(f"  {name}: {line(results[name])}", flush=True)
            return results
    except Exception:
        if (data_dir / "children.log").exists():  # what the web app and the worker said
            print((data_dir / "children.log").read_text(errors="replace")[-4000:], file=sys.stderr)
        raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for child in reversed(children):
            stop_worker(child)
        if "django" in sys.modules:
            from django.db import connections

            connections.close_all()
        if private_redis is not None:
            private_redis.stop()
        elif setup == "postgres":
            delete_broker_keys(os.environ["SYNDICATOR_BROKER_PREFIX"])
        shutil.rmtree(data_dir, ignore_errors=True)


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def stats(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "median": statistics.median(values), "p95": percentile(values, 95)}


def line(by_kind: dict[str, dict[str, float]]) -> str:
    return "; ".join(
        f"{kind} n={s['n']} median {s['median']:.2f} s, p95 {s['p95']:.2f} s"
        for kind, s in sorted(by_kind.items())
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--setup", choices=SETUPS, help="one setup (default: both)")
    parser.add_argument("--items", type=int, default=20, help="items per way (default 20)")
    parser.add_argument("--poll-interval", type=int, default=60, help="the polled feeds' interval (60 s)")
    parser.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.setup:
        result = run_setup(args.setup, args)
        if args.result_file:
            args.result_file.write_text(json.dumps(result))
        return 0
    from syndicator.broker import die_with_parent

    results = {}
    with tempfile.TemporaryDirectory(prefix="synd-lat-results-") as tmp:
        for setup in SETUPS:
            out = Path(tmp) / f"{setup}.json"
            argv = [sys.executable, __file__, "--setup", setup, f"--items={args.items}",
                    f"--poll-interval={args.poll_interval}", "--result-file", str(out)]  # fmt: skip
            child = subprocess.Popen(argv, cwd=ROOT, preexec_fn=die_with_parent)
            try:
                child.wait(SETUP_TIMEOUT)
            except subprocess.TimeoutExpired:
                child.terminate()
                child.wait(60)
            results[setup] = json.loads(out.read_text()) if child.returncode == 0 and out.exists() else None
    print(f"\npublish → sent, {args.items} items each ({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f})")
    print(f"{'setup':<10}{'way':<9}{'target':<10}{'median':>8}{'p95':>8}")
    for setup, result in results.items():
        if result is None:
            print(f"{setup:<10}failed")
            continue
        for way in ("push", "webhook", "poll60"):
            for kind, s in sorted(result[way].items()):
                print(f"{setup:<10}{way:<9}{kind:<10}{s['median']:>7.2f}s{s['p95']:>7.2f}s")
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
