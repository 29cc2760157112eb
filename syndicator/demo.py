"""The demo configuration a fresh install runs with: bundled feeds delivered to outbox targets.

The feeds point at the web app's own copies of the fixtures (``/demo/feeds/<file>``), so the
demo works offline; the targets are dry-run outboxes, one per network format, so a newcomer sees
every format rendered in the delivery log within a minute of ``syndicator run``. Beside them an
email target with two subscribers really sends, to the catch-all SMTP server on loopback that
``syndicator run`` starts (syndicator/demo_mailbox.py), whose messages the web UI shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone

from syndicator.models import Feed, Subscriber, Target
from syndicator.targets.registry import OUTBOX, formats, network
from syndicator.views import DEMO_FEEDS_DIR

DEMO_FEEDS_PATH = "/demo/feeds/"
# Polled every minute: the demo feeds never change, and a newcomer's machine should stay quiet.
DEMO_POLL_INTERVAL = 60
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
DEMO_MAILBOX_TARGET = "demo-mailbox"
DEMO_SUBSCRIBERS = (("reader@newsroom.example", "A. Reader"), ("lecteur@newsroom.example", "B. Lecteur"))


@dataclass(frozen=True)
class DemoFeed:
    """One bundled feed of the demo."""

    file: str
    name: str
    language: str
    # The first poll delivers only this many newest items: enough to show the formats.
    backfill: int


DEMO_FEEDS = (
    DemoFeed("nejat-en-recent.rss", "Demo: Nejat (English)", "en", backfill=3),
    DemoFeed("nejat-ar.rss", "Demo: Nejat (Arabic)", "ar", backfill=1),
    DemoFeed("nejat-fa.rss", "Demo: Nejat (Persian)", "fa", backfill=1),
)


def demo_feed_url(base_url: str, file: str) -> str:
    """The URL at which the web app serves a bundled demo feed."""
    return f"{base_url.rstrip('/')}{DEMO_FEEDS_PATH}{file}"


DEMO_MAX_AGE = "36500d"


def seed_demo(base_url: str, mailbox_port: int | None = None) -> bool:
    """Create the demo feeds and outbox targets (and, given the demo mailbox's port, the email
    target) if no feed and no target exist; True if it did."""
    with transaction.atomic():
        if Feed.objects.exists() or Target.objects.exists():
            return False
        for feed in DEMO_FEEDS:
            Feed.objects.create(
                url=demo_feed_url(base_url, feed.file),
                name=feed.name,
                language=feed.language,
                backfill=feed.backfill,
                poll_interval=DEMO_POLL_INTERVAL,
            )
        for fmt in formats():  # one dry run per network
            # The demo feeds ship fixed dates (2005, 2025): no max_age, or every item is stale.
            demo_settings = {"format": fmt, "max_age": DEMO_MAX_AGE}
            if network(fmt).capabilities.delete:
                # The post the demo feed takes out is deleted where the format can (the default,
                # flag, is seen on the others and on the mailbox).
                demo_settings["on_unpublish"] = "delete"
            Target.objects.create(name=f"demo-{fmt}", kind=OUTBOX, settings=demo_settings)
        seed_demo_mailbox_target(mailbox_port)
    return True


def seed_demo_mailbox_target(port: int | None) -> Target | None:
    """The demo's email target, sending to the loopback mailbox on ``port``, and two subscribers."""
    if port is None:
        return None
    target = Target.objects.create(
        name=DEMO_MAILBOX_TARGET,
        kind="email",
        # security=none is allowed only to a loopback host (targets/email.py): nothing leaves.
        settings={
            "host": "127.0.0.1",
            "port": port,
            "security": "none",
            "from_address": "desk@newsroom.example",
            "from_name": "Newsroom demo",
            "max_age": DEMO_MAX_AGE,  # the demo feeds' fixed dates: else every post is stale
        },
    )
    for address, name in DEMO_SUBSCRIBERS:
        Subscriber.objects.create(target=target, email=address, name=name)
    return target


def repoint_demo_mailbox(port: int) -> int:
    """Point the demo email target at this run's mailbox port (it changes each run)."""
    moved = 0
    for target in Target.objects.filter(name=DEMO_MAILBOX_TARGET, kind="email"):
        if target.settings.get("host") in LOOPBACK_HOSTS and target.settings.get("port") != port:
            target.settings["port"] = port
            target.save(update_fields=["settings"])
            moved += 1
    return moved


def repoint_demo_feeds(base_url: str) -> int:
    """Point demo feeds seeded by an earlier run at this run's address; return how many moved.

    A later ``syndicator run --port 8001`` would otherwise poll a port nothing listens on.
    """
    moved = 0
    for feed in Feed.objects.filter(url__contains=DEMO_FEEDS_PATH):
        parts = urlsplit(feed.url)
        file = parts.path.removeprefix(DEMO_FEEDS_PATH)
        if parts.hostname not in LOOPBACK_HOSTS or "/" in file or not (DEMO_FEEDS_DIR / file).is_file():
            continue
        url = demo_feed_url(base_url, file)
        if url == feed.url or Feed.objects.filter(url=url).exists():
            continue
        # Due now: polls that failed while nothing listened may have backed the feed off for hours.
        moved += Feed.objects.filter(pk=feed.pk).update(
            url=url, next_poll_at=timezone.now(), consecutive_failures=0
        )
    return moved
