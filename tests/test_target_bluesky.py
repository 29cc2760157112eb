"""The Bluesky target over real HTTP against the PDS emulator: posts, facets, sessions, cards, errors."""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from io import StringIO
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from syndicator.delivery import attempt_delivery
from syndicator.errors import (
    DeliveryError,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    TargetBroken,
    TransientError,
)
from syndicator.formatting import Message, render_message
from syndicator.models import Delivery, DeliveryAttempt, Post, Target
from syndicator.targets import get_adapter
from syndicator.targets.bluesky import THUMB_MAX_BYTES
from syndicator.targets.bluesky.richtext import LINK, TAG, facet_text, facets
from syndicator.targets.bluesky.text import bluesky_length
from syndicator.targets.faults import RATE_LIMIT_FALLBACK
from syndicator.textrules import hashtags
from tests.emulators.bluesky import DID, HANDLE, PNG, Harness, xrpc_error
from tests.helpers import demo_post
from tests.test_formatting_properties import default_link, posts

pytestmark = pytest.mark.django_db
CREATE = "com.atproto.repo.createRecord"
LOGIN = "com.atproto.server.createSession"
LIST = "com.atproto.repo.listRecords"
ZWNJ = "\u200c"


@pytest.fixture
def bsky() -> Iterator[Harness]:
    with Harness() as harness:
        yield harness


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def send(target: Target, post: Post | None = None) -> tuple[Message, object]:
    """Render and send one delivery of the post straight through the adapter."""
    delivery = Delivery.objects.create(post=post or demo_post("nejat-en-recent.rss"), target=target)
    adapter = get_adapter(target)
    message = adapter.render(delivery)
    return message, adapter.send(message, delivery)


def send_text(target: Target, text: str) -> object:
    """Send exactly this text, bypassing the renderer's fitting."""
    delivery = Delivery.objects.create(post=demo_post("nejat-en-recent.rss"), target=target)
    return get_adapter(target).send(Message(format="bluesky", text=text), delivery)


def covered(record: dict) -> list[tuple[str, str, str]]:
    """Each facet of a record as (kind, the text its byte range covers, its uri or tag)."""
    found = []
    for facet in record.get("facets", []):
        (feature,) = facet["features"]
        kind = "link" if feature["$type"] == LINK else "tag"
        found.append((kind, facet_text(record["text"], facet), feature.get("uri") or feature.get("tag")))
    return found


# --- posts ----------------------------------------------------------------------------------------


def test_a_feed_post_is_posted_with_facets_langs_a_card_and_recorded_with_its_uri_and_url(bsky) -> None:
    target = bsky.make_target()
    post = demo_post("nejat-en-recent.rss", categories=["MEK", "Human Rights"])
    delivery = Delivery.objects.create(post=post, target=target)

    attempt = attempt_delivery(delivery.pk)

    delivery.refresh_from_db()
    (sent,) = bsky.sent()
    record = sent["record"]
    assert attempt is not None and attempt.outcome == "sent" and delivery.status == "sent"
    assert delivery.external_id == sent["uri"] == f"at://{DID}/app.bsky.feed.post/{sent['rkey']}"
    assert delivery.external_url == f"https://bsky.app/profile/{HANDLE}/post/{sent['rkey']}"
    assert record["text"] == delivery.rendered_text and post.title in record["text"]
    link = default_link(post.url, "bluesky")
    assert covered(record) == [
        ("link", link, link),
        ("tag", "#MEK", "MEK"),
        ("tag", "#HumanRights", "HumanRights"),
    ]
    assert record["langs"] == ["en"]
    created = datetime.fromisoformat(record["createdAt"])
    assert record["createdAt"].endswith("Z") and abs((timezone.now() - created).total_seconds()) < 60
    card = record["embed"]
    assert card["$type"] == "app.bsky.embed.external"
    assert card["external"]["uri"] == link and card["external"]["title"] == post.title
    assert card["external"]["description"] and "thumb" not in card["external"]


TITLES = {
    "en-emoji": ("en", "Nejat NewsLetter 📰 – January 2026 👨‍👩‍👧 families reunited"),
    "ar": ("ar", "نشرة نجات الإخبارية – يناير ٢٠٢٦: عائلات تطالب بلقاء أبنائها 🙏"),
    "fa-zwnj": ("fa", f"خبرنامه{ZWNJ}ی انجمن نجات – دی ۱۴۰۴: خانواده{ZWNJ}ها می{ZWNJ}خواهند ✊🏽"),
}


