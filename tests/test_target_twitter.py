"""The X target over real HTTP against the X emulator: tweets, images, every error row, secrets."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from syndicator import feeds
from syndicator.delivery import attempt_delivery
from syndicator.errors import (
    DeliveryError,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    TargetBroken,
    TransientError,
)
from syndicator.formatting import Message
from syndicator.models import Delivery, DeliveryAttempt, Post, Target
from syndicator.targets import get_adapter
from syndicator.targets.twitter import IMAGE_MAX_BYTES, RATE_LIMIT_FALLBACK
from syndicator.targets.twitter.text import twitter_length
from tests.emulators.twitter import (
    DUPLICATE,
    FORBIDDEN,
    PROBLEM,
    TOO_LONG,
    UNAUTHORIZED,
    USERNAME,
    Harness,
    problem,
)
from tests.helpers import DEMO_FEEDS as FEEDS
from tests.helpers import demo_post

pytestmark = pytest.mark.django_db


@pytest.fixture
def x() -> Iterator[Harness]:
    with Harness() as harness:
        yield harness


def free_port() -> int:
    """A loopback port nothing listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    return free_port()


@pytest.fixture
def hang_up_server() -> Iterator[str]:
    """A server that reads the request and closes the connection without answering."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


feed_post = demo_post


def new_delivery(target: Target, post: Post | None = None) -> Delivery:
    return Delivery.objects.create(post=post or feed_post("nejat-en-recent.rss"), target=target)


def send(target: Target, post: Post | None = None) -> tuple[Message, object]:
    """Render and send one delivery of the post straight through the adapter."""
    delivery = new_delivery(target, post)
    adapter = get_adapter(target)
    message = adapter.render(delivery)
    return message, adapter.send(message, delivery)


def send_text(target: Target, text: str) -> object:
    """Send a message with exactly this text, bypassing the renderer's fitting."""
    delivery = new_delivery(target)
    return get_adapter(target).send(Message(format="twitter", text=text), delivery)


# --- tweets ---------------------------------------------------------------------------------------


def test_a_feed_post_is_tweeted_and_recorded_as_sent_with_its_id_and_url(x: Harness) -> None:
    target = x.make_target()
    delivery = new_delivery(target, feed_post("nejat-en-recent.rss"))

    attempt = attempt_delivery(delivery.pk)

    delivery.refresh_from_db()
    (tweet,) = x.sent()
    assert attempt is not None and attempt.outcome == "sent"
    assert delivery.status == "sent"
    assert delivery.external_id == tweet["id"] and tweet["id"].isdigit()
    assert delivery.external_url == f"https://x.com/{USERNAME}/status/{tweet['id']}"
    assert tweet["text"] == delivery.rendered_text
    assert delivery.post.title in tweet["text"] and "utm_source=twitter" in tweet["text"]
    assert twitter_length(tweet["text"]) <= 280


def test_every_english_fixture_post_fits_the_emulators_280_weighted_limit(x: Harness) -> None:
    target = x.make_target()
    count = len(feeds.parse((FEEDS / "nejat-en-recent.rss").read_bytes()).items)
    for index in range(count):
        send(target, feed_post("nejat-en-recent.rss", index))
    assert len(x.sent()) == count


def test_a_farsi_post_arrives_intact(x: Harness) -> None:
    target = x.make_target()
    post = feed_post("nejat-fa.rss")

    message, result = send(target, post)

    (tweet,) = x.sent()
    assert tweet["text"] == message.text
    assert post.title in tweet["text"]
    assert result.external_id == tweet["id"]


@pytest.mark.parametrize(
    ("username", "url"),
    [
        (USERNAME, f"https://x.com/{USERNAME}/status/"),
        ("@" + USERNAME, f"https://x.com/{USERNAME}/status/"),
        ("", "https://x.com/i/web/status/"),
    ],
    ids=["username", "at-username", "no-username"],
)
def test_the_tweet_url_names_the_account_or_uses_the_web_status_form(
    x: Harness, username: str, url: str
) -> None:
    _, result = send(x.make_target(username=username))
    assert result.external_url == url + result.external_id


def test_the_emulator_counts_weighted_length_like_x(x: Harness) -> None:
    target = x.make_target()
    send_text(target, "日" * 140)  # 280 weighted: accepted
    with pytest.raises(PermanentError) as caught:
        send_text(target, "語" * 141)  # 282 weighted
    assert caught.value.http_status == 400
    assert [t["text"] for t in x.sent()] == ["日" * 140]


