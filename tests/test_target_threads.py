"""The Threads target over real HTTP against the Threads emulator: the two-step container flow,
Threads' length rule, every way an answer can be lost between or after the two steps (settled
without a second post), the 250-a-day quota, the error rows and the token's secrecy."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import random
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from syndicator import delivery as deliveries
from syndicator.errors import TargetBroken
from syndicator.models import Delivery, DeliveryAttempt, Feed, Post, Target
from syndicator.targets import get_adapter
from syndicator.targets.threads import QUOTA_WAIT, recorded_container
from syndicator.targets.threads.text import threads_length
from tests.emulators.threads import CONTAINER_TTL, TOKEN, USER_ID, USERNAME, Harness

pytestmark = pytest.mark.django_db

_numbers = itertools.count(1)


@pytest.fixture
def threads() -> Iterator[Harness]:
    with Harness() as harness:
        yield harness


def new_post(**fields: object) -> Post:
    n = next(_numbers)
    feed = Feed.objects.create(url=f"https://www.nejatngo.org/feed/t{n}", language="en")
    values = {
        "guid": f"https://www.nejatngo.org/?p=t{n}",
        "url": f"https://www.nejatngo.org/en/news/{n}",
        "title": f"Families of Camp Ashraf residents ask for news ({n})",
        "summary": "Nejat Society met families who have waited years for a word from their children.",
        "categories": ["Human Rights"],
        "language": "en",
        **fields,
    }
    return Post.objects.create(feed=feed, **values)


def deliver(target: Target, post: Post) -> Delivery:
    delivery = Delivery.objects.create(post=post, target=target)
    deliveries.attempt_delivery(delivery.pk)
    delivery.refresh_from_db()
    return delivery


def calls(harness: Harness, suffix: str) -> list:
    return [r for r in harness.emulator.requests if r.method == "POST" and r.path.endswith(suffix)]


# --- publishing ----------------------------------------------------------------------------------


def test_a_post_is_a_container_then_published_with_its_link_and_permalink(threads):
    post = new_post()
    delivery = deliver(threads.make_target(), post)

    [published] = threads.sent()
    assert delivery.status == "sent", delivery.last_error
    assert delivery.external_id == published["id"]
    assert delivery.external_url == published["permalink"]
    assert delivery.external_url.startswith(f"https://www.threads.net/@{USERNAME}/post/")
    assert post.title in published["text"] and post.summary in published["text"]
    link = f"{post.url}?utm_source=threads&utm_medium=social"
    assert link in published["text"] and published["link_attachment"] == link
    [container] = calls(threads, "/threads")
    [publish] = calls(threads, "/threads_publish")
    assert container.form["media_type"] == "TEXT" and container.form["access_token"] == TOKEN
    assert publish.query["creation_id"] == [published["creation_id"]]
    assert not [r for r in threads.emulator.requests if TOKEN in r.path or "access_token" in r.query]


def test_the_text_fits_500_characters_with_emojis_counted_as_bytes(threads):
    post = new_post(title="🕊️ " * 40 + "Freedom for the families", summary="خانواده‌ها منتظرند " * 60)
    delivery = deliver(threads.make_target(), post)

    [published] = threads.sent()
    assert delivery.status == "sent", delivery.last_error
    assert threads_length(published["text"]) <= 500 < threads_length(post.title + post.summary)
    assert published["text"].rstrip().endswith("utm_medium=social"), "the link is never shortened"


def test_an_editors_text_replaces_the_body_and_keeps_the_link(threads):
    post = new_post()
    delivery = Delivery.objects.create(post=post, target=threads.make_target(), text_override="Read this.")
    deliveries.attempt_delivery(delivery.pk)

    [published] = threads.sent()
    assert published["text"] == f"Read this.\n\n{post.url}?utm_source=threads&utm_medium=social"


# --- answers lost between or after the two steps -----------------------------------------------


def test_a_publish_whose_answer_was_lost_is_found_not_posted_again(threads, settings):
    threads.emulator.lose_next_answers(step="publish")  # published; the answer comes after the timeout
    delivery = deliver(threads.make_target(), new_post())
    [published] = threads.sent()
    assert delivery.status == "uncertain"
    assert recorded_container(delivery) == published["creation_id"]
    assert "its container will be looked up shortly" in delivery.last_error

    settings.SYNDICATOR_VERIFY_AFTER = 0
    looked_up = deliveries.attempt_delivery(delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == "sent" and delivery.external_id == published["id"]
    assert delivery.external_url == published["permalink"]
    assert looked_up.kind == "lookup" and "found_on_profile" in looked_up.message
    assert len(threads.sent()) == 1 and len(calls(threads, "/threads_publish")) == 1, "never published twice"


def test_a_publish_that_hung_before_posting_publishes_the_same_container(threads, settings):
    threads.inject("timeout")  # the publish request hangs and publishes nothing
    delivery = deliver(threads.make_target(), new_post())
    assert delivery.status == "uncertain" and threads.sent() == []

    settings.SYNDICATOR_VERIFY_AFTER = 0
    deliveries.attempt_delivery(delivery.pk)

    delivery.refresh_from_db()
    [published] = threads.sent()
    assert delivery.status == "sent" and delivery.external_id == published["id"]
    assert len(calls(threads, "/threads")) == 1, "no second container"
    assert published["creation_id"] == recorded_container(delivery)


def test_a_transient_publish_failure_is_retried_with_the_same_container(threads):
    threads.inject("transient")  # code 2 on publishing: nothing was done
    delivery = deliver(threads.make_target(), new_post())
    assert delivery.status == "retrying" and threads.sent() == []

    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    deliveries.attempt_delivery(delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == "sent" and len(threads.sent()) == 1
    assert len(calls(threads, "/threads")) == 1 and "reused_container" in delivery.attempt_log.last().message


def test_an_expired_container_is_replaced_and_posted_once(threads):
    threads.inject("transient")
    delivery = deliver(threads.make_target(), new_post())
    first = recorded_container(delivery)
    started = threads.emulator.now()
    threads.emulator.now = lambda: started + CONTAINER_TTL + 60  # a day later: the container expired

    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    deliveries.attempt_delivery(delivery.pk)

    delivery.refresh_from_db()
    [published] = threads.sent()
    assert delivery.status == "sent" and published["creation_id"] != first
    assert len(calls(threads, "/threads")) == 2


def lost_worker(
    threads: Harness, target: Target, post: Post, *, published: bool, **fields: object
) -> Delivery:
    """A delivery whose worker died mid-send (its attempt's message is lost with it)."""
    delivery = Delivery.objects.create(post=post, target=target, **fields)
    assert deliveries.claim(delivery.pk)
    DeliveryAttempt.objects.create(delivery=delivery, number=1)
    if published:  # the dead worker got as far as publishing
        text = get_adapter(target).render(delivery).text
        base = f"{threads.emulator.base_url}/v1.0/{USER_ID}"
        made = httpx.post(f"{base}/threads", data={"media_type": "TEXT", "text": text, "access_token": TOKEN})
        httpx.post(f"{base}/threads_publish", data={"creation_id": made.json()["id"], "access_token": TOKEN})
    Delivery.objects.filter(pk=delivery.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert deliveries.sweep()["uncertain"] == 1
    return delivery


@pytest.mark.parametrize("published", [True, False])
def test_a_worker_lost_mid_send_is_found_by_its_text_or_published_once(threads, settings, published):
    settings.SYNDICATOR_VERIFY_AFTER = 0
    delivery = lost_worker(threads, threads.make_target(), new_post(), published=published)

    deliveries.attempt_delivery(delivery.pk)

    delivery.refresh_from_db()
    [post] = threads.sent()
    assert delivery.status == "sent" and delivery.external_id == post["id"]
    assert len(calls(threads, "/threads_publish")) == 1


def test_a_published_container_whose_post_cannot_be_found_waits_for_an_admin(threads, settings):
    threads.emulator.lose_next_answers(step="publish")
    delivery = deliver(threads.make_target(), new_post())
    threads.emulator.media.clear()  # deleted on Threads in the meantime

    settings.SYNDICATOR_VERIFY_AFTER = 0
    deliveries.attempt_delivery(delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == "uncertain" and "is PUBLISHED, but its post is not" in delivery.last_error
    assert len(calls(threads, "/threads_publish")) == 1


# --- limits and errors ----------------------------------------------------------------------------


def test_a_used_up_daily_quota_waits_an_hour_and_makes_no_container(threads):
    threads.emulator.quota_total = 1
    target = threads.make_target()
    assert deliver(target, new_post()).status == "sent"

    held = deliver(target, new_post())

    attempt = held.attempt_log.get()
    assert held.status == "retrying" and attempt.outcome == "rate_limited"
    assert attempt.retry_after == QUOTA_WAIT and "1 of its 1 posts in the last 24 hours" in held.last_error
    assert len(calls(threads, "/threads")) == 1


@pytest.mark.parametrize(("mode", "status"), [("bad_token", "queued"), ("rejected_content", "failed")])
def test_a_dead_token_pauses_the_target_and_rejected_text_fails(threads, mode, status):
    target = threads.make_target()
    threads.inject(mode)
    delivery = deliver(target, new_post())
    target.refresh_from_db()
    assert delivery.status == status
    assert (target.paused_at is not None) == (mode == "bad_token")


def test_check_reads_the_account_and_the_quota(threads):
    target = threads.make_target()
    assert (
        get_adapter(target).check()
        == f"ok: publishing as @{USERNAME} ({USER_ID}); 0 of 250 posts used in 24 h"
    )
    threads.emulator.revoke(TOKEN)
    with pytest.raises(TargetBroken, match="token rejected"):
        get_adapter(target).check()


def test_the_token_never_reaches_the_log_or_the_delivery_log(threads, caplog):
    caplog.set_level(logging.DEBUG)
    target = threads.make_target()
    for mode in threads.expected:
        threads.inject(mode)
        Target.objects.filter(pk=target.pk).update(paused_at=None)
        deliver(target, new_post())

    stored = [
        *Delivery.objects.values_list("last_error", flat=True),
        *DeliveryAttempt.objects.values_list("message", flat=True),
    ]
    assert DeliveryAttempt.objects.count() == len(threads.expected)
    assert not [text for text in [caplog.text, *stored] if TOKEN in text]


def test_a_flaky_and_slow_network_gets_each_post_exactly_once(threads, settings):
    """Like the fault suite: a share of POSTs fails transiently, a share of answers is lost."""
    settings.SYNDICATOR_VERIFY_AFTER = 0
    rng, emulator = random.Random(7), threads.emulator
    original = emulator.dispatch

    def dispatch(request):
        if request.method == "POST" and rng.random() < 0.3:
            return threads.transient_reply()  # before the handler: nothing is done
        reply = original(request)
        lost = request.method == "POST" and reply.status == 200 and rng.random() < 0.3
        return dataclasses.replace(reply, delay=2.0) if lost else reply

    emulator.dispatch = dispatch
    target = threads.make_target()
    pending = [Delivery.objects.create(post=new_post(), target=target) for _ in range(8)]
    for _ in range(12):
        for delivery in pending:
            Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
            deliveries.attempt_delivery(delivery.pk)
        pending = [d for d in pending if Delivery.objects.get(pk=d.pk).status != "sent"]

    assert pending == []
    published = {post["text"]: post["id"] for post in threads.sent()}
    assert len(threads.sent()) == 8 == len(published), "each post published exactly once"
    for delivery in Delivery.objects.filter(target=target):
        assert published[get_adapter(target).render(delivery).text] == delivery.external_id


def test_a_repost_of_the_same_text_is_not_mistaken_for_the_earlier_post(threads, settings):
    settings.SYNDICATOR_VERIFY_AFTER = 0
    target, post = threads.make_target(), new_post()
    first = deliver(target, post)
    for earlier in threads.emulator.media.values():
        earlier["created_at"] -= 7200  # published two hours ago
    # An editor's repost of it, whose worker died before anything went out.
    again = lost_worker(threads, target, post, published=False, origin=Delivery.Origin.MANUAL)

    deliveries.attempt_delivery(again.pk)

    again.refresh_from_db()
    assert again.status == "sent" and again.external_id != first.external_id
    assert len(threads.sent()) == 2


def test_a_worker_that_died_after_a_second_container_is_found_not_posted_a_third_time(threads, settings):
    settings.SYNDICATOR_VERIFY_AFTER = 0
    threads.inject("transient")
    delivery = deliver(threads.make_target(), new_post())  # attempt 1 recorded container C1
    started = threads.emulator.now()
    threads.emulator.now = lambda: started + CONTAINER_TTL + 60  # C1 expires
    text = get_adapter(delivery.target).render(delivery).text
    base = f"{threads.emulator.base_url}/v1.0/{USER_ID}"
    # Attempt 2's worker made C2, published it and died before anything was written down.
    made = httpx.post(f"{base}/threads", data={"media_type": "TEXT", "text": text, "access_token": TOKEN})
    httpx.post(f"{base}/threads_publish", data={"creation_id": made.json()["id"], "access_token": TOKEN})
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())

    deliveries.attempt_delivery(delivery.pk)

    delivery.refresh_from_db()
    [post] = threads.sent()
    assert delivery.status == "sent" and delivery.external_id == post["id"]
