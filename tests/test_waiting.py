"""The sweeper re-sends only task messages that are really lost (syndicator/waiting.py; issue 15,
item 10), counted in the real Redis broker the tests publish to, with no worker consuming."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
from django.conf import settings

from syndicator import delivery as deliveries
from syndicator.clock import db_now
from syndicator.models import Delivery, Feed, Post, Target
from syndicator.targets.registry import queue_name
from syndicator.waiting import _deliveries
from tests.conftest import TEST_BROKER_URL

pytestmark = pytest.mark.django_db

N = 12
QUEUE = queue_name("outbox")


@pytest.fixture
def broker(celery_app) -> Iterator[tuple[redis.Redis, str]]:
    """This machine's Redis and the outbox queue's list key (kombu's Redis transport: one list per
    queue, under the test session's key prefix), emptied before and after."""
    client = redis.Redis.from_url(TEST_BROKER_URL)
    key = celery_app.conf.broker_transport_options.get("global_keyprefix", "") + QUEUE
    client.delete(key)
    yield client, key
    client.delete(key)


def carried(client: redis.Redis, key: str) -> Counter[int]:
    """How many task messages in the queue would run each delivery (a chain's links included)."""
    return Counter(pk for raw in client.lrange(key, 0, -1) for pk in _deliveries(raw))


def backlog(count: int) -> list[Delivery]:
    """Deliveries whose messages went out one by one (separate polls), and wait in the broker."""
    feed = Feed.objects.create(url="https://news.example/feed", enabled=False)
    target = Target.objects.create(name="out", kind="outbox", settings={"format": "telegram"})
    made = [
        Delivery.objects.create(
            post=Post.objects.create(
                feed=feed, guid=f"g-{n}", url=f"https://news.example/{n}", title="Story"
            ),
            target=target,
        )
        for n in range(count)
    ]
    for delivery in made:
        assert deliveries.enqueue([(delivery.pk, "outbox")]) == 1
    return made


def sweeps_later(times: int) -> list[dict[str, int]]:
    """Sweep as the sweeper would over ``times`` × SYNDICATOR_STRANDED_AFTER with no worker running."""
    step = timedelta(seconds=settings.SYNDICATOR_STRANDED_AFTER + 1)
    start = db_now()
    return [deliveries.sweep(now=start + step * (n + 1)) for n in range(times)]


def test_a_backlog_keeps_one_message_per_delivery_through_many_sweeps(broker):
    client, key = broker
    waiting = backlog(N)
    assert client.llen(key) == N

    counts = sweeps_later(5)

    assert client.llen(key) == N, "messages waiting behind others are not lost: no copies"
    assert carried(client, key) == Counter({d.pk: 1 for d in waiting})
    assert [c["enqueued"] for c in counts] == [0] * 5
    assert set(Delivery.objects.values_list("status", flat=True)) == {"queued"}


def test_a_message_really_lost_from_the_broker_is_sent_again(broker):
    client, key = broker
    waiting = backlog(N)
    client.lpop(key)  # the newest message: the last delivery's (kombu pushes left, pops right)

    [first, *later] = sweeps_later(3)

    assert first["enqueued"] == 1 and [c["enqueued"] for c in later] == [0, 0]
    assert carried(client, key) == Counter({d.pk: 1 for d in waiting}), "the lost one is back, once"
    # And the message that came back is the lost delivery's: run it and it is the one sent.
    deliveries.attempt_delivery(waiting[-1].pk)
    assert Delivery.objects.get(pk=waiting[-1].pk).status == "sent"


def test_a_whole_queue_lost_is_sent_again_once(broker):
    client, key = broker
    waiting = backlog(N)
    client.delete(key)  # a broker that restarted without its data

    counts = sweeps_later(3)

    assert [c["enqueued"] for c in counts] == [N, 0, 0]
    assert carried(client, key) == Counter({d.pk: 1 for d in waiting})


def test_the_later_links_of_a_waiting_chain_are_not_lost(broker, celery_app):
    from celery import chain

    from syndicator.dispatch import DELIVER_TASK

    client, key = broker
    feed = Feed.objects.create(url="https://news.example/feed", enabled=False)
    target = Target.objects.create(name="out", kind="outbox", settings={"format": "telegram"})
    ordered = [
        Delivery.objects.create(
            post=Post.objects.create(
                feed=feed, guid=f"g-{n}", url=f"https://news.example/{n}", title="Story"
            ),
            target=target,
        )
        for n in range(4)
    ]
    # One target's deliveries one after the other: one message carries the later links.
    links = [celery_app.signature(DELIVER_TASK, args=[d.pk], queue=QUEUE, immutable=True) for d in ordered]
    chain(*links).apply_async()
    Delivery.objects.update(enqueued_at=db_now())
    assert client.llen(key) == 1

    counts = sweeps_later(3)

    assert [c["enqueued"] for c in counts] == [0, 0, 0] and client.llen(key) == 1
    assert carried(client, key) == Counter({d.pk: 1 for d in ordered})


def test_a_chain_a_worker_holds_waits_while_it_runs_and_comes_back_when_its_lease_expires(broker, celery_app):
    from celery import chain

    from syndicator.dispatch import DELIVER_TASK

    client, key = broker
    feed = Feed.objects.create(url="https://news.example/feed", enabled=False)
    target = Target.objects.create(name="out", kind="outbox", settings={"format": "telegram"})
    head, *later = [
        Delivery.objects.create(
            post=Post.objects.create(
                feed=feed, guid=f"g-{n}", url=f"https://news.example/{n}", title="Story"
            ),
            target=target,
        )
        for n in range(3)
    ]
    links = [
        celery_app.signature(DELIVER_TASK, args=[d.pk], queue=QUEUE, immutable=True) for d in [head, *later]
    ]
    chain(*links).apply_async()
    Delivery.objects.update(enqueued_at=db_now())
    # A worker takes the message (kombu moves it to the `unacked` hash) and claims the first.
    unacked = celery_app.conf.broker_transport_options.get("global_keyprefix", "") + "unacked"
    client.hset(unacked, "tag-1", json.dumps([json.loads(client.rpop(key)), "", QUEUE]))
    assert deliveries.claim(head.pk)
    try:
        assert [c["enqueued"] for c in sweeps_later(2)] == [0, 0], "its later links wait for it"

        # The worker dies: once the lease of the one it ran expires, the later links are lost.
        Delivery.objects.filter(pk=head.pk).update(lease_until=db_now() - timedelta(seconds=1))
        [first, second] = sweeps_later(2)
        assert first["requeued_lost"] == 1 and first["enqueued"] == 3 and second["enqueued"] == 0
        assert carried(client, key) == Counter({d.pk: 1 for d in [head, *later]})
    finally:
        client.delete(unacked)


def test_a_targets_deliveries_are_one_batch_message_whose_ids_count_as_waiting(broker):
    """dispatch.enqueue sends one target's deliveries as one message (issue 16.3); the sweeper
    reads every id it carries as waiting, and re-sends none of them."""
    client, key = broker
    feed = Feed.objects.create(url="https://news.example/feed", enabled=False)
    target = Target.objects.create(name="out", kind="outbox", settings={"format": "telegram"})
    ordered = [
        Delivery.objects.create(
            post=Post.objects.create(feed=feed, guid=f"g-{n}", url=f"https://news.example/{n}", title="S"),
            target=target,
        )
        for n in range(5)
    ]
    assert deliveries.enqueue([(d.pk, "outbox") for d in ordered]) == 5
    assert client.llen(key) == 1
    message = json.loads(client.lindex(key, 0))
    assert message["headers"]["task"] == "tasks.deliver.deliver_batch"  # not a chain of 5 messages
    assert list(_deliveries(client.lindex(key, 0))) == [d.pk for d in ordered]  # in publishing order
    Delivery.objects.update(enqueued_at=db_now())

    counts = sweeps_later(3)

    assert [c["enqueued"] for c in counts] == [0, 0, 0] and client.llen(key) == 1
    assert carried(client, key) == Counter({d.pk: 1 for d in ordered})


def test_a_batch_sends_in_order_and_passes_on_what_it_cannot_start_in_its_time(broker, settings):
    """delivery.attempt_batch starts a delivery only within a fifth of the task's time limit; the
    rest go on as one new batch message, in the same order, none sent twice."""
    client, key = broker
    feed = Feed.objects.create(url="https://news.example/feed", enabled=False)
    target = Target.objects.create(name="out", kind="outbox", settings={"format": "telegram"})
    ordered = [
        Delivery.objects.create(
            post=Post.objects.create(feed=feed, guid=f"g-{n}", url=f"https://news.example/{n}", title="S"),
            target=target,
        )
        for n in range(4)
    ]
    settings.CELERY_TASK_TIME_LIMIT = 0  # no time for a second delivery: each batch sends one

    assert deliveries.attempt_batch([d.pk for d in ordered], "outbox") == 1

    assert [d.status for d in Delivery.objects.order_by("pk")] == ["sent", "queued", "queued", "queued"]
    assert client.llen(key) == 1
    assert list(_deliveries(client.lindex(key, 0))) == [d.pk for d in ordered[1:]]
    settings.CELERY_TASK_TIME_LIMIT = 120
    assert deliveries.attempt_batch([d.pk for d in ordered], "outbox") == 4  # the first: nothing to claim
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}
    assert set(Delivery.objects.values_list("attempts", flat=True)) == {1}
