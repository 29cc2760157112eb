"""Polling feeds: lease a feed, fetch it, store new posts with their deliveries, back off on errors.

An item is new when its feed has no post with its guid, and none with its link and title either.
The second identity is for feeds whose guids change on every fetch (a CMS that puts a session id
or the build time in them, a migration that renumbered everything): by guid alone every item
would look new on every poll and be posted again each time. Two items with the same link and the
same title are the same post in practice; a link that is the feed's own home page is no
identity, since some feeds link every item there.

A body pushed by a WebSub hub goes through the same ``_store_body`` as a polled one, so a push
and a poll of the same item store one post and one delivery per target.

The new deliveries of one body go to each target in publishing order, oldest first: per target
they are one task message (a batch, tasks.deliver.deliver_batch), run in order by one worker, so
the next is attempted only once the one before it has been, however many worker processes there are.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from syndicator import canonical, feedhttp, feeds, followup, rhythm, scheduling
from syndicator.dispatch import create_auto_deliveries
from syndicator.errors import FeedError
from syndicator.models import Feed, Post, PushSubscription
from syndicator.redact import redact

if TYPE_CHECKING:
    from collections.abc import Callable

    from django.contrib.auth.models import User

log = logging.getLogger(__name__)


@dataclass
class PollReport:
    """What one poll did: shown by ``syndicator poll`` and returned to tests."""

    feed: Feed
    # "ok", "not_modified", "unchanged", "error", "busy" (another poll holds the lease), "deferred"
    # (a batch's fetch that did not start in time: due again at once)
    status: str
    parsed: bool = False
    new_posts: list[Post] = field(default_factory=list)
    deliveries: int = 0
    error: str = ""


def claim_due_feeds(*, now: datetime | None = None) -> list[int]:
    """Mark every enabled, due, idle feed as scheduled and return their ids."""
    return [feed_id for feed_id, _ in claim_feeds_due_within(0, now=now)]


def claim_feeds_due_within(seconds: float, *, now: datetime | None = None) -> list[tuple[int, float]]:
    """Claim the enabled, idle feeds due within the next `seconds`; (id, seconds until due) each.

    The scheduler ticks every SYNDICATOR_SCHEDULE_INTERVAL and claims what falls due before the
    next tick, to be polled on time (a countdown): a feed due a moment after a tick would
    otherwise wait for the next one, and an interval equal to the tick would double.
    """
    now = now or timezone.now()
    due = Feed.objects.filter(enabled=True, next_poll_at__lte=now + timedelta(seconds=seconds)).filter(
        Q(polling_until__isnull=True) | Q(polling_until__lt=now)
    )
    claimed = []
    # One transaction for the tick's claims: one commit (on SQLite one write lock) for the ~170
    # feeds a tick claims at 10,000 feeds every 5 minutes, not one per feed.
    with transaction.atomic():
        for feed_id, next_poll_at, interval in due.values_list("pk", "next_poll_at", "poll_interval"):
            # Conditional on the value we read: two beat ticks never both enqueue the same poll. The
            # poll sets the real next time when it ends; this one holds if its task is lost.
            if Feed.objects.filter(pk=feed_id, next_poll_at=next_poll_at).update(
                next_poll_at=max(next_poll_at, now) + timedelta(seconds=max(interval, seconds))
            ):
                claimed.append((feed_id, max((next_poll_at - now).total_seconds(), 0.0)))
    return claimed


def next_feed_due(now: datetime) -> datetime | None:
    """When claim_feeds_due_within(SYNDICATOR_SCHEDULE_INTERVAL) next claims a feed, from the
    rows as they are (None: no enabled feed); never later, maybe earlier (the scheduler then
    finds nothing and asks again). A feed being polled is due when its lease ends at the soonest.
    """
    from django.db.models import Min

    enabled = Feed.objects.filter(enabled=True)
    idle = enabled.filter(Q(polling_until__isnull=True) | Q(polling_until__lt=now)).aggregate(
        at=Min("next_poll_at")
    )
    busy = enabled.filter(polling_until__gte=now).aggregate(at=Min("polling_until"))
    times = [at for at in (idle["at"], busy["at"]) if at is not None]
    return min(times) - timedelta(seconds=settings.SYNDICATOR_SCHEDULE_INTERVAL) if times else None


def _take_lease(feed_id: int, now: datetime) -> bool:
    lease = timedelta(seconds=settings.SYNDICATOR_POLL_LEASE)
    return bool(
        Feed.objects.filter(pk=feed_id)
        .filter(Q(polling_until__isnull=True) | Q(polling_until__lt=now))
        .update(polling_until=now + lease)
    )


def poll_feed(feed_id: int) -> PollReport:
    """Poll one feed now; errors are recorded on the feed and reported, never raised."""
    feed = Feed.objects.get(pk=feed_id)
    now = timezone.now()
    if not _take_lease(feed_id, now):
        return PollReport(feed=feed, status="busy")
    try:
        return _record_polled(feed, now, lambda: _fetch(feed))
    finally:
        Feed.objects.filter(pk=feed_id).update(polling_until=None)


@dataclass
class _Fetched:
    """What a fetch thread hands back: when it started, and the result or the error."""

    started: datetime
    result: feedhttp.FetchResult | None = None
    error: BaseException | None = None

    def unwrap(self) -> feedhttp.FetchResult:
        """The result, or the fetch's error raised again here."""
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def poll_feeds(feed_ids: list[int], *, start_within: float | None = None) -> list[PollReport]:
    """Poll these feeds at once: their fetches run concurrently in this process's fetch pool
    (syndicator/pollpool.py, a per-host limit), their results are stored here one by one as
    they come in. A feed another poll holds is reported "busy" and not fetched; a failure is
    recorded on its feed and touches no other.

    A fetch not started within start_within seconds (its host's other feeds took that long) is
    not made: the feed is due again at once, for the next tick, and reported "deferred". So a
    task ends within its time limit however many feeds one slow site has in it.
    """
    from syndicator import pollpool

    now = timezone.now()
    lease = now + timedelta(seconds=settings.SYNDICATOR_POLL_LEASE)
    idle = Q(polling_until__isnull=True) | Q(polling_until__lt=now)
    # One UPDATE takes every idle feed's lease; the feeds holding our lease's time are ours.
    Feed.objects.filter(pk__in=feed_ids).filter(idle).update(polling_until=lease)
    found = Feed.objects.in_bulk(feed_ids)
    ours = [feed for feed in found.values() if feed.polling_until == lease]
    reports = [PollReport(feed=feed, status="busy") for feed in found.values() if feed.polling_until != lease]
    if not ours:
        return reports
    pushed = set(
        PushSubscription.objects.filter(
            feed__in=ours, state=PushSubscription.State.SUBSCRIBED, expires_at__gt=now
        ).values_list("feed_id", flat=True)
    )
    pool = pollpool.shared()
    waiting = {pool.submit(_host_of(feed.url), functools.partial(_fetch_timed, feed)): feed for feed in ours}
    start_by = None if start_within is None else time.monotonic() + start_within
    pending = set(waiting)
    try:
        while pending:
            if start_by is not None and time.monotonic() >= start_by:
                start_by = None
                deferred = [waiting[future] for future in pending if future.cancel()]
                pending = {future for future in pending if not future.cancelled()}
                reports += _defer(deferred, lease)
            timeout = None if start_by is None else max(start_by - time.monotonic(), 0)
            done, pending = concurrent.futures.wait(
                pending, timeout=timeout, return_when=concurrent.futures.FIRST_COMPLETED
            )
            for future in done:
                feed = waiting[future]
                fetched: _Fetched = future.result()  # _fetch_timed never raises
                reports.append(
                    _record_polled(feed, fetched.started, fetched.unwrap, pushed=feed.pk in pushed)
                )
    finally:
        for future in waiting:
            future.cancel()  # only those not started yet: the task was stopped (its time limit)
        Feed.objects.filter(pk__in=[feed.pk for feed in ours], polling_until=lease).update(polling_until=None)
    return reports


