"""Feed tasks: the beat tick that finds due feeds, the poll of one feed, the WebSub round."""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone

from celeryproject import app
from syndicator import scheduling, watch, websub
from syndicator.models import Feed, Post

# A webhook that names its article polls again until the article is in the feed (a cached feed
# may lag behind the publish call), after these many seconds.
LOOK_AGAIN = (1, 2, 4, 8, 15)


@app.task(name="tasks.watch.schedule_due_feeds")
def schedule_due_feeds() -> int:
    """Enqueue a poll, on time, for every enabled feed due before the next tick; return how many;
    record when a feed is next due (beat sends this tick then: syndicator/scheduling.py)."""
    generation = scheduling.begin(scheduling.FEEDS)
    claimed = watch.claim_feeds_due_within(settings.SYNDICATOR_SCHEDULE_INTERVAL)
    for feed_id, countdown in claimed:
        # A countdown of 0 sets no ETA, as None would (Celery converts only a truthy countdown).
        poll_feed.apply_async(args=(feed_id,), countdown=countdown)
    # A poll then sets its feed's next time no sooner than this claim did (rhythm's interval is at
    # least poll_interval); a time moves earlier only by a save or a push that ends, which wake.
    now = timezone.now()
    scheduling.record(scheduling.FEEDS, generation, watch.next_feed_due(now), now)
    return len(claimed)


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