def test_sending_the_same_text_twice_says_it_was_probably_posted_already(x: Harness) -> None:
    target = x.make_target()
    send(target, feed_post("nejat-en-recent.rss"))
    with pytest.raises(PermanentError) as caught:
        send(target, feed_post("nejat-en-recent.rss"))  # the same item, stored again
    assert not isinstance(caught.value, TargetBroken)
    assert "probably posted already" in str(caught.value)
    assert len(x.sent()) == 1


# --- images ---------------------------------------------------------------------------------------


def test_an_image_is_uploaded_and_attached_when_enabled(x: Harness) -> None:
    target = x.make_target(image=True)
    post = feed_post("nejat-en-recent.rss", image_url=x.emulator.image_url())

    _, result = send(target, post)

    (tweet,) = x.sent()
    (media_id,) = tweet["media_ids"]
    uploaded = x.emulator.media[media_id]
    assert uploaded["bytes"] == x.emulator.images["photo.png"][0]
    assert (uploaded["content_type"], uploaded["category"]) == ("image/png", "tweet_image")
    assert result.details == {"tweet_id": result.external_id, "media_ids": [media_id]}


def test_the_upload_may_go_to_its_own_base_url(x: Harness, closed_port: int) -> None:
    base_url = f"http://127.0.0.1:{closed_port}"
    target = x.make_target(image=True, base_url=base_url, upload_base_url=x.emulator.base_url)
    post = feed_post("nejat-en-recent.rss", image_url=x.emulator.image_url())
    with pytest.raises(TransientError):  # the tweet's base URL refuses; the upload went through
        send(target, post)
    assert [m["kind"] for m in x.emulator.accepted] == ["media"]


def test_no_image_is_fetched_when_the_setting_is_off(x: Harness) -> None:
    target = x.make_target()
    send(target, feed_post("nejat-en-recent.rss", image_url=x.emulator.image_url()))
    assert x.sent()[0]["media_ids"] == []
    assert not [r for r in x.emulator.requests if r.path.startswith("/images/")]


@pytest.mark.parametrize(
    ("image", "upload_status"),
    [("gone.png", None), ("page.png", None), ("huge.png", None), ("photo.png", 503), ("host-down", None)],
    ids=["image-404", "not-an-image", "too-large", "upload-503", "image-host-down"],
)
def test_an_image_failure_falls_back_to_a_text_only_tweet(
    x: Harness, image: str, upload_status: int | None, caplog: pytest.LogCaptureFixture
) -> None:
    x.emulator.images["page.png"] = (b"<html>log in</html>", "text/html")
    x.emulator.images["huge.png"] = (b"\0" * (IMAGE_MAX_BYTES + 1), "image/png")
    x.emulator.upload_status = upload_status
    url = f"http://127.0.0.1:{free_port()}/photo.png" if image == "host-down" else x.emulator.image_url(image)
    target = x.make_target(image=True)

    message, result = send(target, feed_post("nejat-en-recent.rss", image_url=url))

    (tweet,) = x.sent()
    assert tweet["media_ids"] == [] and tweet["text"] == message.text
    assert result.external_id == tweet["id"]
    assert "image not attached" in caplog.text


def test_an_upload_that_times_out_falls_back_within_the_timeout(x: Harness) -> None:
    target = x.make_target(image=True)
    post = feed_post("nejat-en-recent.rss", image_url=x.emulator.image_url())
    x.emulator.fail_next(
        status=200, body=x.emulator.images["photo.png"][0], headers={"Content-Type": "image/png"}
    )
    x.emulator.hang_next(seconds=5)  # the upload, after the download above

    started = time.monotonic()
    send(target, post)

    assert time.monotonic() - started < 4
    assert x.sent()[0]["media_ids"] == []


# --- errors: TARGETS.md section 3, "Errors: retry vs give up", row by row -------------------------


TOO_MANY = problem(429, "Too Many Requests", "Too Many Requests")
USER_DAY = "x-user-limit-24hour"
RATE_ROWS = [
    # 429 headers (a "-reset" value is seconds from now) → the retry_after X asks for
    pytest.param({"x-rate-limit-reset": 30}, 30, id="15-minute-window"),
    pytest.param(
        {"x-rate-limit-reset": 30, f"{USER_DAY}-remaining": 0, f"{USER_DAY}-reset": 3600},
        3600,
        id="user-24h-spent",
    ),
    pytest.param(
        {"x-rate-limit-reset": 30, "x-app-limit-24hour-remaining": 0, "x-app-limit-24hour-reset": 7200},
        7200,
        id="app-24h-spent",
    ),
    pytest.param(
        {"x-rate-limit-reset": 30, f"{USER_DAY}-remaining": 5, f"{USER_DAY}-reset": 3600}, 30, id="24h-left"
    ),
    pytest.param({"x-rate-limit-reset": -10}, 1, id="reset-passed-waits-1s"),
    pytest.param({}, RATE_LIMIT_FALLBACK, id="no-reset-header"),
]


