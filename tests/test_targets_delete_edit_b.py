"""Deleting and editing posts that are out, on X, Bluesky, Pinterest and Threads (issue #12), over
real HTTP against each network's emulator: what each send records for a later delete or edit, a
delete (and a repeat, or a post already gone, counting as done), Pinterest's edits (and the
refusal when the Pin is gone), the delete limits, and on every call a 5xx → TransientError, a
rate limit → RateLimited with its wait, one admin message without secrets."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from syndicator import delivery as deliveries
from syndicator.errors import DeliveryError, EditRefused, OutcomeUnknown, RateLimited, TransientError
from syndicator.models import Delivery, Feed, Post
from syndicator.targets import get_adapter
from syndicator.targets.faults import RATE_LIMIT_FALLBACK
from tests.emulators import bluesky, pinterest, threads, twitter
from tests.emulators.base import HttpHarness

pytestmark = pytest.mark.django_db

KINDS = ("twitter", "bluesky", "pinterest", "threads")
HARNESSES: dict[str, Callable[[], HttpHarness]] = {
    "twitter": twitter.Harness,
    "bluesky": bluesky.Harness,
    "pinterest": pinterest.Harness,
    "threads": threads.Harness,
}
_numbers = itertools.count(1)


@pytest.fixture(params=KINDS)
def network(request: pytest.FixtureRequest) -> Iterator[Any]:
    with HARNESSES[request.param]() as harness:
        yield harness


def sent_delivery(harness: Any, **target_settings: Any) -> Delivery:
    """A delivery sent through the real delivery path (so sent_details is what a send stores)."""
    n = next(_numbers)
    feed = Feed.objects.create(url=f"https://www.nejatngo.org/feed/d{n}-{time.time_ns()}", language="en")
    post = Post.objects.create(
        feed=feed,
        guid=f"https://www.nejatngo.org/?p=d{n}-{time.time_ns()}",
        url=f"https://www.nejatngo.org/en/news/d{n}",
        title=f"Families ask for news of their children, letter {n} ({time.time_ns()})",
        summary="Nejat Society met families who have waited years for a word from their children.",
        language="en",
    )
    target = harness.make_target(name=f"{harness.kind}-d{n}", **target_settings)
    delivery = Delivery.objects.create(post=post, target=target)
    deliveries.attempt_delivery(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == "sent", delivery.last_error
    return delivery


# --- each network's faults on a delete or edit call ------------------------------------------------


def fail_next_call(harness: Any, status: int, json: Any, headers: dict[str, str] | None = None) -> None:
    """The next delete/edit request of this network gets this answer."""
    if harness.kind == "bluesky":
        harness.emulator.fail_method(
            "com.atproto.repo.deleteRecord", status=status, json=json, headers=headers or {}
        )
    elif harness.kind == "threads":
        harness.emulator.fail_step_next("delete", status=status, json=json, headers=headers)
    else:
        harness.emulator.fail_next(status=status, json=json, headers=headers or {})


def server_error(harness: Any) -> None:
    body = {
        "twitter": twitter.problem(500, "Internal Server Error", "Internal Error"),
        "bluesky": bluesky.xrpc_error("InternalServerError", "Internal Server Error"),
        "pinterest": pinterest.pinterest_error(3, "Internal error"),
        "threads": threads.threads_error(1, "An unknown error occurred", type=""),
    }[harness.kind]
    fail_next_call(harness, 500, body)


def rate_limit(harness: Any, wait: int) -> float:
    """A rate-limit answer in the network's words; the wait the adapter should take from it."""
    reset = str(int(time.time()) + wait)
    if harness.kind == "twitter":
        headers = {"x-rate-limit-limit": "50", "x-rate-limit-remaining": "0", "x-rate-limit-reset": reset}
        fail_next_call(harness, 429, twitter.problem(429, "Too Many Requests", "Too Many Requests"), headers)
    elif harness.kind == "bluesky":
        headers = {"ratelimit-limit": "5000", "ratelimit-remaining": "0", "ratelimit-reset": reset}
        fail_next_call(harness, 429, bluesky.xrpc_error("RateLimitExceeded", "Rate Limit Exceeded"), headers)
    elif harness.kind == "pinterest":
        fail_next_call(
            harness,
            429,
            pinterest.pinterest_error(8, "Rate limit exceeded."),
            pinterest.rate_limit_headers(wait),
        )
    else:  # Threads throttles with Graph code 4 and no header: the contract's fallback wait
        fail_next_call(harness, 400, threads.threads_error(4, "(#4) Application request limit reached"))
        return RATE_LIMIT_FALLBACK
    return float(wait)