def _defer(feeds_left: list[Feed], lease: datetime) -> list[PollReport]:
    """Put back feeds whose fetch did not start in time: due now, for the next tick to claim."""
    if feeds_left:
        Feed.objects.filter(pk__in=[feed.pk for feed in feeds_left], polling_until=lease).update(
            polling_until=None, next_poll_at=timezone.now()
        )
        log.warning("%d feed polls deferred: their sites' other feeds took the batch's time", len(feeds_left))
        scheduling.wake(scheduling.FEEDS)  # due sooner than the tick recorded
    return [PollReport(feed=feed, status="deferred") for feed in feeds_left]


def _host_of(url: str) -> str:
    """The key of a feed's site for the per-host limit: its host name (any port: one site)."""
    try:
        return (urlsplit(url).hostname or "").lower().rstrip(".")
    except ValueError:
        return ""


def _fetch(feed: Feed) -> feedhttp.FetchResult:
    return feeds.fetch(
        feed.url,
        etag=feed.etag,
        last_modified=feed.last_modified,
        previous_hash=feed.body_hash,
        pool=feedhttp.shared_pool(),
    )


def _fetch_timed(feed: Feed) -> _Fetched:
    """Run in a fetch thread: no database access here (the caller's thread stores the result)."""
    fetched = _Fetched(started=timezone.now())
    try:
        fetched.result = _fetch(feed)
    except Exception as exc:  # recorded on the feed by the caller, as poll_feed records it
        fetched.error = exc
    return fetched


