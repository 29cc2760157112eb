"""The Pinterest target over real HTTP against the Pinterest emulator: image Pins with their title,
description, alt text and link within Pinterest's limits, posts without an image skipped with the
reason, the error rows, uncertain Pins settled by looking them up on the board, and secrecy."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest
from django.utils import timezone

from syndicator import delivery as deliveries
from syndicator.errors import TargetBroken
from syndicator.models import Delivery, DeliveryAttempt, Feed, Post, Target
from syndicator.targets import get_adapter
from syndicator.targets.faults import RATE_LIMIT_FALLBACK, retry_after
from syndicator.targets.pinterest import NO_IMAGE, RETRY_HEADERS, pin_url
from tests.emulators.pinterest import BOARD_ID, TOKEN, USERNAME, Harness

pytestmark = pytest.mark.django_db

_numbers = itertools.count(1)


@pytest.fixture
def pinterest() -> Iterator[Harness]:
    with Harness() as harness:
        yield harness


def new_post(harness: Harness, **fields: object) -> Post:
    n = next(_numbers)
    feed = Feed.objects.create(url=f"https://www.nejatngo.org/feed/p{n}", language="en")
    values = {
        "guid": f"https://www.nejatngo.org/?p=p{n}",
        "url": f"https://www.nejatngo.org/en/news/{n}",
        "title": f"Families of Camp Ashraf residents ask for news ({n})",
        "summary": "Nejat Society met families who have waited years for a word from their children.",
        "image_url": harness.emulator.image_url(),
        "language": "en",
        **fields,
    }
    return Post.objects.create(feed=feed, **values)


def deliver(target: Target, post: Post, **fields: object) -> Delivery:
    delivery = Delivery.objects.create(post=post, target=target, **fields)
    deliveries.attempt_delivery(delivery.pk)
    delivery.refresh_from_db()
    return delivery


def creates(harness: Harness) -> list:
    return [r for r in harness.emulator.requests if r.method == "POST" and r.path == "/v5/pins"]


# --- pinning -------------------------------------------------------------------------------------


def test_a_post_becomes_an_image_pin_with_title_description_alt_text_and_link(pinterest):
    post = new_post(pinterest)
    delivery = deliver(pinterest.make_target(fallback_image=""), post)

    [pin] = pinterest.sent()
    assert delivery.status == "sent", delivery.last_error
    assert delivery.external_id == pin["id"] and delivery.external_url == pin_url(pin["id"])
    assert delivery.external_url == f"https://www.pinterest.com/pin/{pin['id']}/"
    assert pin["board_id"] == BOARD_ID and pin["title"] == post.title and pin["alt_text"] == post.title
    assert pin["description"] == post.summary
    assert pin["link"] == f"{post.url}?utm_source=pinterest&utm_medium=social"
    assert pin["image_url"] == post.image_url
    [request] = creates(pinterest)
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert post.title in delivery.rendered_text and post.summary in delivery.rendered_text


def test_a_post_without_an_image_is_skipped_with_the_reason_and_nothing_is_sent(pinterest):
    delivery = deliver(pinterest.make_target(fallback_image=""), new_post(pinterest, image_url=""))

    assert delivery.status == "skipped" and NO_IMAGE in delivery.last_error
    assert delivery.attempt_log.get().outcome == "skipped"
    assert pinterest.emulator.requests == [], "no request left"
    delivery.target.refresh_from_db()
    assert delivery.target.paused_at is None, "a skipped post says nothing against the target"


def test_the_fallback_image_is_pinned_for_a_post_without_one(pinterest):
    logo = pinterest.emulator.image_url()
    delivery = deliver(pinterest.make_target(fallback_image=logo), new_post(pinterest, image_url=""))

    [pin] = pinterest.sent()
    assert delivery.status == "sent" and pin["image_url"] == logo


def test_title_and_description_fit_pinterests_limits(pinterest):
    post = new_post(pinterest, title="Nejat " * 40, summary="The families of Camp Ashraf wait. " * 40)
    delivery = deliver(pinterest.make_target(), post)

    [pin] = pinterest.sent()
    assert delivery.status == "sent", delivery.last_error
    assert len(pin["title"]) <= 100 and pin["title"].endswith("…")
    assert len(pin["description"]) <= 500 and pin["description"].endswith("…")


def test_an_rtl_title_that_starts_in_latin_keeps_its_mark_within_100(pinterest):
    title = "MEK: " + ("خانواده‌ها منتظرند " * 5).strip() + "!"  # 100: the mark would make it 101
    assert len(title) == 100
    delivery = deliver(pinterest.make_target(), new_post(pinterest, title=title, language="fa"))

    [pin] = pinterest.sent()
    assert delivery.status == "sent", delivery.last_error
    assert pin["title"].startswith("\u200fMEK:") and len(pin["title"]) <= 100


def test_an_editors_text_is_the_description(pinterest):
    post = new_post(pinterest)
    deliver(pinterest.make_target(), post, text_override="Pin this for the families.")

    [pin] = pinterest.sent()
    assert pin["description"] == "Pin this for the families." and pin["title"] == post.title


# --- errors --------------------------------------------------------------------------------------


def test_a_429_waits_as_retry_after_says(pinterest):
    pinterest.inject("rate_limited")
    delivery = deliver(pinterest.make_target(), new_post(pinterest))
    attempt = delivery.attempt_log.get()
    assert delivery.status == "retrying" and attempt.outcome == "rate_limited" and attempt.retry_after == 3


def test_a_429_wait_is_read_from_retry_after_then_x_ratelimit_reset_then_a_minute():
    now = 1_800_000_000.0
    date = format_datetime(datetime.fromtimestamp(now + 90, UTC), usegmt=True)

    def wait(headers: dict[str, str]) -> float:
        return retry_after(httpx.Headers(headers), RETRY_HEADERS, now=now) or RATE_LIMIT_FALLBACK

    assert wait({"Retry-After": "7", "X-RateLimit-Reset": "99"}) == 7
    assert wait({"Retry-After": date}) == 90
    assert wait({"X-RateLimit-Reset": str(now + 30)}) == 30
    assert wait({"X-RateLimit-Reset": "12"}) == 12
    assert wait({}) == RATE_LIMIT_FALLBACK


@pytest.mark.parametrize("mode", ["bad_token", "forbidden"])
def test_a_dead_token_or_a_refused_board_pauses_the_target(pinterest, mode):
    target = pinterest.make_target()
    pinterest.inject(mode)
    delivery = deliver(target, new_post(pinterest))
    target.refresh_from_db()
    assert delivery.status == "queued" and target.paused_at is not None


def test_a_missing_board_pauses_the_target_and_rejected_content_fails(pinterest):
    gone = pinterest.make_target("gone", board_id="12345")
    assert deliver(gone, new_post(pinterest)).status == "queued"
    gone.refresh_from_db()
    assert "board not found" in gone.paused_reason and "(404)" in gone.paused_reason

    pinterest.inject("rejected_content")
    assert deliver(pinterest.make_target(), new_post(pinterest)).status == "failed"


# --- uncertain Pins ------------------------------------------------------------------------------


def test_a_pin_made_but_unanswered_is_found_on_the_board_not_pinned_twice(pinterest, settings):
    pinterest.emulator.lose_next_answers()
    delivery = deliver(pinterest.make_target(), new_post(pinterest))
    [pin] = pinterest.sent()
    assert delivery.status == "uncertain" and "looked up on the board shortly" in delivery.last_error

    settings.SYNDICATOR_VERIFY_AFTER = 0
    looked_up = deliveries.attempt_delivery(delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == "sent" and delivery.external_id == pin["id"]
    assert looked_up.kind == "lookup" and "found_on_board" in looked_up.message
    assert len(pinterest.sent()) == 1 and len(creates(pinterest)) == 1


def test_a_5xx_that_made_no_pin_is_pinned_once_after_the_look_up(pinterest, settings):
    pinterest.inject("server_error")
    delivery = deliver(pinterest.make_target(), new_post(pinterest))
    assert delivery.status == "uncertain" and pinterest.sent() == []

    settings.SYNDICATOR_VERIFY_AFTER = 0
    deliveries.attempt_delivery(delivery.pk)

    delivery.refresh_from_db()
    [pin] = pinterest.sent()
    assert delivery.status == "sent" and delivery.external_id == pin["id"]


def test_an_editors_repost_is_not_mistaken_for_the_earlier_pin(pinterest, settings):
    settings.SYNDICATOR_VERIFY_AFTER = 0
    target, post = pinterest.make_target(), new_post(pinterest)
    first = deliver(target, post)
    for pin in pinterest.emulator.pins_made.values():
        pin["created_at"] = "2026-01-01T08:00:00"  # pinned long ago
    pinterest.inject("server_error")  # the repost's Pin is refused with a 5xx: uncertain, none made
    again = deliver(target, post, origin=Delivery.Origin.MANUAL)
    assert again.status == "uncertain"

    deliveries.attempt_delivery(again.pk)

    again.refresh_from_db()
    assert again.status == "sent" and again.external_id != first.external_id
    assert len(pinterest.sent()) == 2


# --- check and secrecy ---------------------------------------------------------------------------


def test_check_reads_the_account_and_the_board(pinterest):
    target = pinterest.make_target(fallback_image="")
    verdict = get_adapter(target).check()
    assert (
        verdict
        == f"ok: pinning as {USERNAME} to board 'News' ({BOARD_ID}); posts without an image are skipped"
    )
    with pytest.raises(TargetBroken, match="board not found"):
        get_adapter(pinterest.make_target("other", board_id="999")).check()
    with pytest.raises(TargetBroken, match="board_id must be"):
        get_adapter(pinterest.make_target("bad", board_id="news")).check()


def test_the_token_never_reaches_the_log_or_the_delivery_log(pinterest, caplog):
    caplog.set_level(logging.DEBUG)
    target = pinterest.make_target()
    for mode in pinterest.expected:
        pinterest.inject(mode)
        Target.objects.filter(pk=target.pk).update(paused_at=None)
        deliver(target, new_post(pinterest))

    stored = [
        *Delivery.objects.values_list("last_error", flat=True),
        *DeliveryAttempt.objects.values_list("message", flat=True),
    ]
    assert DeliveryAttempt.objects.count() == len(pinterest.expected)
    assert not [text for text in [caplog.text, *stored] if TOKEN in text]


def test_a_flaky_and_slow_network_gets_each_pin_exactly_once(pinterest, settings):
    """Like the fault suite: a share of POSTs is refused (429), a share of answers is lost."""
    settings.SYNDICATOR_VERIFY_AFTER = 0
    rng, emulator = random.Random(5), pinterest.emulator
    original = emulator.dispatch

    def dispatch(request):
        if request.method == "POST" and rng.random() < 0.3:
            return pinterest.transient_reply()
        reply = original(request)
        lost = request.method == "POST" and reply.status == 201 and rng.random() < 0.3
        return dataclasses.replace(reply, delay=2.0) if lost else reply

    emulator.dispatch = dispatch
    target = pinterest.make_target()
    pending = [Delivery.objects.create(post=new_post(pinterest), target=target) for _ in range(8)]
    for _ in range(12):
        for delivery in pending:
            Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
            deliveries.attempt_delivery(delivery.pk)
        pending = [d for d in pending if Delivery.objects.get(pk=d.pk).status != "sent"]

    assert pending == []
    pins = {pin["link"]: pin["id"] for pin in pinterest.sent()}
    assert len(pinterest.sent()) == 8 == len(pins), "each post pinned exactly once"
    for delivery in Delivery.objects.filter(target=target).select_related("post"):
        assert pins[f"{delivery.post.url}?utm_source=pinterest&utm_medium=social"] == delivery.external_id