def rate_headers(spec: dict[str, int]) -> dict[str, str]:
    """A 429's headers from RATE_ROWS' spec, resets turned into Unix times."""
    now = time.time()
    return {
        k: str(int(now + v) if k.endswith("-reset") else v)
        for k, v in {"x-rate-limit-remaining": 0, **spec}.items()
    }


@pytest.mark.parametrize(("spec", "wait"), RATE_ROWS)
def test_too_many_requests_waits_until_the_limit_that_was_hit_resets(
    x: Harness, spec: dict, wait: float
) -> None:
    x.emulator.fail_next(status=429, json=TOO_MANY, headers={**PROBLEM, **rate_headers(spec)})
    with pytest.raises(RateLimited) as caught:
        send(x.make_target())
    assert caught.value.http_status == 429 and "rate limited" in str(caught.value)
    assert wait - 2 <= caught.value.retry_after <= wait + 1
    assert x.sent() == []


STATUS_ROWS = [
    # (status, body, error class, words in the message)
    pytest.param(403, DUPLICATE, PermanentError, "probably posted already", id="403-duplicate"),
    pytest.param(403, FORBIDDEN, TargetBroken, "Read+Write", id="403-no-write-access"),
    pytest.param(401, UNAUTHORIZED, TargetBroken, "credentials", id="401"),
    pytest.param(400, TOO_LONG, PermanentError, "too long", id="400"),
    pytest.param(404, problem(404, "Not Found Error", "Not Found"), PermanentError, "not found", id="404"),
    pytest.param(500, problem(500, "Internal Error", "x"), OutcomeUnknown, "may or may not", id="500"),
    pytest.param(502, None, OutcomeUnknown, "may or may not", id="502-no-json"),
    pytest.param(503, problem(503, "Service Unavailable", "x"), TransientError, "over capacity", id="503"),
    pytest.param(504, None, OutcomeUnknown, "may or may not", id="504"),
    pytest.param(301, None, TargetBroken, "check base_url", id="301-wrong-base-url"),
]


@pytest.mark.parametrize(("status", "body", "error", "words"), STATUS_ROWS)
def test_x_error_statuses_map_to_the_targets_table(
    x: Harness, status: int, body: dict | None, error: type[DeliveryError], words: str
) -> None:
    x.emulator.fail_next(status=status, json=body, headers={**PROBLEM, "Location": "/2/tweets"})  # for 301
    with pytest.raises(DeliveryError) as caught:
        send(x.make_target())
    assert type(caught.value) is error
    assert caught.value.http_status == status and words in str(caught.value)
    assert x.sent() == []


def test_a_refused_connection_is_transient(x: Harness, closed_port: int) -> None:
    with pytest.raises(TransientError) as caught:
        send(x.make_target(base_url=f"http://127.0.0.1:{closed_port}"))
    assert type(caught.value) is TransientError and "could not reach" in str(caught.value)


def test_a_read_timeout_is_an_unknown_outcome_within_the_timeout(x: Harness) -> None:
    x.emulator.hang_next(seconds=5)
    started = time.monotonic()
    with pytest.raises(OutcomeUnknown) as caught:
        send(x.make_target(timeout=1))
    assert time.monotonic() - started < 3
    assert "may have been posted" in str(caught.value)


def test_a_connection_dropped_after_sending_is_an_unknown_outcome(x: Harness, hang_up_server: str) -> None:
    with pytest.raises(OutcomeUnknown):
        send(x.make_target(base_url=hang_up_server))


@pytest.mark.parametrize("timeout", ["soon", "0", True])
def test_a_bad_timeout_pauses_the_target_before_any_request(x: Harness, timeout: object) -> None:
    # It used to fall back to SYNDICATOR_TARGET_TIMEOUT silently; now it is the one clear error.
    target = x.make_target(timeout=timeout)
    delivery = new_delivery(target)

    attempt = attempt_delivery(delivery.pk)

    target.refresh_from_db()
    assert attempt is not None and attempt.outcome != "sent"
    assert target.paused_at is not None and "setting timeout=" in target.paused_reason
    assert x.emulator.requests == [] and x.sent() == []


def test_a_tweet_answered_without_an_id_is_an_unknown_outcome_with_its_status(x: Harness) -> None:
    x.emulator.fail_next(status=201, json={"data": {"text": "no id here"}})
    with pytest.raises(OutcomeUnknown) as caught:
        send(x.make_target())
    assert caught.value.http_status == 201 and "may have been posted" in str(caught.value)