@pytest.mark.parametrize(("language", "title"), TITLES.values(), ids=TITLES.keys())
def test_facets_cover_the_link_and_tags_by_utf8_bytes_in_any_script(bsky, language: str, title: str) -> None:
    categories = ["MEK", "حقوق بشر", f"نیم{ZWNJ}فاصله", "أخبار"]
    post = demo_post("nejat-en-recent.rss", title=title, language=language, categories=categories)

    message, _ = send(bsky.make_target(hashtag_limit=4), post)

    (sent,) = bsky.sent()  # the emulator checked every byte range falls on a character boundary
    link = default_link(post.url, "bluesky")
    tags = [("tag", "#MEK", "MEK"), ("tag", "#حقوقبشر", "حقوقبشر"), ("tag", "#نیم_فاصله", "نیم_فاصله")]
    assert covered(sent["record"]) == [("link", link, link), *tags, ("tag", "#أخبار", "أخبار")]
    assert title in sent["record"]["text"] and sent["record"]["langs"] == [language]
    # Counting code points instead of bytes would have put the link facet elsewhere.
    start = sent["record"]["facets"][0]["index"]["byteStart"]
    assert start == len(message.text[: message.text.index(link)].encode()) != message.text.index(link)


def test_a_tag_facet_stops_where_bluesky_ends_a_tag() -> None:
    text = f"news #one, #دو{ZWNJ}سه (#four) #123 #tail… https://a.example/x#frag."

    assert [(kind, part) for kind, part, _ in covered({"text": text, "facets": facets(text)})] == [
        ("tag", "#one"),
        ("tag", "#دو"),  # a ZWNJ ends a tag for Bluesky's clients: formatting writes it as "_"
        ("tag", "#tail"),  # trailing punctuation is no part of a tag; "(#four)" and "#123" are no tags
        ("link", "https://a.example/x#frag"),  # a fragment is no tag, the full stop no part of the URL
    ]


@settings(max_examples=150, deadline=None)
@given(
    post=posts, categories=st.lists(st.sampled_from(["MEK", "حقوق بشر", f"نیم{ZWNJ}فاصله", "😀 emoji", "x"]))
)
def test_any_rendered_post_fits_300_graphemes_and_its_facets_decode_to_the_link_and_tags(
    post: SimpleNamespace, categories: list[str]
) -> None:
    post.categories = post.categories + categories
    message = render_message(post, "bluesky")
    found = facets(message.text, message.link)

    assert bluesky_length(message.text) <= 300
    link = default_link(post.url, "bluesky")
    assert link in message.text
    spans = [(f["index"]["byteStart"], f["index"]["byteEnd"]) for f in found]
    assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(spans))
    for facet in found:
        (feature,) = facet["features"]
        part = facet_text(message.text, facet)  # raises if a range splits a character
        assert part == (feature["uri"] if feature["$type"] == LINK else "#" + feature["tag"])
    assert {"uri": link, "$type": LINK} in [f["features"][0] for f in found]
    tagged = {f["features"][0]["tag"] for f in found if f["features"][0]["$type"] == TAG}
    last_line = message.text.rsplit("\n", 1)[-1].split()
    assert {tag[1:] for tag in hashtags(post.categories) if tag in last_line} <= tagged


# --- the 300-grapheme limit -----------------------------------------------------------------------


@pytest.mark.parametrize("language", ["en", "fa"])
def test_a_long_title_is_cut_to_300_graphemes_and_the_link_and_hashtags_survive(bsky, language: str) -> None:
    piece = "Families 👨‍👩‍👧 ask to see their children " if language == "en" else f"خانواده{ZWNJ}ها 👨‍👩‍👧 "
    post = demo_post("nejat-en-recent.rss", title=piece * 40, language=language, categories=["MEK", "Iran"])

    send(bsky.make_target(), post)

    (sent,) = bsky.sent()
    text = sent["record"]["text"]
    assert 250 < bluesky_length(text) <= 300 < len(text)  # graphemes, not code points, were counted
    assert "…" in text and text.endswith("#MEK #Iran")
    assert [kind for kind, _, _ in covered(sent["record"])] == ["link", "tag", "tag"]