def echoing_error(harness: Any, secret: str) -> None:
    """A refusal whose words carry the secret (as a proxy or a debug answer might)."""
    said = f"request with token {secret} refused"
    body = {
        "twitter": twitter.problem(400, "Invalid Request", said),
        "bluesky": bluesky.xrpc_error("InvalidRequest", said),
        "pinterest": pinterest.pinterest_error(1, said),
        "threads": threads.threads_error(100, f"(#100) {said}"),
    }[harness.kind]
    fail_next_call(harness, 400, body)


def the_secret(harness: Any) -> str:
    """The secret a refusal may echo: the one sent on the wire (the access token, app password)."""
    return {
        "twitter": twitter.ACCESS_TOKEN,
        "bluesky": bluesky.APP_PASSWORD,
        "pinterest": pinterest.TOKEN,
        "threads": threads.TOKEN,
    }[harness.kind]


# --- what a send records ---------------------------------------------------------------------------


def test_the_send_records_what_a_delete_needs(network):
    delivery = sent_delivery(network)
    details = delivery.sent_details
    if network.kind == "twitter":
        assert details["tweet_id"] == delivery.external_id
    elif network.kind == "bluesky":
        [post] = network.sent()
        assert details["uri"] == delivery.external_id == post["uri"]
        assert details["rkey"] == post["rkey"] and details["cid"] == post["cid"]
        assert details["did"] == bluesky.DID
    elif network.kind == "pinterest":
        assert details["pin_id"] == delivery.external_id and details["board_id"] == pinterest.BOARD_ID
    else:
        [post] = network.sent()
        assert details["media_id"] == delivery.external_id == post["id"]
        assert details["creation_id"] == post["creation_id"]  # today's key kept


# --- deleting --------------------------------------------------------------------------------------


def test_delete_removes_the_post(network):
    delivery = sent_delivery(network)
    if network.kind == "pinterest":  # a Pin's text is its title and description
        assert network.post_text(delivery.external_id) == network.sent()[0]["text"]
    else:
        assert network.post_text(delivery.external_id) == delivery.rendered_text

    get_adapter(delivery.target).delete(delivery)

    assert network.post_text(delivery.external_id) is None
    assert network.edit_count(delivery.external_id) == 0


def test_deleting_twice_or_a_post_already_gone_is_done(network):
    delivery = sent_delivery(network)
    adapter = get_adapter(delivery.target)
    adapter.delete(delivery)
    requests_before = len(network.emulator.requests)

    adapter.delete(delivery)  # already gone: the network's "not found" (or Bluesky's success) is done

    assert network.post_text(delivery.external_id) is None
    assert len(network.emulator.requests) > requests_before  # it did ask the network again


def test_a_delete_that_meets_a_server_error_is_retried_not_uncertain(network):
    delivery = sent_delivery(network)
    server_error(network)

    with pytest.raises(TransientError) as caught:
        get_adapter(delivery.target).delete(delivery)

    assert not isinstance(caught.value, OutcomeUnknown | RateLimited)
    assert caught.value.http_status == 500
    assert network.post_text(delivery.external_id) is not None  # nothing was deleted
    get_adapter(delivery.target).delete(delivery)  # the retry goes through
    assert network.post_text(delivery.external_id) is None


def test_a_rate_limited_delete_waits_as_the_network_asks(network):
    delivery = sent_delivery(network)
    wanted = rate_limit(network, 40)

    with pytest.raises(RateLimited) as caught:
        get_adapter(delivery.target).delete(delivery)

    assert caught.value.retry_after == pytest.approx(wanted, abs=3)
    assert network.post_text(delivery.external_id) is not None


def test_a_refused_delete_is_one_admin_message_without_secrets(network):
    delivery = sent_delivery(network)
    secret = the_secret(network)
    echoing_error(network, secret)

    with pytest.raises(DeliveryError) as caught:
        get_adapter(delivery.target).delete(delivery)

    text = str(caught.value)
    assert text.startswith(get_adapter(delivery.target).label), text
    assert "\n" not in text and "(400)" in text
    for value in [*network.secrets(), *network.issued_secrets()]:
        assert value not in text


# --- editing ---------------------------------------------------------------------------------------


