"""``syndicator feeds``: add, list, remove, enable and disable the feeds syndicator watches."""

from __future__ import annotations

import re
from typing import Any, cast
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import CommandParser
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.utils import timezone

from syndicator import webhook, websub
from syndicator.cli_util import (
    SyndicatorCommand,
    add_actions,
    get_feed,
    iso,
    new_table,
    plain,
    plural,
    relative,
    styled,
)
from syndicator.errors import UserError
from syndicator.health import feed_health
from syndicator.models import Delivery, Feed

# A BCP 47-ish tag: en, fa, pt-BR, zh-Hant. Posts are routed by it, so a typo would silently match nothing.
LANGUAGE_RE = re.compile(r"[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*")
URL_MAX_LENGTH = cast(int, Feed._meta.get_field("url").max_length)  # set on the field, never None


def validate_feed_url(url: str) -> str:
    """The URL stripped, if it is http(s) with a host; else a UserError."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a port that is not a number)
    except ValueError as exc:
        raise UserError(f"bad feed URL {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        raise UserError(f"bad feed URL {url!r}: give an http:// or https:// URL with a host name")
    if len(url) > URL_MAX_LENGTH:
        raise UserError(f"feed URL too long ({len(url)} characters, at most {URL_MAX_LENGTH})")
    return url


def validate_language(language: str) -> str:
    """The language tag if it looks like one (or is empty); else a UserError."""
    language = language.strip()
    if language and not LANGUAGE_RE.fullmatch(language):
        raise UserError(f"bad --language {language!r}: give a language code such as en, ar, fa or pt-BR")
    return language


def feed_row(feed: Feed) -> dict[str, Any]:
    """A feed as the JSON object ``feeds list --json`` prints."""
    return {
        "id": feed.pk,
        "name": feed.name,
        "url": feed.url,
        "language": feed.language,
        "enabled": feed.enabled,
        "status": feed.last_status,
        "health": feed_health(feed).state,
        "poll_interval": feed.poll_interval,
        "poll_interval_max": feed.poll_interval_max,
        "backfill": feed.backfill,
        "last_polled_at": iso(feed.last_polled_at),
        "last_success_at": iso(feed.last_success_at),
        "next_poll_at": iso(feed.next_poll_at),
        "last_http_status": feed.last_http_status,
        "consecutive_failures": feed.consecutive_failures,
        "last_error": feed.last_error,
        "push": str(websub.push_state(feed)),
        "last_push_at": iso(feed.last_push_at),
    }


def next_poll(feed: Feed) -> str:
    """When the scheduler polls the feed next, for the table."""
    if not feed.enabled:
        return ""
    return relative(feed.next_poll_at) if feed.next_poll_at > timezone.now() else "due"


def poll_bounds(interval: int | None, shortest: int | None, longest: int | None) -> tuple[int, int | None]:
    """(poll_interval, poll_interval_max) from the options: --interval fixes it, else adaptive."""
    if interval is not None:
        if shortest is not None or longest is not None:
            raise UserError("give either --interval (fixed) or --min-interval/--max-interval (adaptive)")
        if interval < 1:
            raise UserError(f"bad --interval {interval}: at least 1 second")
        return interval, None
    shortest = settings.SYNDICATOR_FEED_MIN_INTERVAL if shortest is None else shortest
    longest = settings.SYNDICATOR_FEED_MAX_INTERVAL if longest is None else longest
    if shortest < 1:
        raise UserError(f"bad --min-interval {shortest}: at least 1 second")
    if longest < shortest:
        raise UserError(f"bad --max-interval {longest}: at least --min-interval ({shortest})")
    return shortest, longest


class Command(SyndicatorCommand):
    help = "Add, list and remove the RSS/Atom feeds syndicator watches."

    def add_arguments(self, parser: CommandParser) -> None:
        """Subcommands: add, list, remove, enable, disable."""
        action = add_actions(parser)
        add = action("add", "watch a new feed; prints its id")
        add.add_argument("url", help="http(s) URL of the RSS or Atom feed")
        add.add_argument("--name", default="", help="a name to show instead of the URL")
        add.add_argument("--language", default="", help="edition language (en, ar, fa, ...) for routing")
        add.add_argument(
            "--interval",
            type=int,
            default=None,
            help="poll every this many seconds, whatever the feed's rhythm (default: adaptive polling)",
        )
        add.add_argument(
            "--min-interval",
            type=int,
            default=None,
            help=f"adaptive polling: at most this often (default {settings.SYNDICATOR_FEED_MIN_INTERVAL} s)",
        )
        add.add_argument(
            "--max-interval",
            type=int,
            default=None,
            help=f"adaptive polling: at least this often (default {settings.SYNDICATOR_FEED_MAX_INTERVAL} s)",
        )
        add.add_argument(
            "--backfill",
            type=int,
            default=0,
            help="how many of the newest items the first poll delivers (default 0: only record them)",
        )

        listing = action("list", "show the feeds and how their polls went")
        listing.add_argument("--json", action="store_true", help="one JSON object per line")

        hook = action("webhook", "print the feed's signed publish webhook: its URL and secret")
        hook.add_argument("feed_id", help="the feed's id (see `feeds list`)")
        hook.add_argument("--rotate", action="store_true", help="make a new secret (the old one stops)")

        for name, text in (
            ("remove", "stop watching a feed and delete its posts (refused once one has deliveries)"),
            ("enable", "resume polling a disabled feed"),
            ("disable", "stop polling a feed, keeping its posts and delivery log"),
        ):
            sub = action(name, text)
            sub.add_argument("feed_id", help="the feed's id (see `feeds list`)")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        """Dispatch to the subcommand."""
        getattr(self, f"handle_{action}")(**options)

    def handle_add(
        self,
        *,
        url: str,
        name: str,
        language: str,
        interval: int | None,
        min_interval: int | None,
        max_interval: int | None,
        backfill: int,
        **_: Any,
    ) -> None:
        """Create a feed; the scheduler polls it at once."""
        url = validate_feed_url(url)
        language = validate_language(language)
        interval, longest = poll_bounds(interval, min_interval, max_interval)
        if backfill < 0:
            raise UserError(f"bad --backfill {backfill}: 0 or more")
        if existing := Feed.objects.filter(url=url).first():
            raise UserError(f"feed {url} is already watched (id {existing.pk})")
        try:
            with transaction.atomic():
                feed = Feed.objects.create(
                    url=url,
                    name=name.strip()[:200],
                    language=language,
                    poll_interval=interval,
                    poll_interval_max=longest,
                    backfill=backfill,
                )
        except IntegrityError:  # added concurrently between the check and the insert
            raise UserError(f"feed {url} is already watched") from None
        self.stdout.write(str(feed.pk))

    def handle_list(self, *, json: bool, **_: Any) -> None:
        """Print every feed."""
        feeds = list(Feed.objects.order_by("id"))
        if json:
            self.write_json_lines(feed_row(f) for f in feeds)
            return
        if not feeds:
            self.stdout.write("no feeds yet: add one with `syndicator feeds add URL`")
            return
        table = new_table(
            "id",
            "name",
            "url",
            "lang",
            "enabled",
            "health",
            "last poll",
            "next poll",
            "push",
            "last push",
            "failures",
            "last error",
        )
        for feed in feeds:
            table.add_row(
                str(feed.pk),
                plain(feed.name),
                plain(feed.url),
                plain(feed.language),
                "yes" if feed.enabled else styled("no", "disabled"),
                styled(feed_health(feed).state),
                relative(feed.last_polled_at),
                next_poll(feed),
                plain(str(websub.push_state(feed))[:200]),
                relative(feed.last_push_at),
                styled(str(feed.consecutive_failures), "error") if feed.consecutive_failures else "0",
                plain(feed.last_error[:200]),
            )
        self.write_table(table)

    def handle_webhook(self, *, feed_id: str, rotate: bool, **_: Any) -> None:
        """Print the webhook's URL and secret (the only place the secret is ever shown)."""
        feed = get_feed(feed_id)
        secret = webhook.configure(feed, rotate=rotate)
        self.stdout.write(f"url: {webhook.url(feed)}")
        self.stdout.write(f"secret: {secret}")
        if not websub.enabled():
            self.stderr.write("note: set SYNDICATOR_PUBLIC_URL to the address your CMS reaches syndicator at")

    def handle_remove(self, *, feed_id: str, **_: Any) -> None:
        """Delete a feed and its posts, unless a post has deliveries (the log is kept)."""
        feed = get_feed(feed_id)
        posts = feed.posts.count()
        # The log is append-only (Delivery.post is PROTECT): say what to do instead.
        if deliveries := Delivery.objects.filter(post__feed=feed).count():
            raise UserError(
                f"feed {feed.pk} ({feed}) has {plural(deliveries, 'delivery', 'deliveries')} in the delivery "
                f"log, which is kept: disable it instead (`syndicator feeds disable {feed.pk}`)"
            )
        pk, label = feed.pk, str(feed)
        try:
            feed.delete()
        except ProtectedError:  # a post carried by an email digest (DigestPost) is in the log too
            raise UserError(
                f"feed {feed.pk} ({feed}) has posts in the delivery log (an email digest carried them), "
                f"which is kept: disable it instead (`syndicator feeds disable {feed.pk}`)"
            ) from None
        self.stdout.write(f"removed feed {pk} ({label}) and its {plural(posts, 'post')}")

    def handle_enable(self, *, feed_id: str, **_: Any) -> None:
        """Enable a feed."""
        feed = get_feed(feed_id)
        Feed.objects.filter(pk=feed.pk).update(enabled=True)
        self.stdout.write(f"feed {feed.pk} enabled")

    def handle_disable(self, *, feed_id: str, **_: Any) -> None:
        """Disable a feed."""
        feed = get_feed(feed_id)
        Feed.objects.filter(pk=feed.pk).update(enabled=False)
        self.stdout.write(f"feed {feed.pk} disabled")