def _record_polled(
    feed: Feed, now: datetime, fetch: Callable[[], feedhttp.FetchResult], *, pushed: bool | None = None
) -> PollReport:
    """Fetch (or take the fetched result), store it, record it on the feed; errors are recorded
    on the feed and reported, never raised."""
    try:
        return _poll_leased(feed, now, fetch(), pushed=pushed)
    except FeedError as exc:
        return _record_feed_error(feed, exc, now)
    except Exception as exc:  # a bug must not stop the other feeds; it is recorded like any error
        log.exception("feed %s: unexpected error while polling", feed.pk)
        return _record_feed_error(feed, FeedError(f"internal error: {exc!r}"), now)


def _poll_leased(
    feed: Feed, now: datetime, fetched: feedhttp.FetchResult, *, pushed: bool | None = None
) -> PollReport:
    ok = {
        "last_polled_at": now,
        "last_success_at": now,
        "last_http_status": fetched.http_status,
        "last_error": "",
        "consecutive_failures": 0,
        "etag": fetched.etag[:500] or feed.etag,
        "last_modified": fetched.last_modified[:100] or feed.last_modified,
    }
    if fetched.hub_url:  # headers name hub and topic even when the body has not changed
        ok |= {"hub_url": fetched.hub_url[:2000], "self_url": fetched.self_url[:2000]}
    if fetched.status != "ok":
        # 304 or a byte-identical body: nothing can be new, so nothing is parsed.
        Feed.objects.filter(pk=feed.pk).update(
            last_status=Feed.Status.NOT_MODIFIED,
            next_poll_at=_next_poll(feed, fetched.max_age, pushed=pushed),
            **ok,
        )
        return PollReport(feed=feed, status=fetched.status)

    parsed = feeds.parse(
        fetched.body,
        base_url=fetched.final_url,
        default_language=feed.language,
        content_type=fetched.content_type,
    )
    with transaction.atomic():
        stored, deliveries = _store_body(feed, parsed, now)
        # Link headers first: the spec makes them the publisher's main way to name hub and topic.
        Feed.objects.filter(pk=feed.pk).update(
            last_status=Feed.Status.OK,
            body_hash=fetched.body_hash,
            first_polled_at=feed.first_polled_at or now,
            **{"hub_url": parsed.hub_url[:2000], "self_url": parsed.self_url[:2000], **ok},
        )
    # From when the poll finished, after the posts are counted in the rhythm.
    Feed.objects.filter(pk=feed.pk).update(next_poll_at=_next_poll(feed, fetched.max_age, pushed=pushed))
    return PollReport(feed=feed, status="ok", parsed=True, new_posts=stored, deliveries=deliveries)


def store_pushed(feed: Feed, body: bytes, content_type: str = "") -> PollReport:
    """Store the new items of a body a WebSub hub pushed, exactly as a poll would."""
    now = timezone.now()
    parsed = feeds.parse(body, base_url=feed.url, default_language=feed.language, content_type=content_type)
    with transaction.atomic():
        # A hub may push only the new or changed entries (PubSubHubbub's fat pings did, and hubs
        # still do): what a pushed body lacks says nothing, so nothing vanishes by a push.
        stored, deliveries = _store_body(feed, parsed, now, whole_feed=False)
        Feed.objects.filter(pk=feed.pk).update(last_push_at=now)
    return PollReport(feed=feed, status="ok", parsed=True, new_posts=stored, deliveries=deliveries)