def test_x_and_pinterest_declare_edits_and_the_others_say_why_not():
    from syndicator.targets.registry import network as adapter_class

    x = adapter_class("twitter").capabilities
    assert x.edit and x.delete and (x.edit_window, x.max_edits) == (30 * 60, 5)
    assert "30 minutes" in x.note and "5 times" in x.note
    assert adapter_class("pinterest").capabilities.edit
    for kind in ("bluesky", "threads"):
        capabilities = adapter_class(kind).capabilities
        assert capabilities.delete and not capabilities.edit
        assert "cannot edit" in capabilities.note or "cannot be edited" in capabilities.note
    assert "100 a day" in adapter_class("threads").capabilities.note


# --- X: edits within 30 minutes, 5 times, each a new id --------------------------------------------


@pytest.fixture
def x() -> Iterator[twitter.Harness]:
    with twitter.Harness() as harness:
        yield harness


def edited(adapter: Any, delivery: Delivery, text: str) -> Any:
    """Edit to ``text``, and record the result on the delivery as the delivery machinery does."""
    message = adapter.render(delivery)
    message.text = text
    result = adapter.edit(message, delivery)
    delivery.external_id, delivery.sent_details = result.external_id, result.details
    return result


def test_an_x_edit_makes_a_new_id_and_the_same_edit_twice_edits_once(x):
    delivery = sent_delivery(x)
    original = delivery.external_id
    adapter = get_adapter(delivery.target)

    result = edited(adapter, delivery, "Corrected: families ask for news")
    assert result.external_id != original and result.details["tweet_id"] == result.external_id
    assert result.external_url.endswith(f"/status/{result.external_id}")
    [edit] = [r for r in x.emulator.requests if r.method == "POST" and (r.json or {}).get("edit_options")]
    assert edit.json["edit_options"] == {"previous_post_id": original}

    delivery.external_id, delivery.sent_details = original, {"tweet_id": original}  # its answer was lost
    again = edited(adapter, delivery, "Corrected: families ask for news")

    assert again.external_id == result.external_id  # found already applied: not edited twice
    assert x.edit_count(original) == 1 and x.post_text(original) == "Corrected: families ask for news"


def test_x_refuses_a_sixth_edit(x):
    delivery = sent_delivery(x)
    adapter = get_adapter(delivery.target)
    for n in range(5):
        edited(adapter, delivery, f"Version {n + 2}")

    with pytest.raises(EditRefused, match="5 times"):
        edited(adapter, delivery, "Version 7")
    assert x.edit_count(delivery.external_id) == 5 and x.post_text(delivery.external_id) == "Version 6"


def test_x_refuses_an_edit_after_30_minutes(x):
    delivery = sent_delivery(x)
    adapter = get_adapter(delivery.target)
    x.emulator.posted_at[delivery.external_id] -= 31 * 60  # posted 31 minutes ago
    edits_before = len(x.emulator.requests)

    with pytest.raises(EditRefused, match="30 minutes"):
        edited(adapter, delivery, "Too late")

    assert not [r for r in x.emulator.requests[edits_before:] if r.method == "POST"]  # not even tried
    assert x.edit_count(delivery.external_id) == 0


def test_x_refusing_the_edit_itself_is_edit_refused(x):
    delivery = sent_delivery(x)
    adapter = get_adapter(delivery.target)
    x.emulator.posted_at[delivery.external_id] -= 31 * 60  # the window closed; the look-up does not say
    original_get = x.emulator._get_tweet

    def without_controls(request):
        reply = original_get(request)
        reply.json["data"].pop("edit_controls", None)
        return reply

    x.emulator._routes = [
        (m, p, without_controls if h == original_get else h) for m, p, h in x.emulator._routes
    ]

    with pytest.raises(EditRefused, match="no longer eligible for edit"):
        edited(adapter, delivery, "Too late")


def test_an_x_edit_meeting_a_server_error_or_a_rate_limit_is_retried(x):
    delivery = sent_delivery(x)
    adapter = get_adapter(delivery.target)
    x.emulator.fail_next(status=503, json=twitter.problem(503, "Service Unavailable", "Over capacity"))
    with pytest.raises(TransientError) as caught:
        edited(adapter, delivery, "Edited")
    assert not isinstance(caught.value, OutcomeUnknown) and caught.value.http_status == 503

    wanted = rate_limit(x, 25)
    with pytest.raises(RateLimited) as limited:
        edited(adapter, delivery, "Edited")
    assert limited.value.retry_after == pytest.approx(wanted, abs=3)
    assert x.edit_count(delivery.external_id) == 0


