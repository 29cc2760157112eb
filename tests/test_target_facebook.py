"""The Facebook Page target, over real HTTP against the Graph emulator (tests/emulators/graph.py)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator

import pytest
from django.utils import timezone

from syndicator.delivery import attempt_delivery
from syndicator.errors import OutcomeUnknown, PermanentError, RateLimited, TargetBroken, TransientError
from syndicator.models import Delivery, DeliveryAttempt, Post, Target
from syndicator.targets import get_adapter
from syndicator.targets.base import SendResult
from tests.emulators.facebook import PAGE_ID, PAGE_NAME, TOKEN, Harness, buc_usage, graph_error
from tests.helpers import demo_post

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

IMAGE = "https://www.nejatngo.org/wp-content/uploads/2025/12/camp.jpg"


@pytest.fixture
def fb() -> Iterator[Harness]:
    """The Graph emulator running, with FACEBOOK_PAGE_TOKEN set to its Page's token."""
    with Harness() as harness:
        yield harness


fixture_post = demo_post


def deliver(target: Target, post: Post) -> Delivery:
    """Run one attempt through the real delivery code; the delivery as it ends up."""
    delivery = Delivery.objects.create(post=post, target=target)
    attempt_delivery(delivery.pk)
    delivery.refresh_from_db()
    return delivery


def send_once(fb: Harness, index: int = 0, **settings: object) -> SendResult:
    """Render and send one English fixture post straight through the adapter."""
    target = fb.make_target(name=f"facebook-{Target.objects.count()}", **settings)
    delivery = Delivery.objects.create(post=fixture_post("nejat-en-recent.rss", index), target=target)
    adapter = get_adapter(target)
    return adapter.send(adapter.render(delivery), delivery)


# --- publishing -------------------------------------------------------------------------------


def test_a_feed_post_is_published_as_a_link_post_with_utm_link_and_permalink(fb):
    post = fixture_post("nejat-en-recent.rss")
    delivery = deliver(fb.make_target(), post)

    assert delivery.status == "sent", delivery.last_error
    [sent] = fb.sent()
    assert sent["page_id"] == PAGE_ID and not sent["photo"]
    assert sent["text"].startswith("A Criterion for Proving the Violent Nature of the MEK")
    assert "Read the full article on the site." in sent["text"]
    assert sent["link"] == "https://www.nejatngo.org/en/?p=90005&utm_source=facebook&utm_medium=social"
    assert post.url not in sent["text"], "the link travels in `link`, not in the message"
    number = sent["post_id"].split("_")[1]
    assert delivery.external_id == sent["post_id"] == f"{PAGE_ID}_{number}"
    assert delivery.external_url == f"https://www.facebook.com/{PAGE_ID}/posts/{number}"
    attempt = DeliveryAttempt.objects.get(delivery=delivery)
    assert attempt.outcome == "sent" and attempt.number == 1


def test_the_token_travels_in_the_post_body_and_a_header_never_in_a_url(fb):
    send_once(fb)

    publish, permalink = fb.emulator.requests
    assert publish.method == "POST" and publish.path == f"/v25.0/{PAGE_ID}/feed"
    assert publish.form["access_token"] == TOKEN and not publish.query
    assert permalink.method == "GET" and permalink.path.startswith("/v25.0/")
    assert permalink.headers["authorization"] == f"Bearer {TOKEN}"
    assert permalink.query == {"fields": ["permalink_url"]}


def test_an_arabic_post_arrives_intact(fb):
    post = fixture_post("nejat-ar.rss")
    target = fb.make_target()
    delivery = Delivery.objects.create(post=post, target=target)
    expected = get_adapter(target).render(delivery)

    attempt_delivery(delivery.pk)

    [sent] = fb.sent()
    assert sent["text"] == expected.text
    assert "مستشار الأمن الوطني العراقي: يجب محاكمة عناصر المنظمة" in sent["text"]
    assert "انتقد مستشار الأمن الوطني العراقي وجود المنظمة في العراق." in sent["text"]
    assert sent["link"] == "https://www.nejatngo.org/ar/?p=41002&utm_source=facebook&utm_medium=social"
    assert Delivery.objects.get(pk=delivery.pk).status == "sent"


