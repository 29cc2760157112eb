"""Sending delivery task messages, by task name: the domain never imports ``tasks/``.

``tasks/deliver.py`` imports the domain to run a delivery; the domain asks Celery for the task
by its registered name, so there is no import cycle and the web process needs no task module.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from syndicator.models import Delivery
from syndicator.redact import redact

log = logging.getLogger(__name__)

# The name tasks/deliver.py registers (@app.task(name=...)); celeryproject's imports load it.
DELIVER_TASK = "tasks.deliver.deliver"


def queue_name(kind: str) -> str:
    """The Celery queue that carries deliveries for one target kind (celeryproject.DELIVERY_QUEUES)."""
    return f"deliver.{kind}"


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
        Delivery.objects.filter(pk__in=sent).update(enqueued_at=timezone.now())
    return len(sent)
