"""Editing and deleting Telegram channel posts (issue #12), over real HTTP against the Bot API
emulator: what a send records for a later edit or delete; editMessageText for a text message,
editMessageCaption for a photo, editMessageMedia when the image changed; "message is not modified"
as success; deleteMessage (twice, or a message already gone, is done) and its 48 hours; and on
each call a 5xx → TransientError, a 429 → RateLimited with its wait, messages without the token."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from syndicator import delivery as deliveries
from syndicator.errors import DeliveryError, EditRefused, OutcomeUnknown, RateLimited, TransientError
from syndicator.formatting import Message
from syndicator.models import Delivery, Feed, Post
from syndicator.targets import get_adapter
from syndicator.targets.base import Adapter
from tests.emulators.telegram import PUBLIC_CHANNEL_ID, TOKEN, Harness, error

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

IMAGE = "https://www.nejatngo.org/wp-content/uploads/2025/01/camp.jpg"
OTHER_IMAGE = "https://www.nejatngo.org/wp-content/uploads/2025/02/letters.jpg"
EDIT_METHODS = ("editmessagetext", "editmessagecaption", "editmessagemedia")
_numbers = itertools.count(1)


@pytest.fixture
def tg() -> Iterator[Harness]:
    with Harness() as harness:
        yield harness


def sent_delivery(harness: Harness, image_url: str = "", **target_settings: Any) -> Delivery:
    """A delivery sent through the real delivery path (so sent_details is what a send stores)."""
    n = next(_numbers)
    feed = Feed.objects.create(url=f"https://www.nejatngo.org/feed/t{n}-{time.time_ns()}", language="en")
    post = Post.objects.create(
        feed=feed,
        guid=f"https://www.nejatngo.org/?p=t{n}-{time.time_ns()}",
        url=f"https://www.nejatngo.org/en/news/t{n}",
        title=f"Families ask for news of their children, letter {n}",
        summary="Nejat Society met families who have waited years for a word from their children.",
        image_url=image_url,
        language="en",
    )
    target = harness.make_target(name=f"telegram-e{n}", **target_settings)
    delivery = Delivery.objects.create(post=post, target=target)
    deliveries.attempt_delivery(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == "sent", delivery.last_error
    return delivery


def message_for(adapter: Adapter, delivery: Delivery, text: str, image_url: str | None = None) -> Message:
    """The delivery's message rendered again, reading ``text`` (as a changed article would)."""
    message = adapter.render(delivery)
    if image_url is not None:
        message.image_url = image_url
    message.text = text
    message.caption = text if message.image_url else ""
    return message


def edited(adapter: Adapter, delivery: Delivery, text: str, image_url: str | None = None) -> Any:
    """Edit to ``text``; record the result on the delivery as the delivery machinery does."""
    result = adapter.edit(message_for(adapter, delivery, text, image_url), delivery)
    delivery.external_id, delivery.sent_details = result.external_id, result.details
    return result


def calls(harness: Harness, method: str) -> list[Any]:
    """The requests of one Bot API method (case as the path has it)."""
    return [r for r in harness.api.requests if r.path.lower().endswith(f"/{method.lower()}")]


# --- what a send records ---------------------------------------------------------------------------


def test_a_text_send_records_what_an_edit_and_a_delete_need(tg):
    delivery = sent_delivery(tg)
    [sent] = tg.sent()
    details = delivery.sent_details
    assert delivery.external_id == f"{PUBLIC_CHANNEL_ID}:{sent['message_id']}"
    assert (details["kind"], details["chat_id"], details["message_id"]) == (
        "text",
        PUBLIC_CHANNEL_ID,
        sent["message_id"],
    )
    assert details["image_url"] == "" and details["photo"] is False


def test_a_photo_send_records_its_image(tg):
    delivery = sent_delivery(tg, image_url=IMAGE)
    assert tg.sent()[0]["method"] == "sendPhoto"
    assert delivery.sent_details["kind"] == "photo" and delivery.sent_details["image_url"] == IMAGE