def test_the_graph_version_is_pinned_in_settings_and_overridable_per_target(fb, settings):
    settings.SYNDICATOR_GRAPH_API_VERSION = "v24.0"
    send_once(fb)
    send_once(fb, 1, graph_version="v26.0")

    posts = [r.path for r in fb.emulator.requests if r.method == "POST"]
    assert posts == [f"/v24.0/{PAGE_ID}/feed", f"/v26.0/{PAGE_ID}/feed"]


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 500, "json": graph_error(2, "Service temporarily unavailable")},
        {"status": 400, "json": graph_error(100, "Unsupported get request", subcode=33)},
        {"status": 502, "json": None},
        {"status": 200, "json": None, "delay": 3},  # past the 1 s timeout
    ],
    ids=["graph-error-2", "graph-error-100", "bare-502", "hang"],
)
def test_a_failing_permalink_lookup_does_not_fail_the_delivery(fb, fault, caplog):
    fb.emulator.fail_permalink_next(**fault)
    delivery = deliver(fb.make_target(), fixture_post("nejat-en-recent.rss"))

    assert delivery.status == "sent", delivery.last_error
    assert delivery.external_id == fb.sent()[0]["post_id"]
    assert delivery.external_url == f"https://www.facebook.com/{delivery.external_id}"
    assert "permalink lookup" in caplog.text and TOKEN not in caplog.text


def test_a_photo_post_sends_the_image_with_the_text_and_link_as_caption(fb):
    post = fixture_post("nejat-en-recent.rss", image_url=IMAGE)
    delivery = deliver(fb.make_target(photo=True), post)

    assert delivery.status == "sent", delivery.last_error
    [sent] = fb.sent()
    assert sent["photo"] and sent["image_url"] == IMAGE
    assert sent["text"].startswith("A Criterion for Proving the Violent Nature of the MEK")
    assert sent["text"].endswith("https://www.nejatngo.org/en/?p=90005&utm_source=facebook&utm_medium=social")
    assert fb.emulator.requests[0].path == f"/v25.0/{PAGE_ID}/photos"
    assert delivery.external_id == sent["post_id"] != sent["photo_id"]
    assert delivery.external_url.startswith(f"https://www.facebook.com/{PAGE_ID}/posts/")


def test_photo_mode_without_an_image_posts_a_link(fb):
    delivery = deliver(fb.make_target(photo=True), fixture_post("nejat-en-recent.rss"))

    assert delivery.status == "sent"
    assert not fb.sent()[0]["photo"] and fb.sent()[0]["link"]


# --- errors: TARGETS.md §2, every row of the Graph table ---------------------------------------

GRAPH_ROWS = [
    # (HTTP status, code, subcode, expected class, words the message must hold)
    (500, 1, None, TransientError, "unknown API error"),
    (503, 2, None, TransientError, "service error"),
    (403, 4, None, RateLimited, "app request limit"),
    (400, 17, None, RateLimited, "user request limit"),  # seen as HTTP 400 in the wild
    (400, 32, None, RateLimited, "Page request limit"),
    (400, 613, None, RateLimited, "custom rate limit"),
    (400, 80001, None, RateLimited, "Business Use Case"),
    (400, 341, None, RateLimited, "application limit"),
    (400, 190, None, TargetBroken, "re-issue the Page token"),
    (400, 190, 458, TargetBroken, "token expired/revoked"),
    (400, 190, 459, TargetBroken, "token expired/revoked"),
    (400, 190, 460, TargetBroken, "password was changed"),
    (400, 190, 463, TargetBroken, "token expired"),
    (400, 190, 464, TargetBroken, "token expired/revoked"),
    (400, 190, 467, TargetBroken, "token is invalid"),
    (403, 10, None, TargetBroken, "permission missing"),
    (403, 200, None, TargetBroken, "pages_manage_posts"),
    (403, 230, None, TargetBroken, "permission missing"),
    (403, 299, None, TargetBroken, "configuration"),
    (400, 100, None, PermanentError, "invalid parameter"),
    (400, 368, None, TargetBroken, "temporarily blocked for a policy violation"),
    (400, 506, None, PermanentError, "probably posted"),
    (400, 1609005, None, TransientError, "link scrape failed"),
    (500, None, None, TransientError, "without a Graph error (500); will retry"),
    (502, None, None, TransientError, "without a Graph error (502)"),
    (503, None, None, TransientError, "without a Graph error (503)"),
]


@pytest.mark.parametrize(
    ("status", "code", "subcode", "expected", "words"),
    GRAPH_ROWS,
    ids=[f"{code or 'bare'}-{subcode or status}" for status, code, subcode, *_ in GRAPH_ROWS],
)
def test_graph_errors_are_classified_by_code_and_subcode(fb, status, code, subcode, expected, words):
    if code is None:
        fb.emulator.fail_next(status=status, body=b"<html>Service Unavailable</html>")
    else:
        body = graph_error(code, f"(#{code}) Graph says no", subcode=subcode)
        fb.emulator.fail_next(status=status, json=body)

    with pytest.raises(expected) as caught:
        send_once(fb)

    exc = caught.value
    assert isinstance(exc, TargetBroken) == (expected is TargetBroken)
    assert isinstance(exc, RateLimited) == (expected is RateLimited)
    assert words in str(exc) and exc.http_status == status
    if expected is RateLimited:
        assert exc.retry_after == 300, "no usage header: the default wait"
    assert fb.sent() == []