def test_the_emulator_counts_graphemes_not_code_points(bsky) -> None:
    target = bsky.make_target()
    send_text(target, "e\u0301" * 300)  # 300 graphemes, 600 code points: accepted
    with pytest.raises(PermanentError) as caught:
        send_text(target, "e\u0301" * 301)
    assert caught.value.http_status == 400 and "300 graphemes" in str(caught.value)
    assert [p["text"] for p in bsky.sent()] == ["e\u0301" * 300]


# --- sessions -------------------------------------------------------------------------------------


def test_the_session_is_kept_between_posts(bsky) -> None:
    target = bsky.make_target()
    send(target)
    send(target)
    assert (bsky.emulator.logins, bsky.emulator.refreshes, len(bsky.sent())) == (1, 0, 2)


def test_an_expired_access_token_is_refreshed_once_and_the_post_goes_out(bsky) -> None:
    target = bsky.make_target()
    send(target)
    bsky.emulator.expire_access_tokens()

    send(target)

    assert (bsky.emulator.logins, bsky.emulator.refreshes, len(bsky.sent())) == (1, 1, 2)
    calls = [r.path.rsplit("/", 1)[-1] for r in bsky.emulator.requests]
    assert calls[-3:] == [CREATE, "com.atproto.server.refreshSession", CREATE]


def test_when_the_refresh_token_expired_too_a_new_session_is_created(bsky) -> None:
    target = bsky.make_target()
    send(target)
    bsky.emulator.expire_access_tokens()
    bsky.emulator.expire_refresh_tokens()

    send(target)

    assert (bsky.emulator.logins, bsky.emulator.refreshes, len(bsky.sent())) == (2, 0, 2)


def test_a_service_refusing_even_a_new_session_breaks_the_target_without_looping(bsky) -> None:
    target = bsky.make_target()
    bsky.emulator.issue_expired = True
    delivery = Delivery.objects.create(post=demo_post(), target=target)

    attempt_delivery(delivery.pk)

    target.refresh_from_db()
    (logged,) = DeliveryAttempt.objects.filter(delivery=delivery)
    assert logged.error_class == "TargetBroken" and "even a new session" in logged.message
    assert target.paused_at is not None and bsky.sent() == []
    assert bsky.emulator.logins == 2 and bsky.emulator.refreshes == 1  # login, refresh, login: then stop