def test_a_lost_answer_to_the_credentials_check_is_transient_not_unknown(
    x: Harness, hang_up_server: str
) -> None:
    with pytest.raises(DeliveryError) as caught:
        get_adapter(x.make_target(base_url=hang_up_server)).check()
    assert type(caught.value) is TransientError and "may have been posted" not in str(caught.value)


def test_a_missing_secret_breaks_the_target_before_any_request(
    x: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(Harness.ENV["access_secret_env"][0])
    with pytest.raises(TargetBroken, match="SYNDICATOR_TEST_X_ACCESS_SECRET is not set"):
        send(x.make_target())
    assert x.emulator.requests == []


def test_a_rate_limit_returns_at_once_instead_of_waiting(x: Harness) -> None:
    target = x.make_target()
    for headers in (rate_headers({"x-rate-limit-reset": 60}), {}):  # tweepy sleeps, or loops at once
        x.emulator.requests.clear()
        x.emulator.fail_next(status=429, json=TOO_MANY, headers=headers)
        started = time.monotonic()
        with pytest.raises(RateLimited):
            send(target)
        assert time.monotonic() - started < 2
        assert len(x.emulator.requests) == 1


# --- secrets --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["bad_token", "forbidden", "server_error", "timeout", "refused"])
def test_secrets_never_reach_the_delivery_log_or_the_logs(
    x: Harness, mode: str, closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = {"base_url": f"http://127.0.0.1:{closed_port}"} if mode == "refused" else {}
    target = x.make_target(**settings)
    if mode != "refused":
        x.inject(mode)
    delivery = new_delivery(target)

    attempt = attempt_delivery(delivery.pk)

    delivery.refresh_from_db()
    target.refresh_from_db()
    assert attempt is not None and attempt.outcome != "sent"
    written = "\n".join(
        [
            caplog.text,
            attempt.message,
            delivery.last_error,
            target.paused_reason,
            *DeliveryAttempt.objects.values_list("message", flat=True),
        ]
    )
    assert "Making API request" in caplog.text  # the capture saw tweepy's DEBUG records
    for _, secret in Harness.ENV.values():
        assert secret not in written
    if mode != "refused":  # the credentials did go out, in the Authorization header only
        assert Harness.ENV["api_key_env"][1] in x.emulator.requests[0].headers["authorization"]


# --- check ----------------------------------------------------------------------------------------


def test_check_names_the_account_it_posts_as(x: Harness) -> None:
    assert get_adapter(x.make_target()).check() == f"ok: posting as @{USERNAME}"
    assert x.emulator.requests[0].path == "/2/users/me"


CHECK_FAULTS = {
    "401": {"status": 401, "json": UNAUTHORIZED},
    "403": {"status": 403, "json": FORBIDDEN},
    "503": {"status": 503},
    "timeout": {"status": 200, "delay": 5},
}


@pytest.mark.parametrize(
    ("case", "error"),
    [(case, TargetBroken) for case in ("401", "403", "wrong-token")]
    + [(case, TransientError) for case in ("503", "timeout", "api-down")],
)
def test_check_reports_what_is_wrong(
    x: Harness, case: str, error: type[DeliveryError], closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = {"base_url": f"http://127.0.0.1:{closed_port}"} if case == "api-down" else {}
    if case == "wrong-token":
        monkeypatch.setenv(Harness.ENV["access_token_env"][0], "someone-elses-token")
    elif case in CHECK_FAULTS:
        x.emulator.fail_next(**CHECK_FAULTS[case])
    with pytest.raises(DeliveryError) as caught:
        get_adapter(x.make_target(**settings)).check()
    assert type(caught.value) is error


# --- the conformance harness ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(Harness.expected))
def test_harness_modes_raise_what_they_promise_and_the_next_send_works(x: Harness, mode: str) -> None:
    target = x.make_target()
    x.inject(mode)
    with pytest.raises(DeliveryError) as caught:
        send(target)
    assert type(caught.value) is Harness.expected[mode]
    if mode == "rate_limited":
        assert caught.value.retry_after > 0
    send(target)
    assert len(x.sent()) == 1


def test_an_image_on_a_private_address_is_not_fetched_and_the_tweet_goes_out_without_it(
    x: Harness, settings
) -> None:
    settings.SYNDICATOR_FEED_ALLOW_PRIVATE = []  # as in production: only public addresses
    target = x.make_target(image=True)
    post = feed_post("nejat-en-recent.rss", image_url=x.emulator.base_url + "/images/photo.png")
    delivery = Delivery.objects.create(post=post, target=target)
    adapter = get_adapter(target)
    adapter.send(adapter.render(delivery), delivery)

    assert not any(r.path.startswith("/images/") for r in x.emulator.requests)
    assert x.sent()[0].get("media_ids") in (None, [])