def _next_poll(feed: Feed, max_age: int | None, *, pushed: bool | None = None) -> datetime:
    """When to poll next, counted from now (the end of this poll); pushed, when the caller knows
    whether the feed has a live WebSub subscription (a batch looks them up at once)."""
    finished = timezone.now()
    if pushed is None:
        pushed = PushSubscription.objects.filter(
            feed=feed, state=PushSubscription.State.SUBSCRIBED, expires_at__gt=finished
        ).exists()
    return finished + timedelta(seconds=rhythm.next_interval(feed, finished, pushed=pushed, max_age=max_age))


def _store_body(
    feed: Feed, parsed: feeds.ParsedFeed, now: datetime, *, whole_feed: bool = True
) -> tuple[list[Post], int]:
    """Store a parsed body's new posts with their deliveries (inside the caller's transaction);
    the posts stored, and how many deliveries were created.

    It also follows the posts already stored (docs/article-life.md): an item whose content
    changed updates its post (followup.post_changed once the transaction commits), and an item
    that vanished while items published before it are still there unpublishes it
    (followup.post_unpublished). A new item that is an article already stored from another feed
    of the site is stored as a sighting of it (``same_as``), never delivered twice.
    """
    unseen, left_out = _unseen(feed, parsed)
    new_items = [feeds.sanitize(item) for item in unseen]
    first_poll = feed.first_polled_at is None
    home = canonical.canonical_url(parsed.link)
    site = canonical.site_of(feed.url)
    stored: list[Post] = []
    seen_again: list[Post] = []  # articles of other feeds that this feed now shows too
    for item in new_items:
        post = _store_post(feed, item, now, home=home, site=site)
        if post is None:
            continue
        if post.same_as is not None:
            seen_again.append(post.same_as)
        else:
            stored.append(post)
    deliverable = _newest(stored, feed.backfill) if first_poll else stored
    # Oldest first, so the networks show them in publishing order.
    deliverable.sort(key=lambda p: (p.published_at or p.first_seen_at, p.pk))
    # A target filtered to this feed gets an article first seen elsewhere (not a first poll's backlog).
    deliveries = len(create_auto_deliveries(deliverable + ([] if first_poll else seen_again)))
    _follow_changes(feed, parsed, now, skip_guids={item.guid[:2000] for item in new_items})
    # Only a polled body is the whole feed: absence from a pushed one proves nothing.
    scrolled_off = _follow_vanished(feed, parsed, now) if whole_feed else []
    if scrolled_off:
        # Checked by a worker once this commits: no page fetch inside the poll's transaction,
        # nor in the web request a WebSub push arrives on.
        ids = scrolled_off[:MAX_PAGE_CHECKS]
        transaction.on_commit(lambda: queue_page_checks(ids))
    if stored or seen_again:
        log.info(
            "feed %s: %d new posts, %d seen before in another feed, %d deliveries%s",
            feed.pk,
            len(stored),
            len(seen_again),
            deliveries,
            " (first poll: backlog recorded, not delivered)" if first_poll and not feed.backfill else "",
        )
    if left_out:
        reasons = ", ".join(f"{count} {reason}" for reason, count in left_out.items())
        log.info("feed %s: items left out: %s", feed.pk, reasons)
    return stored, deliveries


def source_hash(item: feeds.ParsedItem) -> str:
    """A digest of what an edit can change in an item, as parsed (before sanitizing)."""
    data = [
        item.title,
        item.url[:2000],
        item.summary,
        item.content,
        item.image_url[:2000],
        list(item.categories),
        item.updated_at.isoformat() if item.updated_at else "",
    ]
    return hashlib.sha256(json.dumps(data, ensure_ascii=False).encode("utf-8", "surrogatepass")).hexdigest()


# What an edit at the source changes on the stored post (published_at stays: a feed without
# <published> gives its <updated> as the published time, which must not move on an edit).
EDITABLE = ("title", "summary", "content", "url", "image_url", "categories")


