"""Which deliveries' task messages are still in the broker: the sweeper re-sends only lost ones.

The sweeper used to re-send the message of every `queued` delivery whose message was older than
SYNDICATOR_STRANDED_AFTER. In a backlog (a slow network, workers down) those messages are not
lost, only waiting behind others, so each sweep piled another copy of every one in the broker
(issue 15, item 10): no double sends (the claim stops them), but N × sweeps messages to work off.
How long a message may wait cannot be told from the database, so the sweeper asks the broker: a
message is lost only if it is neither waiting in its queue nor reserved by a worker.

kombu's Redis transport (the broker in every mode: see docs/design.md) keeps a queue's messages
in a Redis list named after the queue (one list per priority step, ``<queue>\\x06\\x16<n>`` for
the others) and a worker's reserved, unacknowledged ones in the hash ``unacked`` as
``[message, exchange, routing key]`` (kombu/transport/redis.py: ``_put``, ``QoS.append``), all
under the ``global_keyprefix``. A batch (dispatch.enqueue: one target's deliveries, in order)
is one message that carries all their ids, and so did a chain, its later links in its body's
``chain``: those count as waiting too. All is read in
one MULTI, a snapshot. With another transport, or a broker that cannot be read, this says
"unknown" and the sweeper re-sends as before: a duplicate costs a claim that finds nothing.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from django.db.models import Q

from syndicator.clock import Now
from syndicator.dispatch import DELIVER_BATCH_TASK, DELIVER_TASK
from syndicator.models import Delivery
from syndicator.redact import redact
from syndicator.targets.registry import queue_name

log = logging.getLogger(__name__)


def in_broker(kinds: Iterable[str]) -> tuple[set[int], dict[int, set[int]]] | None:
    """Deliveries with a deliver task message in the broker: the ids waiting in these kinds'
    queues, and the messages workers reserved (by the delivery each runs first: the ids it
    carries); None when the broker cannot be read so (not Redis, or away)."""
    from celeryproject import app  # imported here, as in dispatch.enqueue

    try:
        with app.connection_for_read() as connection:
            if connection.transport.driver_type != "redis":
                return None
            channel: Any = connection.default_channel  # the Redis transport's Channel
            # LRANGE and HVALS are not among the commands kombu's prefixed client prefixes itself.
            prefix = getattr(channel, "global_keyprefix", "") or ""
            lists = {
                prefix + channel._q_for_pri(queue_name(kind), step)
                for kind in kinds
                for step in channel.priority_steps
            }
            with channel.client.pipeline(transaction=True) as pipe:
                for key in sorted(lists):
                    pipe.lrange(key, 0, -1)
                pipe.hvals(prefix + channel.unacked_key)
                *queued, reserved = pipe.execute()
    except Exception as exc:  # kombu and redis raise many classes for a broker that is away
        log.warning("broker unreadable: the sweeper re-sends without looking: %s", redact(str(exc)))
        return None
    ready = {pk for messages in queued for raw in messages for pk in _deliveries(raw)}
    held: dict[int, set[int]] = {}
    for raw in reserved:
        # Keyed by each delivery it carries: the one being sent now is the first of a chain, and
        # any of a batch (delivery.attempt_batch).
        carried = list(_deliveries(raw))
        for pk in carried:
            held.setdefault(pk, set()).update(carried)
    return ready, held


def _deliveries(raw: bytes | str) -> Iterator[int]:
    """The delivery ids a raw message of kombu's Redis transport would run (none if not ours)."""
    try:
        payload = json.loads(raw)
        if isinstance(payload, list):  # a reserved one: [message, exchange, routing key]
            payload = payload[0]
        task = (payload.get("headers") or {}).get("task")
        if task not in (DELIVER_TASK, DELIVER_BATCH_TASK):
            return
        body = payload["body"]
        if (payload.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args, _kwargs, embed = json.loads(body)  # Celery's message protocol 2, JSON (settings)
        if task == DELIVER_BATCH_TASK:  # (ids, kind): one network's deliveries, in order
            yield from (int(pk) for pk in args[0])
            return
        yield int(args[0])
        for link in (embed or {}).get("chain") or []:
            if link.get("task") == DELIVER_TASK:
                yield int(link["args"][0])
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, binascii.Error):
        return  # not a message we can read: treated as absent, so at worst sent once more


def lost(candidates: list[tuple[int, str, datetime | None]]) -> list[tuple[int, str]]:
    """Of (delivery id, kind, enqueued_at) due a message, those whose message is not in the broker.

    One never sent (``enqueued_at`` empty: a retry, a requeued lost send) always goes. One found
    waiting gets ``enqueued_at`` set to now, so it is looked for again only after another
    SYNDICATOR_STRANDED_AFTER: a backlog costs one read of the queue per that span, not per sweep.
    """
    kinds = {kind for _, kind, at in candidates if at is not None}
    found = in_broker(kinds) if kinds else (set(), {})
    if found is None:
        return [(pk, kind) for pk, kind, _ in candidates]
    ready, held = found
    # A reserved message counts only while a live worker runs it: its first delivery is being sent
    # under a lease. A dead worker's stays reserved until kombu restores it (visibility_timeout,
    # minutes); the later links of its chain come back as soon as the lease of the one it ran
    # expires, as they did before.
    live = Q(status=Delivery.Status.SENDING, lease_until__gt=Now())
    running = Delivery.objects.filter(live, pk__in=list(held)).values_list("pk", flat=True) if held else []
    waiting = ready.union(*(held[pk] for pk in running))
    seen = [pk for pk, _, at in candidates if at is not None and pk in waiting]
    if seen:
        Delivery.objects.filter(pk__in=seen).update(enqueued_at=Now())
        log.info("sweep: %d deliveries' messages are waiting in the broker, not re-sent", len(seen))
    return [(pk, kind) for pk, kind, at in candidates if at is None or pk not in waiting]
