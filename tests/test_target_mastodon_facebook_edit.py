"""Editing and deleting posts that are out, on Mastodon and on a Facebook Page (issue #12), over
real HTTP against each network's emulator: what a send records for a later edit or delete, an
edit (Mastodon's history growing by one version, a repeated edit changing nothing), a delete (and
a repeat counting as done), the refusal to edit a post that is gone, and on every call a 5xx →
TransientError, a rate limit → RateLimited with its wait, one admin message without the token."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from syndicator import delivery as deliveries
from syndicator.errors import (
    DeliveryError,
    EditRefused,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    TargetBroken,
    TransientError,
)
from syndicator.models import Delivery, Feed, Post
from syndicator.targets import get_adapter
from syndicator.targets.base import SendResult
from tests.emulators import facebook, mastodon
from tests.emulators.base import HttpHarness

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

KINDS = ("mastodon", "facebook")
HARNESSES: dict[str, Callable[[], HttpHarness]] = {
    "mastodon": mastodon.Harness,
    "facebook": facebook.Harness,
}
IMAGE = "https://www.nejatngo.org/wp-content/uploads/2025/12/camp.jpg"
_numbers = itertools.count(1)


@pytest.fixture(params=KINDS)
def network(request: pytest.FixtureRequest) -> Iterator[Any]:
    with HARNESSES[request.param]() as harness:
        yield harness


@pytest.fixture
def social() -> Iterator[mastodon.Harness]:
    with mastodon.Harness() as harness:
        yield harness


@pytest.fixture
def fb() -> Iterator[facebook.Harness]:
    with facebook.Harness() as harness:
        yield harness


def sent_delivery(harness: Any, *, image_url: str = "", **target_settings: Any) -> Delivery:
    """A delivery sent through the real delivery path (so sent_details is what a send stores)."""
    n = next(_numbers)
    feed = Feed.objects.create(url=f"https://www.nejatngo.org/feed/e{n}-{time.time_ns()}", language="en")
    post = Post.objects.create(
        feed=feed,
        guid=f"https://www.nejatngo.org/?p=e{n}-{time.time_ns()}",
        url=f"https://www.nejatngo.org/en/news/e{n}",
        title=f"Families ask for news of their children, letter {n} ({time.time_ns()})",
        summary="Nejat Society met families who have waited years for a word from their children.",
        language="en",
        image_url=image_url,
    )
    target = harness.make_target(name=f"{harness.kind}-e{n}", **target_settings)
    delivery = Delivery.objects.create(post=post, target=target)
    deliveries.attempt_delivery(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == "sent", delivery.last_error
    return delivery


def sent_text(harness: Any) -> str:
    """The text the network got for the last post sent (Facebook's link travels beside it)."""
    return str(harness.sent()[-1]["text"])


def edited(delivery: Delivery, text: str) -> SendResult:
    """Edit to ``text``, and record the result on the delivery as the delivery machinery does."""
    adapter = get_adapter(delivery.target)
    message = adapter.render(delivery)
    message.text = text
    result = adapter.edit(message, delivery)
    delivery.external_id, delivery.sent_details = result.external_id, result.details
    return result


def edit_or_delete(delivery: Delivery, operation: str) -> None:
    if operation == "edit":
        edited(delivery, "Corrected: families ask for news of their children")
    else:
        get_adapter(delivery.target).delete(delivery)


# --- each network's words for a fault --------------------------------------------------------------


def server_error(harness: Any) -> None:
    if harness.kind == "mastodon":
        harness.emulator.fail_next(
            status=503, body=b"<html><h1>503 Service Temporarily Unavailable</h1></html>"
        )
    else:
        harness.emulator.fail_next(
            status=500, json=facebook.graph_error(2, "Service temporarily unavailable", type="")
        )


def rate_limit(harness: Any, wait: int, code: int = 32) -> float:
    """A rate-limit answer in the network's words; the wait the adapter should take from it."""
    if harness.kind == "mastodon":
        headers = {
            "X-RateLimit-Limit": "300",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": mastodon.rate_limit_reset(wait),
        }
        harness.emulator.fail_next(status=429, json={"error": "Too many requests"}, headers=headers)
    else:  # Graph throttles with a code and tells the wait in its usage header, in minutes
        harness.emulator.fail_next(
            status=400,
            json=facebook.graph_error(code, f"(#{code}) Request limit reached", is_transient=True),
            headers=facebook.buc_usage(facebook.PAGE_ID, wait / 60),
        )
    return float(wait)


def echoing_error(harness: Any) -> str:
    """A refusal whose words carry the token (as a proxy or a debug answer might); the token."""
    if harness.kind == "mastodon":
        said = f"request with token {mastodon.TOKEN} refused"
        harness.emulator.fail_next(status=422, json={"error": f"Validation failed: {said}"})
        return mastodon.TOKEN
    said = f"request with access_token={facebook.TOKEN} refused"
    harness.emulator.fail_next(status=400, json=facebook.graph_error(100, f"(#100) {said}"))
    return facebook.TOKEN


# --- what a send records ---------------------------------------------------------------------------


def test_the_send_records_what_an_edit_or_delete_needs(network):
    delivery = sent_delivery(network)
    details = delivery.sent_details
    if network.kind == "mastodon":
        [status] = network.sent()
        assert details == {"status_id": status["id"]} and delivery.external_id == status["id"]
    else:
        [post] = network.sent()
        assert details == {"page_id": facebook.PAGE_ID, "post_id": post["post_id"], "photo": False}
        assert delivery.external_id == post["post_id"]


def test_a_mastodon_send_with_an_image_records_its_media_and_the_image(social):
    delivery = sent_delivery(social, image=True, image_url=social.emulator.image_url())
    [status] = social.sent()
    assert status["media_ids"]
    assert delivery.sent_details == {
        "status_id": status["id"],
        "media_ids": status["media_ids"],
        "image_url": social.emulator.image_url(),
    }


def test_a_facebook_photo_post_records_its_photo_and_post(fb):
    delivery = sent_delivery(fb, photo=True, image_url=IMAGE)
    [post] = fb.sent()
    assert delivery.sent_details == {
        "page_id": facebook.PAGE_ID,
        "post_id": post["post_id"],
        "photo_id": post["photo_id"],
        "photo": True,
    }


# --- editing ---------------------------------------------------------------------------------------


def test_an_edit_changes_the_text_and_the_same_edit_again_changes_nothing(network):
    delivery = sent_delivery(network)
    original = delivery.external_id

    result = edited(delivery, "Corrected: families ask for news")
    again = edited(delivery, "Corrected: families ask for news")

    assert result.external_id == again.external_id == original
    assert result.external_url == delivery.external_url
    assert network.post_text(original) == "Corrected: families ask for news"
    assert network.edit_count(original) == 1  # the repeat changed nothing
    if network.kind == "mastodon":
        assert result.details == {"status_id": original}
    else:
        assert result.details == {"page_id": facebook.PAGE_ID, "post_id": original, "photo": False}


def test_each_mastodon_edit_adds_one_version_to_the_status_history(social):
    delivery = sent_delivery(social)
    status_id = delivery.external_id
    assert [v["content"] for v in social.emulator.history(status_id)] == [delivery.rendered_text]

    edited(delivery, "Second version")
    assert [v["content"] for v in social.emulator.history(status_id)] == [
        delivery.rendered_text,
        "Second version",
    ]
    edited(delivery, "Third version")
    edited(delivery, "Third version")  # a repeat: no version of its own

    history = social.emulator.history(status_id)
    assert [v["content"] for v in history] == [delivery.rendered_text, "Second version", "Third version"]
    [status] = social.sent()
    assert social.emulator.live[status_id]["edited_at"] and status["visibility"] == "public"


def test_a_mastodon_edit_keeps_the_visibility_and_language_and_sends_no_visibility(social):
    delivery = sent_delivery(social, visibility="unlisted")
    edited(delivery, "Corrected")

    [put] = [r for r in social.emulator.requests if r.method == "PUT"]
    assert put.path == f"/api/v1/statuses/{delivery.external_id}"
    assert put.json == {"status": "Corrected", "media_ids": [], "language": "en"}  # PUT takes no visibility
    status = social.emulator.live[delivery.external_id]
    assert (status["visibility"], status["language"]) == ("unlisted", "en")


def test_a_mastodon_edit_keeps_the_image_by_naming_its_media_again(social):
    delivery = sent_delivery(social, image=True, image_url=social.emulator.image_url())
    [media_id] = delivery.sent_details["media_ids"]
    uploads = len([r for r in social.emulator.requests if r.path == "/api/v2/media"])

    result = edited(delivery, "Corrected, same picture")

    [put] = [r for r in social.emulator.requests if r.method == "PUT"]
    assert put.json["media_ids"] == [media_id]
    assert len([r for r in social.emulator.requests if r.path == "/api/v2/media"]) == uploads  # no upload
    assert [m["id"] for m in social.emulator.live[delivery.external_id]["media_attachments"]] == [media_id]
    assert result.details["media_ids"] == [media_id]
    versions = social.emulator.history(delivery.external_id)
    assert [[m["id"] for m in v["media_attachments"]] for v in versions] == [[media_id], [media_id]]


def test_a_mastodon_edit_with_another_image_uploads_it_and_names_only_it(social):
    social.emulator.images["other.png"] = social.emulator.images["photo.png"]
    delivery = sent_delivery(social, image=True, image_url=social.emulator.image_url())
    [old] = delivery.sent_details["media_ids"]
    delivery.post.image_url = social.emulator.image_url("other.png")
    delivery.post.save(update_fields=["image_url"])

    result = edited(delivery, "Corrected, new picture")

    [new] = result.details["media_ids"]
    assert new != old and result.details["image_url"] == social.emulator.image_url("other.png")
    assert [m["id"] for m in social.emulator.live[delivery.external_id]["media_attachments"]] == [new]


def test_editing_a_post_that_is_gone_is_refused_not_failed(network):
    delivery = sent_delivery(network)
    get_adapter(delivery.target).delete(delivery)

    with pytest.raises(EditRefused, match="no longer exists"):
        edited(delivery, "Too late")


def test_a_facebook_photo_posts_caption_is_edited_with_its_link(fb):
    delivery = sent_delivery(fb, photo=True, image_url=IMAGE)
    link = fb.sent()[0]["text"].rsplit("\n\n", 1)[-1]

    edited(delivery, "Corrected caption")

    [edit] = [r for r in fb.emulator.requests if r.method == "POST" and r.path.endswith(delivery.external_id)]
    assert edit.path == f"/v25.0/{delivery.external_id}"  # the Page post, not the photo
    assert fb.post_text(delivery.external_id) == f"Corrected caption\n\n{link}"
    assert edit.form["message"] == f"Corrected caption\n\n{link}" and "link" not in edit.form


def test_a_facebook_link_post_edit_sends_only_the_message(fb):
    delivery = sent_delivery(fb)
    edited(delivery, "Corrected text")

    [edit] = [r for r in fb.emulator.requests if r.method == "POST" and r.path.endswith(delivery.external_id)]
    assert set(edit.form) == {"message", "access_token"} and edit.query == {}
    assert fb.emulator.post(delivery.external_id)["link"]  # the link stays as posted


# --- deleting --------------------------------------------------------------------------------------


def test_delete_removes_the_post(network):
    delivery = sent_delivery(network)
    assert network.post_text(delivery.external_id) == sent_text(network)

    get_adapter(delivery.target).delete(delivery)

    assert network.post_text(delivery.external_id) is None
    assert network.edit_count(delivery.external_id) == 0


def test_deleting_twice_is_done(network):
    delivery = sent_delivery(network)
    adapter = get_adapter(delivery.target)
    adapter.delete(delivery)
    requests_before = len(network.emulator.requests)

    adapter.delete(delivery)  # Mastodon's 404 "Record not found", Graph's code 100/33: done

    assert network.post_text(delivery.external_id) is None
    assert len(network.emulator.requests) > requests_before  # it did ask the network again


def test_deleting_an_edited_mastodon_status_removes_it_and_its_history(social):
    delivery = sent_delivery(social)
    edited(delivery, "Edited once")

    get_adapter(delivery.target).delete(delivery)

    assert social.emulator.history(delivery.external_id) is None
    assert social.emulator.deleted == [delivery.external_id]


def test_a_404_that_is_not_mastodons_answer_is_not_taken_as_deleted(social):
    delivery = sent_delivery(social)
    social.emulator.fail_next(status=404, body=b"<html><h1>404 Not Found</h1></html>")

    with pytest.raises(TargetBroken, match="check base_url"):
        get_adapter(delivery.target).delete(delivery)
    assert social.post_text(delivery.external_id) is not None


def test_deleting_a_facebook_photo_post_deletes_the_post_and_its_photo(fb):
    delivery = sent_delivery(fb, photo=True, image_url=IMAGE)
    photo_id = delivery.sent_details["photo_id"]

    get_adapter(delivery.target).delete(delivery)

    assert fb.post_text(delivery.external_id) is None and photo_id not in fb.emulator.photos
    assert fb.emulator.deleted == [delivery.external_id, photo_id]
    get_adapter(delivery.target).delete(delivery)  # both gone: done


def test_a_facebook_delete_sends_the_token_in_a_header_never_in_the_url(fb):
    delivery = sent_delivery(fb)
    get_adapter(delivery.target).delete(delivery)

    [request] = [r for r in fb.emulator.requests if r.method == "DELETE"]
    assert request.headers["authorization"] == f"Bearer {facebook.TOKEN}"
    assert facebook.TOKEN not in request.path and request.query == {}


# --- faults on an edit or a delete -----------------------------------------------------------------


@pytest.mark.parametrize("operation", ["edit", "delete"])
def test_a_server_error_is_retried_not_uncertain(network, operation):
    delivery = sent_delivery(network)
    text_before = network.post_text(delivery.external_id)
    server_error(network)

    with pytest.raises(TransientError) as caught:
        edit_or_delete(delivery, operation)

    assert not isinstance(caught.value, OutcomeUnknown | RateLimited)
    assert caught.value.http_status in (500, 503)
    assert network.post_text(delivery.external_id) == text_before  # nothing changed
    edit_or_delete(delivery, operation)  # the retry goes through
    assert network.post_text(delivery.external_id) != text_before


@pytest.mark.parametrize("operation", ["edit", "delete"])
def test_a_rate_limit_waits_as_the_network_asks(network, operation):
    delivery = sent_delivery(network)
    wanted = rate_limit(network, 120)

    with pytest.raises(RateLimited) as caught:
        edit_or_delete(delivery, operation)

    assert caught.value.retry_after == pytest.approx(wanted, abs=3)
    assert network.post_text(delivery.external_id) == sent_text(network)
    assert network.edit_count(delivery.external_id) == 0


@pytest.mark.parametrize("code", [4, 17, 32, 613])
def test_every_graph_throttling_code_is_a_rate_limit_on_an_edit(fb, code):
    delivery = sent_delivery(fb)
    wanted = rate_limit(fb, 180, code=code)

    with pytest.raises(RateLimited) as caught:
        edited(delivery, "Throttled")

    assert caught.value.retry_after == pytest.approx(wanted, abs=3)


@pytest.mark.parametrize("operation", ["edit", "delete"])
def test_a_refusal_is_one_admin_message_without_the_token(network, operation):
    delivery = sent_delivery(network)
    token = echoing_error(network)

    with pytest.raises(DeliveryError) as caught:
        edit_or_delete(delivery, operation)

    text = str(caught.value)
    assert isinstance(caught.value, PermanentError) and not isinstance(caught.value, EditRefused)
    assert text.startswith(get_adapter(delivery.target).label), text
    assert "\n" not in text and token not in text and "<redacted>" in text
    assert network.post_text(delivery.external_id) == sent_text(network)


def test_an_edit_refused_for_a_gone_post_names_no_token(network):
    delivery = sent_delivery(network)
    get_adapter(delivery.target).delete(delivery)

    with pytest.raises(EditRefused) as caught:
        edited(delivery, "Too late")

    for secret in network.secrets():
        assert secret not in str(caught.value)


def test_a_lost_edit_answer_is_a_plain_retry(social):
    delivery = sent_delivery(social)
    social.emulator.hang_next(seconds=5)  # past the target's 1 s timeout

    with pytest.raises(TransientError) as caught:
        edited(delivery, "Corrected")

    assert not isinstance(caught.value, OutcomeUnknown)
    assert "PUT /api/v1/statuses/" in str(caught.value)
