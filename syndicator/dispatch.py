"""The outbox: creating deliveries, and sending their task messages by task name.

The rows are the outbox: they are created in the transaction that stores the posts (or the
repost), and the task messages go out once it commits. ``tasks/deliver.py`` imports the domain to
run a delivery; the domain asks Celery for the task by its registered name, so ``syndicator/``
never imports ``tasks/`` (no import cycle, and the web process needs no task module).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from django.db import transaction

from syndicator import scheduling
from syndicator.clock import Now
from syndicator.digest import is_digest
from syndicator.errors import UserError
from syndicator.models import Delivery, Post, Target
from syndicator.redact import redact
from syndicator.targets.registry import queue_name

log = logging.getLogger(__name__)

# The name tasks/watch.py registers for polling one feed (routed to the feeds queue by name).
POLL_TASK = "tasks.watch.poll_feed"
# The name tasks/deliver.py registers (@app.task(name=...)); celeryproject's imports load it.
DELIVER_TASK = "tasks.deliver.deliver"
# One network's deliveries in one message, run one after the other (delivery.attempt_batch).
DELIVER_BATCH_TASK = "tasks.deliver.deliver_batch"


def target_matches(target: Target, post: Post, seen_in: set[int] | None = None) -> bool:
    """Whether a target's feed, language and category filters accept a post.

    The feed filter accepts a post seen in any of the feeds it names: the article's first feed
    or one where it was seen again (a category feed, ``Post.sightings``); `seen_in` is that set
    of feed ids when the caller has it, else it is read.
    """
    feed_ids = {f.pk for f in target.feeds.all()}
    if feed_ids and not (feed_ids & (seen_in if seen_in is not None else feeds_seen(post))):
        return False
    languages = {lang.lower() for lang in target.languages}
    if languages and (post.language or "").lower() not in languages:
        return False
    categories = {c.casefold() for c in target.categories}
    return not categories or bool(categories & {c.casefold() for c in post.categories})


def feeds_seen(post: Post) -> set[int]:
    """The ids of every feed the post's article was seen in: its own and its sightings'."""
    if post.pk is None:
        return {post.feed_id}
    return {post.feed_id, *Post.objects.filter(same_as=post).values_list("feed_id", flat=True)}


def create_auto_deliveries(posts: Iterable[Post]) -> list[Delivery]:
    """Create one delivery per matching enabled target for each post; enqueue them on commit.

    Call inside the transaction that stores the posts, in publishing order (oldest first): the
    rows are the outbox, and the task messages go out only once they are committed, as one
    message per target (a batch its worker sends in order), so each target gets the posts in that
    order even with several workers (sent at once, the first of 20 new items often landed 6th to
    9th).

    A (post, target) pair that already has its automatic delivery is left alone: a post seen
    again in another feed of its site is given to the targets that now match and had none.
    An unpublished post gets none.
    """
    posts = [post for post in posts if post.unpublished_at is None]
    if not posts:
        return []
    # A digest target gets its posts in the period's one email (syndicator/digest.py), not one by one.
    targets = [t for t in Target.objects.filter(enabled=True).prefetch_related("feeds") if not is_digest(t)]
    had = set(
        Delivery.objects.filter(post__in=posts, origin=Delivery.Origin.AUTO).values_list(
            "post_id", "target_id"
        )
    )
    seen = {post.pk: feeds_seen(post) for post in posts}
    # One INSERT for all of them (PostgreSQL and SQLite ≥ 3.35 return the ids: enqueueing needs
    # them). The unique (post, target) of automatic deliveries still holds: a pair another
    # process stored meanwhile fails the INSERT, and with it the caller's transaction, as before.
    created = Delivery.objects.bulk_create(
        [
            Delivery(post=post, target=target, origin=Delivery.Origin.AUTO)
            for target in targets
            for post in posts
            if (post.pk, target.pk) not in had and target_matches(target, post, seen[post.pk])
        ]
    )
    enqueue_on_commit(created)
    return created


def repost(
    post: Post,
    targets: Iterable[Target],
    *,
    text: str = "",
    requested_by: str = "",
    breaking: bool = False,
    at: datetime | None = None,
) -> list[Delivery]:
    """Create manual deliveries of a post to the given targets (an editor's repost).

    ``breaking`` puts them in the breaking lane (no quiet hours, no spacing: docs/pacing.md);
    ``at`` schedules them: they wait, `queued`, until then, and the sweeper sends them.
    """
    targets = list(targets)
    if not targets:
        raise UserError("no target to repost to")
    with transaction.atomic():
        created = [
            Delivery.objects.create(
                post=post,
                target=target,
                origin=Delivery.Origin.MANUAL,
                requested_by=requested_by,
                text_override=text,
                breaking=breaking,
                next_attempt_at=at,
                wait_reason=Delivery.Wait.SCHEDULED if at else "",
            )
            for target in targets
        ]
        if at is None:  # a scheduled one is the sweeper's once due
            enqueue_on_commit(created)
        else:
            scheduling.wake_on_commit(scheduling.SWEEP)
    return created


def enqueue_on_commit(deliveries: list[Delivery]) -> None:
    """Send the deliveries' task messages once the current transaction commits: one batch per
    target, in the order given (a target's deliveries go out one after the other)."""
    chains: dict[int, list[tuple[int, str]]] = {}
    for delivery in deliveries:
        chains.setdefault(delivery.target_id, []).append((delivery.pk, delivery.target.kind))
    if chains:
        transaction.on_commit(lambda: [enqueue(pairs) for pairs in chains.values()])


def enqueue(pairs: Iterable[tuple[int, str]]) -> int:
    """Send one deliver task per (delivery id, target kind); return how many went out.

    A broker that is down loses nothing: the rows stay queued and the sweeper sends them later.
    """
    # Imported here: celeryproject sets Django up, which importers already did; and celery (~50 ms)
    # is paid by the processes that send, not by every command that imports this module.
    from celeryproject import app

    sent: list[int] = []
    pairs = list(pairs)
    try:
        if len(pairs) > 1 and len({kind for _, kind in pairs}) == 1:
            # One target's deliveries (one network's): one message, whose worker sends them one
            # after the other, on the kind's own queue. A chain did the same with a message per
            # delivery, each carrying every link after it: a poll of 50 items was 50 messages and
            # 1,275 signatures to encode and decode (issue 16.3).
            kind = pairs[0][1]
            ids = [pk for pk, _ in pairs]
            app.send_task(DELIVER_BATCH_TASK, args=[ids, kind], queue=queue_name(kind))
            sent = ids
        for delivery_id, kind in pairs if not sent else ():
            # Routed per call, as before: each target kind has its own queue.
            app.send_task(DELIVER_TASK, args=[delivery_id], queue=queue_name(kind))
            sent.append(delivery_id)
    except Exception as exc:  # kombu raises many classes for a broker that is away
        log.warning("broker unavailable, %d deliveries wait for the sweeper: %s", len(sent), redact(str(exc)))
    if sent:
        # The database's time, which the sweeper compares with its own (syndicator/clock.py).
        Delivery.objects.filter(pk__in=sent).update(enqueued_at=Now())
    if pairs:
        # A message lost is the sweeper's STRANDED_AFTER later; one not sent, at once.
        scheduling.wake_on_commit(scheduling.SWEEP)
    return len(sent)


def queue_poll(feed_id: int, look_for: str = "") -> None:
    """Have a worker poll a feed now (Poll now, the publish webhook), by the task's name.

    Raises whatever the broker client raises when the broker is away; the caller decides.
    """
    from celeryproject import app

    app.send_task(POLL_TASK, args=[feed_id, look_for] if look_for else [feed_id])