@pytest.mark.parametrize(
    ("is_transient", "expected"), [(True, TransientError), (False, PermanentError), (None, PermanentError)]
)
def test_a_code_outside_the_table_uses_is_transient_as_a_hint(fb, is_transient, expected):
    fb.emulator.fail_next(status=400, json=graph_error(9007, "Unexpected", is_transient=is_transient))

    with pytest.raises(expected, match="unexpected Graph error"):
        send_once(fb)


def test_a_4xx_without_a_graph_error_means_base_url_or_version_is_wrong(fb):
    fb.emulator.fail_next(status=404, body=b"Not Found")  # a proxy or a web server, not Graph
    with pytest.raises(TargetBroken, match="check base_url and graph_version"):
        send_once(fb)


@pytest.mark.parametrize(
    ("headers", "retry_after"),
    [
        (buc_usage(PAGE_ID, 3), 180),
        (
            {
                "X-Business-Use-Case-Usage": json.dumps(
                    {
                        PAGE_ID: [{"type": "pages", "estimated_time_to_regain_access": 2}],
                        "999": [{"type": "pages", "estimated_time_to_regain_access": 7}],
                    }
                )
            },
            420,
        ),
        ({"X-App-Usage": json.dumps({"call_count": 100, "total_cputime": 20, "total_time": 30})}, 900),
        ({"X-App-Usage": json.dumps({"call_count": 40, "total_cputime": 20, "total_time": 30})}, 300),
        ({"X-Business-Use-Case-Usage": "not json"}, 300),
        ({}, 300),
    ],
    ids=["buc-3-minutes", "buc-largest-entry", "app-usage-full", "app-usage-low", "garbage", "none"],
)
def test_rate_limits_wait_as_long_as_the_usage_headers_say(fb, headers, retry_after):
    fb.emulator.fail_next(status=400, json=graph_error(80001, "(#80001) Too many calls"), headers=headers)

    with pytest.raises(RateLimited) as caught:
        send_once(fb)

    assert caught.value.retry_after == retry_after


def test_a_rate_limited_attempt_waits_at_least_as_long_as_graph_said(fb):
    fb.inject("rate_limited")  # code 32, Business Use Case header: 1 minute
    delivery = deliver(fb.make_target(), fixture_post("nejat-en-recent.rss"))

    attempt = DeliveryAttempt.objects.get(delivery=delivery)
    assert delivery.status == "retrying"
    assert attempt.outcome == "rate_limited" and attempt.retry_after == 60
    assert (delivery.next_attempt_at - timezone.now()).total_seconds() > 55


def test_a_timeout_after_the_request_left_makes_the_delivery_uncertain(fb):
    fb.inject("timeout")
    delivery = deliver(fb.make_target(), fixture_post("nejat-en-recent.rss"))

    assert delivery.status == "uncertain"
    assert DeliveryAttempt.objects.get(delivery=delivery).error_class == OutcomeUnknown.__name__


@pytest.mark.parametrize("fault", ["timeout", "server_error"])
def test_a_failed_look_up_of_an_uncertain_post_is_a_plain_retry_not_uncertain(fb, fault):
    target = fb.make_target()
    delivery = Delivery.objects.create(post=fixture_post("nejat-en-recent.rss"), target=target)
    fb.inject(fault)  # the GET of the Page's feed hangs past the 1 s timeout, or fails
    with pytest.raises(TransientError) as caught:
        get_adapter(target).verify(delivery)
    assert type(caught.value) is TransientError and "GET /v25.0/" in str(caught.value)
    assert fb.sent() == []


def test_a_bad_timeout_pauses_the_target(fb):
    target = fb.make_target(timeout="soon")
    delivery = deliver(target, fixture_post("nejat-en-recent.rss"))

    target.refresh_from_db()
    assert target.paused_at is not None and "timeout is a duration" in target.paused_reason
    assert delivery.status == "queued" and fb.sent() == []


# --- duplicates -------------------------------------------------------------------------------


def test_a_duplicate_on_the_first_attempt_fails_the_delivery(fb):
    target = fb.make_target()
    first = deliver(target, fixture_post("nejat-en-recent.rss"))
    again = Delivery.objects.create(post=first.post, target=target, origin=Delivery.Origin.MANUAL)
    attempt_delivery(again.pk)
    again.refresh_from_db()

    assert again.status == "failed" and "duplicate post" in again.last_error
    assert len(fb.sent()) == 1


def test_a_retry_after_a_lost_answer_finds_the_earlier_post_instead_of_posting_twice(fb):
    fb.emulator.lose_answer_next()  # the post is made, the answer is a bare 502
    delivery = deliver(fb.make_target(), fixture_post("nejat-en-recent.rss"))
    assert delivery.status == "retrying"

    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    attempt_delivery(delivery.pk)
    delivery.refresh_from_db()

    [sent] = fb.sent()
    assert delivery.status == "sent", delivery.last_error
    assert delivery.external_id == sent["post_id"]
    assert delivery.external_url.startswith(f"https://www.facebook.com/{PAGE_ID}/posts/")