def test_threads_that_find_the_token_expired_refresh_it_once(bsky) -> None:
    target = bsky.make_target()
    send(target)
    bsky.emulator.expire_access_tokens()
    adapter = get_adapter(target)
    deliveries = [Delivery.objects.create(post=demo_post(title=f"Post {n}"), target=target) for n in range(4)]
    messages = [adapter.render(delivery) for delivery in deliveries]  # no database in the threads
    errors: list[BaseException] = []

    def post_one(message: Message, delivery: Delivery) -> None:
        try:
            get_adapter(target).send(message, delivery)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=post_one, args=pair) for pair in zip(messages, deliveries, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert errors == [] and len(bsky.sent()) == 5
    assert (bsky.emulator.logins, bsky.emulator.refreshes) == (1, 1)


def test_a_401_on_a_call_with_a_token_renews_the_session_once(bsky) -> None:
    target = bsky.make_target()
    send(target)
    body = xrpc_error("AuthenticationRequired", "Authentication Required")
    bsky.emulator.fail_method(CREATE, status=401, json=body)

    send(target)

    assert (bsky.emulator.logins, bsky.emulator.refreshes, len(bsky.sent())) == (1, 1, 2)


def test_a_bad_app_password_pauses_the_target_and_posts_nothing(bsky, monkeypatch) -> None:
    monkeypatch.setenv(Harness.PASSWORD_ENV, "wxyz-wxyz-wxyz-wxyz")
    target = bsky.make_target()
    delivery = Delivery.objects.create(post=demo_post(), target=target)

    attempt_delivery(delivery.pk)

    delivery.refresh_from_db()
    target.refresh_from_db()
    assert delivery.status == "queued" and target.paused_at is not None  # it waits for a resume
    assert "app password" in target.paused_reason and Harness.PASSWORD_ENV in target.paused_reason
    assert [r.path for r in bsky.emulator.requests] == [f"/xrpc/{LOGIN}"] and bsky.sent() == []


# --- rate limits and errors -----------------------------------------------------------------------


@pytest.mark.parametrize(("headers", "wait"), [({"ratelimit-reset": 120}, 120), ({}, RATE_LIMIT_FALLBACK)])
def test_429_waits_until_ratelimit_reset(bsky, headers: dict, wait: float) -> None:
    reset = {name: str(int(time.time()) + value) for name, value in headers.items()}
    body = xrpc_error("RateLimitExceeded", "Rate Limit Exceeded")
    bsky.emulator.fail_method(CREATE, status=429, json=body, headers={"ratelimit-remaining": "0", **reset})
    target = bsky.make_target()
    delivery = Delivery.objects.create(post=demo_post(), target=target)

    attempt_delivery(delivery.pk)

    delivery.refresh_from_db()
    (logged,) = DeliveryAttempt.objects.filter(delivery=delivery)
    assert logged.error_class == "RateLimited" and wait - 2 <= logged.retry_after <= wait + 1
    assert delivery.status == "retrying"
    assert delivery.next_attempt_at >= timezone.now() + timedelta(seconds=wait - 5)


ERROR_ROWS = [
    # (method, status, XRPC error, class, words)
    pytest.param(CREATE, 400, "InvalidRequest", PermanentError, "refused this post", id="400-invalid"),
    pytest.param(CREATE, 403, "Forbidden", TargetBroken, "may not", id="403"),
    pytest.param(CREATE, 404, "MethodNotImplemented", TargetBroken, "does not implement", id="404"),
    pytest.param(CREATE, 500, "InternalServerError", OutcomeUnknown, "may be published", id="500"),
    pytest.param(CREATE, 502, None, OutcomeUnknown, "may be published", id="502-no-json"),
    pytest.param(CREATE, 503, "NotEnoughResources", TransientError, "nothing was done", id="503"),
    pytest.param(CREATE, 301, None, TargetBroken, "check base_url", id="301"),
    pytest.param(LOGIN, 500, "InternalServerError", TransientError, "nothing was posted", id="login-500"),
    pytest.param(LOGIN, 401, "AccountTakedown", TargetBroken, "taken down", id="login-takedown"),
    pytest.param(LOGIN, 429, "RateLimitExceeded", RateLimited, "slow down", id="login-429"),
]


@pytest.mark.parametrize(("method", "status", "name", "error", "words"), ERROR_ROWS)
def test_xrpc_errors_map_to_the_table(bsky, method, status, name, error, words) -> None:
    body = xrpc_error(name, "said by the service") if name else None
    bsky.emulator.fail_method(method, status=status, json=body, headers={"Location": "/elsewhere"})
    with pytest.raises(DeliveryError) as caught:
        send(bsky.make_target())
    assert type(caught.value) is error and caught.value.http_status == status
    assert words in str(caught.value)
    assert bsky.sent() == []


@pytest.mark.parametrize(("method", "error"), [(LOGIN, TransientError), (CREATE, OutcomeUnknown)])
def test_a_timeout_is_a_retry_before_posting_and_unknown_when_posting(bsky, method, error) -> None:
    bsky.emulator.fail_method(method, status=504, delay=5)
    started = time.monotonic()
    with pytest.raises(DeliveryError) as caught:
        send(bsky.make_target(timeout=1))
    assert type(caught.value) is error and time.monotonic() - started < 3


def test_a_refused_connection_is_transient(bsky) -> None:
    with pytest.raises(TransientError) as caught:
        send(bsky.make_target(service_url=f"http://127.0.0.1:{free_port()}"))
    assert type(caught.value) is TransientError


def test_a_missing_password_breaks_the_target_before_any_request(bsky, monkeypatch) -> None:
    monkeypatch.delenv(Harness.PASSWORD_ENV)
    with pytest.raises(TargetBroken, match=f"{Harness.PASSWORD_ENV} is not set"):
        send(bsky.make_target())
    assert bsky.emulator.requests == []


@pytest.mark.parametrize("mode", list(Harness.expected))
def test_harness_modes_raise_what_they_promise_and_the_next_send_works(bsky, mode: str) -> None:
    target = bsky.make_target()
    bsky.inject(mode)
    with pytest.raises(DeliveryError) as caught:
        send(target)
    assert type(caught.value) is Harness.expected[mode]
    send(target)
    assert len(bsky.sent()) == 1


# --- uncertain posts are looked up ---------------------------------------------------------------


def test_a_post_made_but_unanswered_is_found_by_its_text_and_marked_sent(bsky, settings) -> None:
    target = bsky.make_target()  # 1 s timeout
    send(target, demo_post(title="An earlier post"))
    delivery = Delivery.objects.create(post=demo_post(), target=target)
    bsky.emulator.answer_late = 3
    assert attempt_delivery(delivery.pk).outcome == "unknown"
    delivery.refresh_from_db()
    assert delivery.status == "uncertain" and "looked up on the network shortly" in delivery.last_error

    settings.SYNDICATOR_VERIFY_AFTER = 0
    looked_up = attempt_delivery(delivery.pk)

    delivery.refresh_from_db()
    made = bsky.sent()[-1]
    assert looked_up.outcome == "sent" and looked_up.message.startswith("verified")
    assert delivery.status == "sent" and delivery.external_id == made["uri"]
    assert delivery.external_url == f"https://bsky.app/profile/{HANDLE}/post/{made['rkey']}"
    assert len(bsky.sent()) == 2, "found, not posted again"


def test_a_post_never_made_is_looked_up_and_left_uncertain_for_an_admin(bsky, settings) -> None:
    target = bsky.make_target()
    post = demo_post()
    send(target, post)  # the same text, posted before this delivery existed: not the one looked for
    later = timezone.now() + timedelta(hours=1)  # a manual repost, made after the first post
    delivery = Delivery.objects.create(post=post, target=target, origin="manual", created_at=later)
    bsky.emulator.fail_method(CREATE, status=500, json=xrpc_error("InternalServerError", "Internal"))
    attempt_delivery(delivery.pk)

    settings.SYNDICATOR_VERIFY_AFTER = 0
    looked_up = attempt_delivery(delivery.pk)

    delivery.refresh_from_db()
    assert looked_up.outcome == "unknown" and delivery.status == "uncertain"
    assert "probably not published" in delivery.last_error and len(bsky.sent()) == 1


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        ({"status": 504, "delay": 5}, "no answer"),  # the look-up's answer is lost past the 1 s timeout
        ({"status": 500, "json": xrpc_error("InternalServerError", "Internal")}, "nothing was posted"),
    ],
    ids=["lost", "500"],
)
def test_a_failed_look_up_is_a_plain_retry_not_uncertain(bsky, reply: dict, words: str) -> None:
    target = bsky.make_target()
    delivery = Delivery.objects.create(post=demo_post(), target=target)
    bsky.emulator.fail_method(LIST, **reply)
    with pytest.raises(DeliveryError) as caught:
        get_adapter(target).verify(delivery)
    assert type(caught.value) is TransientError and words in str(caught.value)
    assert LIST in str(caught.value) and bsky.sent() == []