def _follow_changes(feed: Feed, parsed: feeds.ParsedFeed, now: datetime, *, skip_guids: set[str]) -> None:
    """Update the stored posts whose items changed; report each once the transaction commits."""
    items = {item.guid[:2000]: item for item in parsed.items if item.guid[:2000] not in skip_guids}
    if not items:
        return
    hashes = {guid: source_hash(item) for guid, item in items.items()}
    known = Post.objects.filter(feed=feed, guid__in=list(items)).select_related("same_as")
    for post in known:
        digest = hashes[post.guid]
        if post.source_hash == digest:
            continue  # the same item as last time: no sanitizing, no write
        if not post.source_hash:
            # Stored before edits were followed (migration 0013): this body is its baseline. A
            # comparison would take any change in the sanitizer since then for an edit.
            Post.objects.filter(pk=post.pk).update(source_hash=digest)
            continue
        item = feeds.sanitize(items[post.guid])
        fresh = post_from_item(feed, item, now)
        # A sighting's edit is the article's (the delivered post is the one that changes), but
        # only what changed in the sighting's own item: two feeds of a site often render one
        # article differently (an excerpt here, the full text there; a tracking link), and
        # comparing one feed's copy with the other's would take that difference for an edit.
        article = post.same_as or post
        own = _differences(fresh, post)
        changed = {name: value for name, value in own.items() if name in _differences(fresh, article)}
        stale = bool(
            item.updated_at and article.source_updated_at and item.updated_at <= article.source_updated_at
        )
        if stale:
            continue  # an older copy (a lagging cache or mirror): not an edit, and not remembered
        if post.same_as is not None and own:
            # The sighting keeps its own copy, to compare its next body with.
            Post.objects.filter(pk=post.pk).update(**own, canonical_url=canonical.canonical_url(fresh.url))
        if not changed:
            # Not an edit (a field we do not follow, or one the article already has): remember
            # the digest, so the next body with this item costs nothing.
            Post.objects.filter(pk=post.pk).update(source_hash=digest)
            continue
        Post.objects.filter(pk=post.pk).update(source_hash=digest)
        updates = {
            **changed,
            "version": F("version") + 1,
            "source_updated_at": item.updated_at or article.source_updated_at,
        }
        if "url" in changed:
            updates["canonical_url"] = canonical.canonical_url(fresh.url)
        Post.objects.filter(pk=article.pk).update(**updates)
        article.refresh_from_db()
        log.info(
            "post %s changed at its source (%s): version %s", article.pk, ", ".join(changed), article.version
        )
        transaction.on_commit(functools.partial(_report_changed, article))


def _differences(fresh: Post, stored: Post) -> dict[str, object]:
    """The followed fields in which fresh differs from stored; a link only when its canonical
    form does (a tracking parameter or a trailing slash is no edit)."""
    changed: dict[str, object] = {}
    for name in EDITABLE:
        new, old = getattr(fresh, name), getattr(stored, name)
        if name == "url":
            if canonical.canonical_url(new) != canonical.canonical_url(old) or (
                not canonical.canonical_url(new) and new != old
            ):
                changed[name] = new
        elif new != old:
            changed[name] = new
    return changed


def _report_changed(post: Post) -> None:
    # Looked up at call time, so the acting side (and a test) can replace it.
    followup.post_changed(post)


def _follow_vanished(feed: Feed, parsed: feeds.ParsedFeed, now: datetime) -> list[int]:
    """Unpublish the posts that left this body while items published before them are still in it.

    An item gone from the end of the feed scrolled off (the feed shows the newest N): nothing.
    An item gone from before the oldest one still there was taken out: the issue's rule (#12).
    Only the article's own feed decides (a sighting leaving a category feed is a re-categorised
    article, not an unpublished one). Returns the ids of the posts that scrolled off: their
    pages are checked once (``check_pages``), and a 404 or 410 unpublishes them.
    """
    guids = [item.guid[:2000] for item in parsed.items]
    present = list(
        Post.objects.filter(feed=feed, guid__in=guids).values_list(
            "pk", "published_at", "first_seen_at", "in_feed"
        )
    )
    gone = list(Post.objects.filter(feed=feed, in_feed=True).exclude(guid__in=guids))
    if gone:
        Post.objects.filter(pk__in=[post.pk for post in gone]).update(in_feed=False)
    back = [pk for pk, _, _, was_in in present if not was_in]
    if back:
        # Back in the feed (an article that comes back is not posted again: its guid is known).
        Post.objects.filter(pk__in=back).update(in_feed=True)
    if not present:
        return []  # an empty body says nothing about any item (a broken export, a cleared cache)
    oldest_present = min((published or seen, pk) for pk, published, seen, _ in present)
    scrolled_off: list[int] = []
    for post in gone:
        if post.same_as_id is not None or post.unpublished_at is not None:
            continue
        if (post.published_at or post.first_seen_at, post.pk) > oldest_present:
            unpublish(post, reason=VANISHED, now=now)
        elif post.url:
            scrolled_off.append(post.pk)
    return scrolled_off


