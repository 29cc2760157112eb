"""Feed tasks: the beat tick that finds due feeds, and the poll of one feed."""

from __future__ import annotations

from celeryproject import app
from syndicator import watch


@app.task(name="tasks.watch.schedule_due_feeds")
def schedule_due_feeds() -> int:
    """Enqueue a poll for every enabled feed that is due; return how many."""
    feed_ids = watch.claim_due_feeds()
    for feed_id in feed_ids:
        poll_feed.delay(feed_id)
    return len(feed_ids)


@app.task(name="tasks.watch.poll_feed")
def poll_feed(feed_id: int) -> None:
    """Poll one feed; failures are recorded on the feed, never raised."""
    watch.poll_feed(feed_id)