# --- editing ---------------------------------------------------------------------------------------


def test_a_text_message_is_edited_with_edit_message_text_as_a_send_formats_it(tg):
    delivery = sent_delivery(tg, link_preview=False)
    adapter = get_adapter(delivery.target)

    result = edited(adapter, delivery, "<b>Corrected:</b> families ask for news")

    assert tg.post_text(delivery.external_id) == "Corrected: families ask for news"
    assert tg.edit_count(delivery.external_id) == 1
    [edit] = calls(tg, "editMessageText")
    assert edit.json["parse_mode"] == "HTML" and edit.json["link_preview_options"]["is_disabled"] is True
    assert (edit.json["chat_id"], edit.json["message_id"]) == (
        PUBLIC_CHANNEL_ID,
        delivery.sent_details["message_id"],
    )
    assert result.external_id == delivery.external_id and result.external_url.startswith("https://t.me/")
    assert result.details["kind"] == "text"
    assert not calls(tg, "editMessageCaption") and not calls(tg, "editMessageMedia")


def test_a_photo_has_its_caption_edited_and_keeps_its_image(tg):
    delivery = sent_delivery(tg, image_url=IMAGE)
    adapter = get_adapter(delivery.target)

    result = edited(adapter, delivery, "Corrected caption")

    [edit] = calls(tg, "editMessageCaption")
    assert edit.json["caption"] == "Corrected caption" and edit.json["parse_mode"] == "HTML"
    assert not calls(tg, "editMessageMedia") and not calls(tg, "editMessageText")
    assert tg.post_text(delivery.external_id) == "Corrected caption"
    assert tg.api.message(PUBLIC_CHANNEL_ID, result.details["message_id"])["photo"] == IMAGE
    assert result.details["kind"] == "photo" and result.details["image_url"] == IMAGE


def test_a_photo_whose_image_changed_is_replaced_with_edit_message_media(tg):
    delivery = sent_delivery(tg, image_url=IMAGE)
    adapter = get_adapter(delivery.target)

    result = edited(adapter, delivery, "New picture, same news", image_url=OTHER_IMAGE)

    [edit] = calls(tg, "editMessageMedia")
    assert edit.json["media"] == {
        "type": "photo",
        "media": OTHER_IMAGE,
        "caption": "New picture, same news",
        "parse_mode": "HTML",
    }
    assert not calls(tg, "editMessageCaption")
    message = tg.api.message(PUBLIC_CHANNEL_ID, delivery.sent_details["message_id"])
    assert message["photo"] == OTHER_IMAGE and message["text"] == "New picture, same news"
    assert result.details["image_url"] == OTHER_IMAGE  # a later edit compares with the new image

    edited(adapter, delivery, "New picture, same news, corrected", image_url=OTHER_IMAGE)
    assert len(calls(tg, "editMessageMedia")) == 1 and len(calls(tg, "editMessageCaption")) == 1


def test_a_new_image_telegram_cannot_use_leaves_the_photo_and_edits_the_caption(tg):
    delivery = sent_delivery(tg, image_url=IMAGE)
    tg.api.refuse_photo(OTHER_IMAGE, "Bad Request: failed to get HTTP URL content")
    adapter = get_adapter(delivery.target)

    result = edited(adapter, delivery, "Corrected, old picture", image_url=OTHER_IMAGE)

    assert len(calls(tg, "editMessageMedia")) == 1 and len(calls(tg, "editMessageCaption")) == 1
    message = tg.api.message(PUBLIC_CHANNEL_ID, delivery.sent_details["message_id"])
    assert message["photo"] == IMAGE and message["text"] == "Corrected, old picture"
    assert result.details["image_url"] == IMAGE and "could not download" in result.details["photo_fallback"]