VANISHED = "it vanished from its feed while items published before it are still there"
WEBHOOK = "the publish webhook said it was unpublished"
GONE = "its page answered HTTP {status} after it left its feed"
# Pages checked per body: a feed normally loses one item per new one; a reshuffle of a whole
# feed is not worth a burst of requests to the publisher (the rest are not checked).
MAX_PAGE_CHECKS = 10
# The name tasks/watch.py registers for checking pages (syndicator/ never imports tasks/).
CHECK_PAGES_TASK = "tasks.watch.check_pages"


def queue_page_checks(post_ids: list[int]) -> None:
    """Have a worker check the pages of posts that left their feed; a broker away loses them
    (logged): the webhook and the vanished rule still hold."""
    from celeryproject import app

    try:
        app.send_task(CHECK_PAGES_TASK, args=[post_ids])
    except Exception as exc:  # kombu raises many classes for a broker that is away
        log.warning("page checks of %d posts not queued: %s", len(post_ids), redact(str(exc)))


def check_pages(post_ids: list[int]) -> list[int]:
    """Check the page of each post that left its feed; a 404 or 410 unpublishes it. The ids of
    the posts unpublished. A page that answers 200, an error or nothing leaves the post alone."""
    unpublished = []
    for post in Post.objects.filter(pk__in=post_ids, unpublished_at__isnull=True, same_as__isnull=True):
        status = feedhttp.page_status(post.url)
        if status in (404, 410):
            with transaction.atomic():
                if unpublish(post, reason=GONE.format(status=status)):
                    unpublished.append(post.pk)
        else:
            log.info("post %s left its feed; its page answered %s: nothing to do", post.pk, status)
    return unpublished


def unpublish(post: Post, *, reason: str, now: datetime | None = None, actor: User | None = None) -> bool:
    """Record that a post was unpublished at its source and report it once the transaction commits.

    False when it was already recorded as unpublished (once per article; it is never undone
    automatically: an article that comes back is not posted again).
    """
    article = post.same_as or post
    done = Post.objects.filter(pk=article.pk, unpublished_at__isnull=True).update(
        unpublished_at=now or timezone.now(), unpublished_reason=reason[:2000]
    )
    if not done:
        return False
    article.refresh_from_db()
    log.info("post %s unpublished: %s", article.pk, reason)
    transaction.on_commit(lambda: followup.post_unpublished(article, reason=reason, actor=actor))
    return True


def _unseen(feed: Feed, parsed: feeds.ParsedFeed) -> tuple[list[feeds.ParsedItem], dict[str, int]]:
    """The items of a body that are new to the feed (see the module docstring), and how many
    were left out, by reason (the parser's reasons included)."""
    guids = [item.guid for item in parsed.items]
    known_guids = set(Post.objects.filter(feed=feed, guid__in=guids).values_list("guid", flat=True))
    fresh = [item for item in parsed.items if item.guid not in known_guids]
    home = parsed.link.rstrip("/")

    def identity(item: feeds.ParsedItem) -> tuple[str, str] | None:
        url = item.url[:2000]  # as stored
        return (url, item.title) if url and item.title and url.rstrip("/") != home else None

    keys = {key for item in fresh if (key := identity(item))}
    stored = Post.objects.filter(feed=feed, url__in={url for url, _ in keys}).values_list("url", "title")
    taken = set(stored) & keys
    unseen, republished = [], 0
    for item in fresh:
        key = identity(item)
        if key in taken:
            republished += 1
            continue
        if key:
            taken.add(key)  # a second item of this body with the same link and title is the same post
        unseen.append(item)
    left_out = dict(parsed.skipped)
    if republished:
        left_out["with a new guid and the link and title of a stored post"] = republished
    return unseen, left_out