def test_a_created_record_without_its_uri_is_uncertain(bsky) -> None:
    bsky.emulator.fail_method(CREATE, status=200, json={"cid": "bafy"})
    with pytest.raises(OutcomeUnknown, match="it may have been posted"):
        send(bsky.make_target())


def test_base_url_names_the_service_and_wins_over_the_older_service_url(bsky) -> None:
    target = bsky.make_target(base_url=bsky.emulator.base_url, service_url="http://127.0.0.1:9")
    send(target)
    assert len(bsky.sent()) == 1
    del target.settings["service_url"]
    target.save()
    send(target)
    assert len(bsky.sent()) == 2


# --- the link card's thumbnail --------------------------------------------------------------------


def test_the_posts_image_is_uploaded_as_the_link_cards_thumbnail(bsky) -> None:
    post = demo_post(image_url=bsky.emulator.image_url())

    send(bsky.make_target(), post)

    (blob,) = [item for item in bsky.emulator.accepted if item["kind"] == "blob"]
    thumb = bsky.sent()[0]["record"]["embed"]["external"]["thumb"]
    assert thumb == {
        "$type": "blob",
        "ref": {"$link": blob["cid"]},
        "mimeType": "image/png",
        "size": len(PNG),
    }
    assert bsky.emulator.blobs[blob["cid"]]["bytes"] == PNG


@pytest.mark.parametrize("image", ["missing.png", "page.html", "huge.png", "private"])
def test_an_unusable_image_leaves_a_card_without_thumbnail(bsky, image: str, settings, caplog) -> None:
    bsky.emulator.images["page.html"] = (b"<html>log in</html>", "text/html")
    bsky.emulator.images["huge.png"] = (b"\0" * (THUMB_MAX_BYTES + 1), "image/png")
    if image == "private":
        settings.SYNDICATOR_FEED_ALLOW_PRIVATE = []  # as in production: only public addresses
    post = demo_post(image_url=bsky.emulator.image_url("photo.png" if image == "private" else image))

    send(bsky.make_target(), post)

    external = bsky.sent()[0]["record"]["embed"]["external"]
    assert "thumb" not in external and external["uri"]
    assert "no thumbnail" in caplog.text and bsky.emulator.blobs == {}
    if image == "private":
        assert not any(r.path.startswith("/images/") for r in bsky.emulator.requests)