def test_a_photo_cannot_take_a_text_over_a_captions_limit(tg):
    delivery = sent_delivery(tg, image_url=IMAGE)
    adapter = get_adapter(delivery.target)
    message = message_for(adapter, delivery, "long " * 300)
    message.caption = ""  # as the formatter leaves it when the text does not fit a caption

    with pytest.raises(EditRefused, match="1024"):
        adapter.edit(message, delivery)
    assert not [r for r in tg.api.requests if "/editmessage" in r.path.lower()]


def test_an_edit_that_changes_nothing_is_success_and_safe_to_repeat(tg):
    delivery = sent_delivery(tg, image_url=IMAGE)
    adapter = get_adapter(delivery.target)
    first = edited(adapter, delivery, "Corrected once")

    again = edited(adapter, delivery, "Corrected once")  # Telegram: "message is not modified"

    assert len(calls(tg, "editMessageCaption")) == 2  # it did ask
    assert tg.edit_count(delivery.external_id) == 1
    assert (again.external_id, again.details) == (first.external_id, first.details)


def test_the_unchanged_message_itself_is_not_modified(tg):
    delivery = sent_delivery(tg)
    adapter = get_adapter(delivery.target)

    result = adapter.edit(adapter.render(delivery), delivery)

    assert result.external_id == delivery.external_id and tg.edit_count(delivery.external_id) == 0


def test_editing_a_message_that_is_gone_is_refused_with_the_reason(tg):
    delivery = sent_delivery(tg)
    adapter = get_adapter(delivery.target)
    adapter.delete(delivery)

    with pytest.raises(EditRefused, match="no longer exists") as caught:
        edited(adapter, delivery, "Too late")
    assert "message to edit not found" in str(caught.value)


def test_an_edit_meeting_a_server_error_or_a_rate_limit_is_retried_not_uncertain(tg):
    delivery = sent_delivery(tg)
    adapter = get_adapter(delivery.target)
    tg.api.fail_method("editMessageText", status=502, body=b"<html><title>502 Bad Gateway</title></html>")
    with pytest.raises(TransientError) as caught:
        edited(adapter, delivery, "Edited")
    assert not isinstance(caught.value, OutcomeUnknown | RateLimited) and caught.value.http_status == 502

    # 504 on a send is uncertain; an edit repeated changes nothing twice, so it is a plain retry.
    tg.api.fail_method("editMessageText", status=504, body=b"<html>504 Gateway Time-out</html>")
    with pytest.raises(TransientError) as timed_out:
        edited(adapter, delivery, "Edited")
    assert not isinstance(timed_out.value, OutcomeUnknown)

    tg.api.fail_method(
        "editMessageText", status=429, json=error(429, "Too Many Requests: retry after 17", retry_after=17)
    )
    with pytest.raises(RateLimited) as limited:
        edited(adapter, delivery, "Edited")
    assert limited.value.retry_after == 17
    assert tg.edit_count(delivery.external_id) == 0

    edited(adapter, delivery, "Edited")
    assert tg.edit_count(delivery.external_id) == 1


# --- deleting --------------------------------------------------------------------------------------


def test_delete_removes_the_message(tg):
    delivery = sent_delivery(tg)
    assert tg.post_text(delivery.external_id) == tg.sent()[0]["text"]

    get_adapter(delivery.target).delete(delivery)

    assert tg.post_text(delivery.external_id) is None
    [call] = calls(tg, "deleteMessage")
    assert call.json == {"chat_id": PUBLIC_CHANNEL_ID, "message_id": delivery.sent_details["message_id"]}


def test_deleting_twice_or_a_message_already_gone_is_done(tg):
    delivery = sent_delivery(tg, image_url=IMAGE)
    adapter = get_adapter(delivery.target)
    adapter.delete(delivery)

    adapter.delete(delivery)  # Telegram: "message to delete not found"

    assert len(calls(tg, "deleteMessage")) == 2 and tg.post_text(delivery.external_id) is None


