"""The outbox dry run's injected failures: built like a real network's error answers, settings typed."""

from __future__ import annotations

import pytest

from syndicator import delivery as deliveries
from syndicator.errors import (
    DeliveryError,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    TargetBroken,
    TransientError,
)
from syndicator.models import Delivery, Feed, Post, Target
from syndicator.targets import get_adapter

pytestmark = pytest.mark.django_db


@pytest.fixture
def post() -> Post:
    feed = Feed.objects.create(url="https://news.example/feed", language="en")
    return Post.objects.create(feed=feed, guid="g-1", url="https://news.example/a-story", title="A story")


def outbox(name: str = "box", **settings: object) -> Target:
    return Target.objects.create(name=name, kind="outbox", settings={"format": "telegram", **settings})


def send(target: Target, post: Post) -> object:
    delivery = Delivery.objects.create(post=post, target=target, origin="manual")  # one per send
    adapter = get_adapter(target)
    return adapter.send(adapter.render(delivery), delivery)


@pytest.mark.parametrize(
    ("kind", "error", "status", "wait"),
    [
        ("transient", TransientError, 503, None),
        ("rate_limited", RateLimited, 429, 1.0),
        ("permanent", PermanentError, 400, None),
        ("unknown", OutcomeUnknown, None, None),
        ("broken", TargetBroken, 401, None),
    ],
)
def test_each_injected_failure_carries_its_status_and_wait_like_a_real_one(post, kind, error, status, wait):
    target = outbox(fail=kind, fail_next=1)

    with pytest.raises(DeliveryError) as raised:
        send(target, post)

    assert type(raised.value) is error
    assert (raised.value.http_status, raised.value.retry_after) == (status, wait)
    assert str(raised.value).startswith("outbox (dry run) send: injected")
    send(target, post)  # fail_next is spent: the next send goes through


def test_the_injected_wait_is_read_as_a_duration_and_zero_means_at_once(post):
    with pytest.raises(RateLimited) as raised:
        send(outbox(fail="rate_limited", fail_next=1, fail_retry_after="2m"), post)
    assert raised.value.retry_after == 120.0

    with pytest.raises(RateLimited) as raised:
        send(outbox("box-2", fail="rate_limited", fail_next=1, fail_retry_after=0), post)
    assert raised.value.retry_after == 0  # on purpose, not the fallback a real wait-less 429 gets


def test_fail_next_stored_as_text_is_read_typed_and_counts_down(post):
    target = outbox(fail="transient", fail_next="2")  # as an older version stored it
    for _ in range(2):
        with pytest.raises(TransientError):
            send(target, post)
    target.refresh_from_db()
    assert target.settings["fail_next"] == 0
    assert send(target, post).external_id.startswith("outbox-")


def test_a_bad_fail_next_pauses_the_target(post):
    target = outbox(fail="transient", fail_next="many")
    delivery = Delivery.objects.create(post=post, target=target)

    attempt = deliveries.attempt_delivery(delivery.pk)

    target.refresh_from_db()
    assert attempt is not None and attempt.error_class == "TargetBroken"
    assert target.paused_at is not None and "setting fail_next='many'" in target.paused_reason


def test_check_fails_on_an_injected_dead_token_as_a_real_network_would():
    with pytest.raises(TargetBroken) as raised:
        get_adapter(outbox(fail="broken", fail_next=1)).check()
    assert raised.value.http_status == 401 and "dead token" in str(raised.value)
    # Only a dead token fails the check: nothing else is logged in to.
    assert get_adapter(outbox("box-2", fail="transient", fail_next=1)).check().startswith("dry run")