# --- secrets and a dead token ------------------------------------------------------------------


def test_the_token_never_reaches_an_error_the_delivery_log_or_a_log_line(fb, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "syndicator"):
        caplog.set_level(logging.DEBUG, logger=name)
    target = fb.make_target()
    echo = graph_error(190, f"Invalid OAuth access token: {TOKEN} (bad signature)")
    faults = [
        {"status": 500, "body": b""},
        {"status": 400, "json": graph_error(1609005, f"Could not scrape link; token={TOKEN}")},
        {"status": 400, "json": echo},
    ]
    deliveries = []
    for number, fault in enumerate(faults):
        fb.emulator.fail_next(**fault)
        post = fixture_post("nejat-en-recent.rss", number)
        deliveries.append(deliver(target, post))
        Target.objects.filter(pk=target.pk).update(paused_at=None, paused_reason="")
    fb.emulator.fail_permalink_next(json=graph_error(190, f"bad token {TOKEN}"))
    deliveries.append(deliver(target, fixture_post("nejat-en-recent.rss", 3)))
    fb.emulator.fail_next(status=400, json=echo)
    with pytest.raises(TargetBroken) as caught:
        get_adapter(target).check()

    assert [d.status for d in deliveries] == ["retrying", "retrying", "queued", "sent"]
    texts = [str(caught.value), caplog.text, *(r.getMessage() for r in caplog.records)]
    texts += [d.last_error for d in Delivery.objects.all()]
    texts += list(DeliveryAttempt.objects.values_list("message", flat=True))
    texts += list(Target.objects.values_list("paused_reason", flat=True))
    assert all(TOKEN not in text for text in texts)
    assert "<redacted>" in Delivery.objects.get(pk=deliveries[2].pk).last_error
    assert all(TOKEN not in r.path and "access_token" not in r.query for r in fb.emulator.requests)


def test_a_dead_token_pauses_the_target_and_holds_its_deliveries(fb):
    fb.emulator.revoke(TOKEN)
    target = fb.make_target()
    delivery = deliver(target, fixture_post("nejat-en-recent.rss"))
    waiting = Delivery.objects.create(post=fixture_post("nejat-en-recent.rss", 1), target=target)

    target.refresh_from_db()
    assert target.paused_at is not None
    assert "re-issue the Page token" in target.paused_reason and "FACEBOOK_PAGE_TOKEN" in target.paused_reason
    assert delivery.status == "queued" and delivery.next_attempt_at is None
    assert attempt_delivery(waiting.pk) is None, "a paused target sends nothing"
    assert fb.sent() == []


def test_a_missing_token_variable_breaks_the_target(fb, monkeypatch):
    monkeypatch.delenv(Harness.env_name)
    with pytest.raises(TargetBroken, match="FACEBOOK_PAGE_TOKEN is not set"):
        send_once(fb)


# --- check() ----------------------------------------------------------------------------------


def test_check_names_the_page_of_a_good_token(fb):
    assert get_adapter(fb.make_target()).check() == f"ok: Page token for {PAGE_NAME} ({PAGE_ID})"
    [me] = fb.emulator.requests
    assert me.path == "/v25.0/me" and me.headers["authorization"] == f"Bearer {TOKEN}"


def test_check_rejects_a_bad_token(fb):
    fb.emulator.revoke(TOKEN)
    with pytest.raises(TargetBroken, match="token expired/revoked"):
        get_adapter(fb.make_target()).check()


def test_check_rejects_the_token_of_another_page(fb, monkeypatch):
    fb.emulator.add_page("555000111", "Another Page", "EAAGanotherPageToken")
    monkeypatch.setenv(Harness.env_name, "EAAGanotherPageToken")

    with pytest.raises(TargetBroken) as caught:
        get_adapter(fb.make_target()).check()

    assert "belongs to page 'Another Page' (555000111), not page_id" in str(caught.value)
    assert PAGE_ID in str(caught.value)


# --- the conformance harness --------------------------------------------------------------------


@pytest.mark.parametrize("mode", sorted(Harness.expected))
def test_every_harness_mode_raises_its_expected_error(fb, mode):
    fb.inject(mode)
    with pytest.raises(Harness.expected[mode]) as caught:
        send_once(fb)
    if mode == "rate_limited":
        assert caught.value.retry_after == 60
    assert fb.sent() == []


def test_the_harness_restores_the_environment(monkeypatch):
    monkeypatch.setenv(Harness.env_name, "the-real-one")
    with Harness():
        assert os.environ[Harness.env_name] == TOKEN
    assert os.environ[Harness.env_name] == "the-real-one"