def _newest(posts: list[Post], count: int) -> list[Post]:
    """The newest `count` posts by published time (feed order breaks ties)."""
    if count <= 0:
        return []
    order = {p.pk: i for i, p in enumerate(posts)}
    epoch = datetime.min.replace(tzinfo=timezone.get_current_timezone())
    ranked = sorted(posts, key=lambda p: (p.published_at or epoch, -order[p.pk]), reverse=True)
    return ranked[:count]


def post_from_item(
    feed: Feed, item: feeds.ParsedItem, now: datetime | None = None, *, site: str = ""
) -> Post:
    """An unsaved Post of a feed from one parsed (and sanitized) item, fields cut to their columns."""
    return Post(
        canonical_url=canonical.canonical_url(item.url),
        guid_key=canonical.guid_key(item.guid, site or canonical.site_of(feed.url)),
        source_hash=source_hash(item),
        source_updated_at=item.updated_at,
        feed=feed,
        guid=item.guid[:2000],
        url=item.url[:2000],
        title=item.title,
        summary=item.summary,
        content=item.content,
        author=item.author[:300],
        categories=item.categories,
        image_url=item.image_url[:2000],
        enclosures=item.enclosures,
        language=(item.language or feed.language)[:16],
        published_at=item.published_at,
        first_seen_at=now or timezone.now(),
    )


def _store_post(
    feed: Feed, item: feeds.ParsedItem, now: datetime, *, home: str = "", site: str = ""
) -> Post | None:
    """Insert one post; None when (feed, guid) already exists (it was seen before).

    An item that is an article already stored from another feed (same canonical link, or the
    same guid key: a WordPress ``?p=ID`` guid or link meets the other's) is inserted as a
    sighting, ``same_as`` that post; the feed's home page is no identity (some feeds link every
    item there).
    """
    post = post_from_item(feed, item, now, site=site)
    keys = {post.canonical_url, post.guid_key} - {"", home}
    if post.canonical_url == home:
        post.canonical_url = ""
    if keys:
        # The oldest match, taken here rather than by ORDER BY pk LIMIT 1: with that, PostgreSQL
        # may walk the primary key and filter every row when nothing matches (the common case),
        # a scan per item that made a 10,000-item first poll quadratic (over 60 s); without it
        # the two key indexes answer (tests/bad_input: "10,000 items").
        matches = (
            Post.objects.filter(same_as__isnull=True)
            .exclude(feed=feed)
            .filter(Q(canonical_url__in=keys) | Q(guid_key__in=keys))
            .order_by()
            .values_list("pk", flat=True)
        )
        post.same_as_id = min(matches, default=None)
    try:
        with transaction.atomic():
            post.save(force_insert=True)
    except IntegrityError:
        return None
    return post


def _record_feed_error(feed: Feed, exc: FeedError, now: datetime) -> PollReport:
    """Record a failed poll on the feed and back off exponentially."""
    failures = feed.consecutive_failures + 1
    backoff = min(feed.poll_interval * 2 ** min(failures - 1, 16), settings.SYNDICATOR_FEED_MAX_BACKOFF)
    # A 429 or 503 that says how long to wait is obeyed (RFC 9110 §10.2.3), up to the longest back-off.
    asked = getattr(exc, "retry_after", None) or 0
    backoff = max(backoff, min(asked, settings.SYNDICATOR_FEED_MAX_BACKOFF))
    message = redact(f"{type(exc).__name__}: {exc}")
    Feed.objects.filter(pk=feed.pk).update(
        last_status=Feed.Status.ERROR,
        last_polled_at=now,
        last_http_status=getattr(exc, "http_status", None),
        last_error=message[:5000],
        consecutive_failures=failures,
        next_poll_at=timezone.now() + timedelta(seconds=max(backoff, feed.poll_interval)),
    )
    log.warning("feed %s (%s): poll failed (%d in a row): %s", feed.pk, redact(feed.url), failures, message)
    return PollReport(feed=feed, status="error", error=message)