def test_a_delete_after_48_hours_is_refused_before_it_is_sent(tg):
    delivery = sent_delivery(tg)
    delivery.sent_at = timezone.now() - timedelta(hours=49)

    with pytest.raises(EditRefused, match="48 hours") as caught:
        get_adapter(delivery.target).delete(delivery)

    assert "49 hours" in str(caught.value) and "Telegram app" in str(caught.value)
    assert not calls(tg, "deleteMessage") and tg.post_text(delivery.external_id) is not None


def test_telegram_refusing_a_delete_is_refused_not_failed(tg):
    delivery = sent_delivery(tg)
    tg.api.advance_clock(48 * 3600 + 60)  # Telegram's clock says two days; our record does not

    with pytest.raises(EditRefused, match="message can't be deleted") as caught:
        get_adapter(delivery.target).delete(delivery)

    assert "48 hours" in str(caught.value) and len(calls(tg, "deleteMessage")) == 1
    assert tg.post_text(delivery.external_id) is not None


def test_just_within_48_hours_the_delete_goes_through(tg):
    delivery = sent_delivery(tg)
    delivery.sent_at = timezone.now() - timedelta(hours=47)
    tg.api.advance_clock(47 * 3600)

    get_adapter(delivery.target).delete(delivery)

    assert tg.post_text(delivery.external_id) is None


def test_a_delete_meeting_a_server_error_is_retried_not_uncertain(tg):
    delivery = sent_delivery(tg)
    tg.api.fail_method("deleteMessage", status=500, json=error(500, "Internal Server Error: restart"))

    with pytest.raises(TransientError) as caught:
        get_adapter(delivery.target).delete(delivery)

    assert not isinstance(caught.value, OutcomeUnknown | RateLimited) and caught.value.http_status == 500
    assert tg.post_text(delivery.external_id) is not None
    get_adapter(delivery.target).delete(delivery)
    assert tg.post_text(delivery.external_id) is None


def test_a_rate_limited_delete_waits_as_telegram_asks(tg):
    delivery = sent_delivery(tg)
    tg.api.fail_method(
        "deleteMessage", status=429, json=error(429, "Too Many Requests: retry after 40", retry_after=40)
    )

    with pytest.raises(RateLimited) as caught:
        get_adapter(delivery.target).delete(delivery)

    assert caught.value.retry_after == 40 and tg.post_text(delivery.external_id) is not None


# --- no token in any error -------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["editMessageText", "deleteMessage"])
def test_a_refusal_is_one_admin_message_without_the_token(tg, method):
    delivery = sent_delivery(tg)
    adapter = get_adapter(delivery.target)
    tg.api.fail_method(
        method, status=400, json=error(400, f"Bad Request: request with token {TOKEN} refused")
    )

    with pytest.raises(DeliveryError) as caught:
        if method == "deleteMessage":
            adapter.delete(delivery)
        else:
            edited(adapter, delivery, "Edited")

    text = str(caught.value)
    assert text.startswith(f"Telegram {method}: ") and "(400)" in text and "\n" not in text
    for secret in tg.secrets():
        assert secret not in text


def test_no_token_in_transport_errors_of_an_edit_or_delete(tg):
    delivery = sent_delivery(tg)
    adapter = get_adapter(delivery.target)
    errors: list[str] = []
    tg.api.hang_next(seconds=3)  # past the target's 1 s timeout
    with pytest.raises(TransientError) as hung:
        edited(adapter, delivery, "Edited")
    assert not isinstance(hung.value, OutcomeUnknown)
    errors.append(str(hung.value))
    tg.api.fail_method("deleteMessage", status=503, json=error(503, "Service Unavailable"))
    with pytest.raises(TransientError) as unavailable:
        adapter.delete(delivery)
    errors.append(str(unavailable.value))

    for text in errors:
        for secret in tg.secrets():
            assert secret not in text