def test_card_and_thumbnail_can_be_switched_off(bsky) -> None:
    send(bsky.make_target(thumbnail=False), demo_post(image_url=bsky.emulator.image_url()))
    send(bsky.make_target(name="no-card", card=False), demo_post(image_url=bsky.emulator.image_url()))
    first, second = (p["record"] for p in bsky.sent())
    assert "thumb" not in first["embed"]["external"] and "embed" not in second
    assert not any(r.path.startswith("/images/") for r in bsky.emulator.requests)


# --- the command line -----------------------------------------------------------------------------


def test_targets_add_bluesky_then_check_logs_in_and_names_the_account(bsky) -> None:
    out = StringIO()
    call_command(
        "targets", "add", "bluesky", "--name", "bs", "--password-env", Harness.PASSWORD_ENV,
        "--set", f"handle={HANDLE}", f"service_url={bsky.emulator.base_url}", stdout=out,
    )  # fmt: skip
    target = Target.objects.get(name="bs")
    assert target.settings == {"handle": HANDLE, "service_url": bsky.emulator.base_url}
    assert target.secret_env == Harness.PASSWORD_ENV

    checked = StringIO()
    call_command("targets", "check", "bs", stdout=checked, no_color=True)
    assert "ok" in checked.getvalue() and HANDLE in checked.getvalue()
    paths = [r.path for r in bsky.emulator.requests]
    assert paths == [f"/xrpc/{LOGIN}", "/xrpc/com.atproto.server.getSession"]

    os.environ[Harness.PASSWORD_ENV] = "wrong-password"  # restored by the harness
    failed = StringIO()
    with pytest.raises(CommandError, match="1 target failed the check"):
        call_command("targets", "check", "bs", stdout=failed, no_color=True)
    assert "TargetBroken" in failed.getvalue() and "wrong-password" not in failed.getvalue()


def test_an_outbox_renders_the_bluesky_format() -> None:
    call_command("targets", "add", "outbox", "--name", "dry-bs", "--format", "bluesky", stdout=StringIO())
    target = Target.objects.get(name="dry-bs")
    post = demo_post(title="عنوان " * 200, categories=["MEK"])
    delivery = Delivery.objects.create(post=post, target=target)

    attempt_delivery(delivery.pk)

    delivery.refresh_from_db()
    assert target.message_format == "bluesky" and delivery.status == "sent"
    assert bluesky_length(delivery.rendered_text) <= 300
    assert "utm_source=bluesky" in delivery.rendered_text and delivery.rendered_text.endswith("#MEK")


# --- secrets --------------------------------------------------------------------------------------


def test_the_password_and_session_tokens_never_reach_logs_or_the_delivery_log(bsky, caplog) -> None:
    for logger in ("", "httpx", "httpcore", "syndicator"):  # the settings quieten httpx: not here
        caplog.set_level(logging.DEBUG, logger=logger)
    target = bsky.make_target()
    send(target)
    bsky.emulator.expire_access_tokens()
    send(target)  # refreshed
    bsky.emulator.expire_refresh_tokens()
    bsky.emulator.expire_access_tokens()
    for mode in ("server_error", "timeout", "bad_token"):
        bsky.inject(mode)
        Target.objects.filter(pk=target.pk).update(paused_at=None)
        attempt_delivery(Delivery.objects.create(post=demo_post(), target=target).pk)

    target.refresh_from_db()
    written = "\n".join(
        [
            caplog.text,
            target.paused_reason,
            *DeliveryAttempt.objects.values_list("message", flat=True),
            *Delivery.objects.values_list("last_error", flat=True),
        ]
    )
    tokens = bsky.issued_secrets()
    assert len(tokens) >= 4 and "HTTP Request: POST" in caplog.text
    assert Harness.PASSWORD not in written
    assert not [token for token in tokens if token in written]
    sent_tokens = {r.headers.get("authorization", "").partition(" ")[2] for r in bsky.emulator.requests}
    assert sent_tokens & set(tokens), "the tokens did go out, in the Authorization header only"
