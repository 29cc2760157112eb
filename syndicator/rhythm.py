"""Adaptive polling: how long to wait before polling a feed again.

A feed with a longest interval (``Feed.poll_interval_max``) is polled by its rhythm: about ten
polls per typical gap between its posts over the last week, so a new post waits on average a
twentieth of that gap, never more often than ``poll_interval`` nor less than the longest interval
(an admin's bounds). A feed the server says is fresh for a while (Cache-Control: max-age) is not
asked again before then, within the same bounds. A feed subscribed by WebSub is polled only as a
safety net (SYNDICATOR_WEBSUB_SAFETY_INTERVAL). Without a longest interval, every poll_interval.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Q

from syndicator.models import Feed, Post

WINDOW = timedelta(days=7)
POLLS_PER_GAP = 10


def next_interval(feed: Feed, now: datetime, *, pushed: bool = False, max_age: int | None = None) -> int:
    """Seconds from now (the end of a poll) to the feed's next poll."""
    if pushed:
        return max(settings.SYNDICATOR_WEBSUB_SAFETY_INTERVAL, feed.poll_interval)
    shortest = feed.poll_interval
    longest = max(feed.poll_interval_max or shortest, shortest)
    interval = shortest if feed.poll_interval_max is None else _by_rhythm(feed, now, shortest, longest)
    if max_age:
        # Polite, but the admin's longest interval wins over a server asking for a day.
        interval = max(interval, min(max_age, longest))
    return int(interval)


def _by_rhythm(feed: Feed, now: datetime, shortest: int, longest: int) -> float:
    """The interval the feed's publishing over the last week suggests, within the bounds."""
    since = now - WINDOW
    # Posts that appeared in the window: by their own date when it is plausible (not after we
    # first saw them: a feed that dates everything "now" or in the future), else when we saw them.
    count = (
        Post.objects.filter(feed=feed, first_seen_at__gte=since)
        .filter(
            Q(published_at__isnull=True) | Q(published_at__gte=since) | Q(published_at__gt=F("first_seen_at"))
        )
        .count()
    )
    if count == 0:
        return float(longest)
    gap = WINDOW.total_seconds() / count
    return min(max(gap / POLLS_PER_GAP, shortest), longest)
