"""The outbox: creating deliveries, and sending their task messages by task name.

The rows are the outbox: they are created in the transaction that stores the posts (or the
repost), and the task messages go out once it commits. ``tasks/deliver.py`` imports the domain to
run a delivery; the domain asks Celery for the task by its registered name, so ``syndicator/``
never imports ``tasks/`` (no import cycle, and the web process needs no task module).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import transaction

from syndicator.clock import Now
from syndicator.errors import UserError
from syndicator.models import Delivery, Post, Target
from syndicator.redact import redact
from syndicator.targets.registry import queue_name

log = logging.getLogger(__name__)

# The name tasks/deliver.py registers (@app.task(name=...)); celeryproject's imports load it.
DELIVER_TASK = "tasks.deliver.deliver"


def target_matches(target: Target, post: Post) -> bool:
    """Whether a target's feed, language and category filters accept a post."""
    feed_ids = {f.pk for f in target.feeds.all()}
    if feed_ids and post.feed_id not in feed_ids:
        return False
    languages = {lang.lower() for lang in target.languages}
    if languages and (post.language or "").lower() not in languages:
        return False
    categories = {c.casefold() for c in target.categories}
    return not categories or bool(categories & {c.casefold() for c in post.categories})


def create_auto_deliveries(posts: Iterable[Post]) -> list[Delivery]:
    """Create one delivery per matching enabled target for each post; enqueue them on commit.

    Call inside the transaction that stores the posts: the rows are the outbox, and the task
    messages go out only once they are committed.
    """
    targets = list(Target.objects.filter(enabled=True).prefetch_related("feeds"))
    created = [
        Delivery.objects.create(post=post, target=target, origin=Delivery.Origin.AUTO)
        for post in posts
        for target in targets
        if target_matches(target, post)
    ]
    enqueue_on_commit(created)
    return created


def repost(
    post: Post, targets: Iterable[Target], *, text: str = "", requested_by: str = ""
) -> list[Delivery]:
    """Create manual deliveries of a post to the given targets (an editor's repost)."""
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
            )
            for target in targets
        ]
        enqueue_on_commit(created)
    return created


def enqueue_on_commit(deliveries: list[Delivery]) -> None:
    """Send the deliveries' task messages once the current transaction commits."""
    pairs = [(d.pk, d.target.kind) for d in deliveries]
    if pairs:
        transaction.on_commit(lambda: enqueue(pairs))


def enqueue(pairs: Iterable[tuple[int, str]]) -> int:
    """Send one deliver task per (delivery id, target kind); return how many went out.

    A broker that is down loses nothing: the rows stay queued and the sweeper sends them later.
    """
    from celeryproject import app  # imported here: it sets Django up, which importers already did

    sent: list[int] = []
    try:
        for delivery_id, kind in pairs:
            # Routed per call, as before: each target kind has its own queue.
            app.send_task(DELIVER_TASK, args=[delivery_id], queue=queue_name(kind))
            sent.append(delivery_id)
    except Exception as exc:  # kombu raises many classes for a broker that is away
        log.warning("broker unavailable, %d deliveries wait for the sweeper: %s", len(sent), redact(str(exc)))
    if sent:
        # The database's time, which the sweeper compares with its own (syndicator/clock.py).
        Delivery.objects.filter(pk__in=sent).update(enqueued_at=Now())
    return len(sent)