def test_deleting_an_edited_x_post_deletes_every_version(x):
    delivery = sent_delivery(x)
    original = delivery.external_id
    adapter = get_adapter(delivery.target)
    edited(adapter, delivery, "Edited once")

    adapter.delete(delivery)

    assert x.post_text(original) is None and x.post_text(delivery.external_id) is None


@pytest.fixture
def pins() -> Iterator[pinterest.Harness]:
    with pinterest.Harness() as harness:
        yield harness


def test_a_pin_is_edited_in_place_and_the_same_edit_twice_leaves_the_same_pin(pins):
    delivery = sent_delivery(pins)
    adapter = get_adapter(delivery.target)
    message = adapter.render(delivery)
    message.subject, message.text = "Corrected headline", "The corrected summary."

    result = adapter.edit(message, delivery)
    again = adapter.edit(message, delivery)

    assert result.external_id == again.external_id == delivery.external_id
    assert (
        result.details["pin_id"] == delivery.external_id and result.details["board_id"] == pinterest.BOARD_ID
    )
    assert pins.post_text(delivery.external_id) == "Corrected headline\nThe corrected summary."
    assert pins.edit_count(delivery.external_id) == 2
    [patch, _] = [r for r in pins.emulator.requests if r.method == "PATCH"]
    assert set(patch.json) == {"title", "description", "alt_text", "link"}  # never the image


def test_editing_a_pin_that_is_gone_is_refused_not_failed(pins):
    delivery = sent_delivery(pins)
    adapter = get_adapter(delivery.target)
    adapter.delete(delivery)

    with pytest.raises(EditRefused, match="no longer exists"):
        adapter.edit(adapter.render(delivery), delivery)


def test_an_edit_meeting_a_server_error_or_a_rate_limit_is_retried(pins):
    delivery = sent_delivery(pins)
    adapter = get_adapter(delivery.target)
    message = adapter.render(delivery)
    pins.emulator.fail_next(status=503, body=b"<html>503 Service Unavailable</html>")
    with pytest.raises(TransientError) as caught:
        adapter.edit(message, delivery)
    assert not isinstance(caught.value, OutcomeUnknown) and caught.value.http_status == 503

    pins.emulator.fail_next(
        status=429,
        json=pinterest.pinterest_error(8, "Rate limit exceeded."),
        headers=pinterest.rate_limit_headers(7),
    )
    with pytest.raises(RateLimited) as limited:
        adapter.edit(message, delivery)
    assert limited.value.retry_after == pytest.approx(7, abs=1)
    assert pins.edit_count(delivery.external_id) == 0


def test_a_refused_edit_is_one_admin_message_without_the_token(pins):
    delivery = sent_delivery(pins)
    echoing_error(pins, pinterest.TOKEN)
    adapter = get_adapter(delivery.target)

    with pytest.raises(DeliveryError) as caught:
        adapter.edit(adapter.render(delivery), delivery)

    assert pinterest.TOKEN not in str(caught.value) and str(caught.value).startswith(
        "Pinterest editing the Pin"
    )


@pytest.mark.parametrize("kind", ["bluesky", "threads"])
def test_networks_without_edits_do_not_pretend(kind):
    with HARNESSES[kind]() as network:
        delivery = sent_delivery(network)
        adapter = get_adapter(delivery.target)
        with pytest.raises(NotImplementedError, match="cannot be edited"):
            adapter.edit(adapter.render(delivery), delivery)
        assert network.edit_count(delivery.external_id) == 0


# --- Threads: 100 deletes a day --------------------------------------------------------------------


def test_threads_refuses_the_101st_delete_of_a_day_as_a_rate_limit():
    with threads.Harness() as harness:
        first, second = sent_delivery(harness), sent_delivery(harness)
        now = time.time()
        harness.emulator.delete_times.extend([now - 60] * (threads.DELETES_PER_DAY - 1))
        adapter = get_adapter(first.target)
        adapter.delete(first)  # the 100th

        with pytest.raises(RateLimited):
            get_adapter(second.target).delete(second)
        assert harness.post_text(second.external_id) is not None

        harness.emulator.now = lambda: now + 86400 + 1  # a day later the window has moved
        get_adapter(second.target).delete(second)
        assert harness.post_text(second.external_id) is None
