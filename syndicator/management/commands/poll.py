"""``syndicator poll``: poll one feed or every enabled feed now, in this process, and say what was new."""

from __future__ import annotations

import logging
from contextlib import nullcontext
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import CommandError, CommandParser
from django.test.utils import override_settings

from syndicator.cli_util import SyndicatorCommand, get_feed, plural
from syndicator.demo import DEMO_FEEDS_PATH, LOOPBACK_HOSTS
from syndicator.models import Feed
from syndicator.views import DEMO_FEEDS_DIR
from syndicator.watch import PollReport, poll_feed


def demo_feed_host(url: str) -> str | None:
    """The loopback host of a bundled demo feed (served by `syndicator run` itself), else None.

    `syndicator run` lets its worker reach its own address (run.allowing_own_address); this
    command, started on its own, must allow the same demo feeds and nothing else private.
    """
    parts = urlsplit(url)
    file = parts.path.removeprefix(DEMO_FEEDS_PATH)
    if parts.hostname not in LOOPBACK_HOSTS or not parts.path.startswith(DEMO_FEEDS_PATH) or "/" in file:
        return None
    return parts.hostname if (DEMO_FEEDS_DIR / file).is_file() else None


def describe(report: PollReport, *, first_poll: bool = False) -> list[str]:
    """The lines that tell a user what one poll did."""
    feed = report.feed
    head = f"feed {feed.pk} ({feed.name or feed.url})"
    if report.status == "error":
        return [f"{head}: error: {report.error}"]
    if report.status == "busy":
        return [f"{head}: skipped: another poll of this feed is in progress"]
    if report.status in ("not_modified", "unchanged") or not report.new_posts:
        reason = {"not_modified": "not modified", "unchanged": "unchanged"}.get(report.status, "no new posts")
        return [f"{head}: {reason}"]
    count, queued = len(report.new_posts), report.deliveries
    line = f"{head}: {plural(count, 'new post')}, {plural(queued, 'delivery', 'deliveries')} queued"
    if first_poll:
        # A new feed's backlog is recorded, not posted: only the --backfill newest go to targets.
        newest = f"only the newest {feed.backfill} go to targets" if feed.backfill else "not delivered"
        line += f" (first poll: backlog recorded, {newest})"
    elif queued:
        line += "; a worker will send them"
    return [line] + [f"  + {post.title or '(untitled)'}  {post.url}" for post in report.new_posts]


class Command(SyndicatorCommand):
    help = (
        "Poll feeds now, in this process (not through a worker), and print what was new. "
        "Deliveries it creates are sent by a worker. Exits 1 if a poll failed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """An optional feed id; without it, every enabled feed."""
        parser.add_argument("feed_id", nargs="?", help="the feed to poll (default: every enabled feed)")

    def handle(self, *args: Any, feed_id: str | None, **options: Any) -> None:
        """Poll the feeds one after the other and report each."""
        if feed_id is not None:
            feed_ids = [get_feed(feed_id).pk]
        else:
            feed_ids = list(Feed.objects.filter(enabled=True).order_by("id").values_list("pk", flat=True))
            if not feed_ids:
                self.stdout.write("no enabled feeds to poll (add one with `syndicator feeds add URL`)")
                return
        watch_log = logging.getLogger("syndicator.watch")
        level = watch_log.level
        if options["verbosity"] < 2:
            # The report below says what the poll's INFO log lines say; warnings still show.
            watch_log.setLevel(logging.WARNING)
        try:
            failed = sum(self.poll_one(pk) for pk in feed_ids)
        finally:
            watch_log.setLevel(level)
        if failed:
            raise CommandError(f"{failed} of {len(feed_ids)} polls failed")

    def poll_one(self, feed_id: int) -> bool:
        """Poll one feed and print its report; True if the poll failed."""
        before = Feed.objects.filter(pk=feed_id).values_list("first_polled_at", flat=True)
        if not before.exists():  # removed while the others were polled
            return False
        first_poll = before[0] is None
        url = Feed.objects.filter(pk=feed_id).values_list("url", flat=True)[0]
        host = demo_feed_host(url)
        allowed = [*settings.SYNDICATOR_FEED_ALLOW_PRIVATE, host]
        with override_settings(SYNDICATOR_FEED_ALLOW_PRIVATE=allowed) if host else nullcontext():
            report = poll_feed(feed_id)
        for line in describe(report, first_poll=first_poll):
            self.stdout.write(line)
        return report.status == "error"
