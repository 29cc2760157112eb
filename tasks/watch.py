"""Feed tasks: the beat tick that finds due feeds, the poll of one feed, the WebSub round."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.utils import timezone

from celeryproject import app
from syndicator import scheduling, watch, websub
from syndicator.models import Feed, Post

log = logging.getLogger(__name__)

# A webhook that names its article polls again until the article is in the feed (a cached feed
# may lag behind the publish call), after these many seconds.
LOOK_AGAIN = (1, 2, 4, 8, 15)


@app.task(name="tasks.watch.schedule_due_feeds")
def schedule_due_feeds() -> int:
    """Enqueue polls, on time, for every enabled feed due before the next tick; return how many;
    record when a feed is next due (beat sends this tick then: syndicator/scheduling.py).

    One poll_feeds task per second of due times (split at SYNDICATOR_POLL_BATCH), due at that
    second's first feed: its fetches run concurrently in the worker (syndicator/pollpool.py), so
    10,000 feeds every 5 minutes are ~33 feeds a second in one task, not 33 tasks."""
    generation = scheduling.begin(scheduling.FEEDS)
    claimed = watch.claim_feeds_due_within(settings.SYNDICATOR_SCHEDULE_INTERVAL)
    by_second: dict[int, list[tuple[int, float]]] = {}
    for feed_id, countdown in claimed:
        by_second.setdefault(int(countdown), []).append((feed_id, countdown))
    size = max(settings.SYNDICATOR_POLL_BATCH, 1)
    started = time.time()
    for due in by_second.values():
        for first in range(0, len(due), size):
            batch = due[first : first + size]
            countdown = min(seconds for _, seconds in batch)
            # A countdown of 0 sets no ETA, as None would (Celery converts only a truthy countdown).
            poll_feeds.apply_async(
                args=([feed_id for feed_id, _ in batch], started + countdown), countdown=countdown
            )
    # A poll then sets its feed's next time no sooner than this claim did (rhythm's interval is at
    # least poll_interval); a time moves earlier only by a save, a push that ends or a deferred
    # fetch (watch.poll_feeds), which wake.
    now = timezone.now()
    scheduling.record(scheduling.FEEDS, generation, watch.next_feed_due(now), now)
    return len(claimed)


# A batch that starts this late says the feeds worker cannot keep up (logged, still polled).
LATE = 30.0


@app.task(name="tasks.watch.poll_feeds")
def poll_feeds(feed_ids: list[int], due_at: float = 0.0) -> int:
    """Poll a batch of feeds at once (watch.poll_feeds); due_at (a Unix time) is when the first
    was due. Returns how many were polled."""
    late = time.time() - due_at if due_at else 0.0
    if late > LATE:
        log.warning(
            "%d feed polls start %.0f s after they were due: the feeds worker is behind", len(feed_ids), late
        )
    # Fetches start within the soft time limit less one fetch's deadline and a margin to store it.
    budget = settings.CELERY_TASK_SOFT_TIME_LIMIT - settings.SYNDICATOR_FEED_TIMEOUT - 10
    reports = watch.poll_feeds(feed_ids, start_within=max(budget, 1.0))
    if websub.enabled():
        for report in reports:
            if report.status in ("ok", "not_modified", "unchanged"):
                websub.ensure(Feed.objects.get(pk=report.feed.pk))
    return sum(1 for report in reports if report.status not in ("busy", "deferred"))


@app.task(name="tasks.watch.poll_feed")
def poll_feed(feed_id: int, look_for: str = "", attempt: int = 0) -> None:
    """Poll one feed; failures are recorded on the feed, never raised. With look_for (a webhook's
    article URL), poll again shortly while the article is not there or another poll was running."""
    if not Feed.objects.filter(pk=feed_id).exists():
        return
    report = watch.poll_feed(feed_id)
    if report.status in ("ok", "not_modified", "unchanged") and websub.enabled():
        websub.ensure(Feed.objects.get(pk=feed_id))
    missing = bool(look_for) and not Post.objects.filter(feed_id=feed_id, url=look_for).exists()
    if (report.status == "busy" or missing) and attempt < len(LOOK_AGAIN) and report.status != "error":
        poll_feed.apply_async(args=(feed_id, look_for, attempt + 1), countdown=LOOK_AGAIN[attempt])


@app.task(name=watch.CHECK_PAGES_TASK)
def check_pages(post_ids: list[int]) -> list[int]:
    """Check the pages of posts that scrolled off their feed: a 404 or 410 unpublishes them."""
    return watch.check_pages(post_ids)


@app.task(name="tasks.watch.maintain_push")
def maintain_push() -> dict[str, int]:
    """Renew, time out and end WebSub subscriptions (syndicator/websub.py)."""
    return websub.maintain()
