"""The Mastodon target over real HTTP against the Mastodon emulator: statuses, the instance's
length rule, images, every error row, the Idempotency-Key that settles uncertain deliveries,
and the CLI."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO

import httpx
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from syndicator import delivery as deliveries
from syndicator.errors import TransientError
from syndicator.formatting import override_length, render_message
from syndicator.models import Delivery, DeliveryAttempt, Feed, Post, Target
from syndicator.targets import get_adapter
from syndicator.targets.faults import RATE_LIMIT_FALLBACK, retry_after
from syndicator.targets.mastodon import IDEMPOTENCY_WINDOW, RATE_LIMIT_HEADERS, idempotency_key
from syndicator.targets.mastodon.text import mastodon_length
from tests.conftest import wait_for
from tests.emulators.mastodon import DOMAIN, TOKEN, USERNAME, Harness, rate_limit_reset, status_length

pytestmark = pytest.mark.django_db

_numbers = itertools.count(1)
LINK = "https://www.nejatngo.org/ar/2026/01/28/%D8%AE%D8%A8%D8%B1"
ARABIC_TITLE = (
    "منظمة نجاة تطالب بالكشف عن مصير المعتقلين، انظر https://www.nejatngo.org/ar/report-2026 و "
    "https://www.nejatngo.org/ar/appeal للمزيد، "
) + "عائلات المعتقلين في مخيم أشرف تنتظر أخبار ذويها منذ سنوات طويلة " * 12
FARSI_TITLE = (
    "گزارش تازهٔ انجمن نجات دربارهٔ خانواده‌های جداشده https://www.nejatngo.org/fa/report و "
    "https://www.nejatngo.org/fa/letters را ببینید؛ "
) + "خانواده‌ها سال‌هاست در انتظار خبری از فرزندان خود هستند و پاسخی نمی‌گیرند " * 12


@pytest.fixture
def social() -> Iterator[Harness]:
    with Harness() as harness:
        yield harness


def new_post(**fields: object) -> Post:
    n = next(_numbers)
    feed = Feed.objects.create(
        url=f"https://www.nejatngo.org/feed/{n}", language=str(fields.get("language", "en"))
    )
    values = {
        "guid": f"https://www.nejatngo.org/?p={n}",
        "url": f"https://www.nejatngo.org/en/news/{n}",
        "title": "Families of Camp Ashraf residents ask for news",
        "summary": "Nejat Society met families who have waited years for a word from their children.",
        "categories": ["Human Rights", "Camp Ashraf"],
        "language": "en",
        **fields,
    }
    return Post.objects.create(feed=feed, **values)


def deliver(target: Target, post: Post) -> Delivery:
    delivery = Delivery.objects.create(post=post, target=target)
    deliveries.attempt_delivery(delivery.pk)
    delivery.refresh_from_db()
    return delivery


def status_posts(harness: Harness) -> list:
    return [r for r in harness.emulator.requests if r.method == "POST" and r.path == "/api/v1/statuses"]


# --- publishing ----------------------------------------------------------------------------------


def test_a_post_becomes_a_public_status_with_its_link_tags_language_and_url(social):
    post = new_post()
    delivery = deliver(social.make_target(), post)

    [status] = social.sent()
    assert delivery.status == "sent", delivery.last_error
    assert delivery.external_id == status["id"]
    assert delivery.external_url == f"https://{DOMAIN}/@{USERNAME}/{status['id']}"
    assert status["visibility"] == "public" and status["language"] == "en"
    assert post.title in status["text"] and "#HumanRights #CampAshraf" in status["text"]
    assert f"{post.url}?utm_source=mastodon&utm_medium=social" in status["text"]
    [request] = status_posts(social)
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["idempotency-key"] == idempotency_key(delivery)


def test_visibility_and_a_regional_language_tag_are_sent_as_mastodon_takes_them(social):
    deliver(social.make_target(visibility="unlisted"), new_post(language="fa-IR", title="خبر تازه"))

    [status] = social.sent()
    assert status["visibility"] == "unlisted" and status["language"] == "fa"


def test_each_delivery_has_its_own_key_and_every_attempt_of_one_delivery_the_same():
    post = new_post()
    target = Target.objects.create(name="m", kind="mastodon", settings={"base_url": "https://x.example"})
    first = Delivery.objects.create(post=post, target=target)
    second = Delivery.objects.create(post=post, target=target, origin=Delivery.Origin.MANUAL)  # a repost

    assert idempotency_key(first) == idempotency_key(Delivery.objects.get(pk=first.pk))
    assert idempotency_key(first) != idempotency_key(second)


# --- the instance's length rule -------------------------------------------------------------------


def test_mastodon_counts_every_url_as_the_instance_says_and_the_rest_in_code_points():
    text = "خبر https://www.nejatngo.org/a/very/long/path/that/goes/on/and/on?x=1 و https://nejatngo.org"
    assert mastodon_length(text) == len("خبر ") + 23 + len(" و ") + 23
    assert mastodon_length(text, url_length=30) == len("خبر ") + 30 + len(" و ") + 30


@pytest.mark.parametrize(
    ("title", "language", "tags"),
    [(ARABIC_TITLE, "ar", ["حقوق الإنسان", "أشرف"]), (FARSI_TITLE, "fa", ["حقوق بشر", "خانواده‌ها"])],
)
def test_a_long_rtl_title_with_urls_is_cut_and_the_link_and_hashtags_survive(social, title, language, tags):
    post = new_post(title=title, summary=title, url=LINK, language=language, categories=tags)
    delivery = deliver(social.make_target(), post)

    [status] = social.sent()  # the emulator refuses more than 500 as Mastodon counts
    text = status["text"]
    assert delivery.status == "sent", delivery.last_error
    assert status_length(text, 23) <= 500 and mastodon_length(text) <= 500
    assert status_length(text, 23) > 450, "the room is used, not wasted"
    assert f"{LINK}?utm_source=mastodon&utm_medium=social" in text
    assert text.endswith(" ".join(f"#{tag.replace(' ', '').replace(chr(0x200C), '_')}" for tag in tags))
    assert "…" in text and title[:40] in text, "the title is cut on a word, from its start"
    assert "https://www.nejatngo.org/ar/appeal" in text or language == "fa"


def test_an_instance_with_other_limits_is_read_by_check_and_honoured(social):
    with Harness(max_characters=1000, url_length=30) as big:
        target = big.make_target()
        assert "1000 characters, a URL counts 30" in get_adapter(target).check()
        target.refresh_from_db()
        assert target.settings["max_characters"] == 1000
        assert target.settings["characters_reserved_per_url"] == 30
        urls = " ".join(f"https://www.nejatngo.org/en/{n}" for n in range(8))
        post = new_post(title=f"Reports {urls} " + "Families keep waiting for news " * 40)

        delivery = deliver(target, post)

        [status] = big.sent()  # counted with 23 a URL, this text would pass 1000 with 30
        assert delivery.status == "sent", delivery.last_error
        assert 950 < status_length(status["text"], 30) <= 1000
        assert status_length(status["text"], 30) > status_length(status["text"], 23) + 7 * 8


def test_override_length_uses_the_instance_limit_from_the_target_settings():
    post = new_post()
    length, limit = override_length(
        post, "mastodon", "A word", options={"max_characters": 1000, "characters_reserved_per_url": 30}
    )
    assert limit == 1000 and length == len("A word\n\n") + 30
    assert override_length(post, "mastodon", "A word")[1] == 500


def test_an_outbox_renders_the_mastodon_format(social):
    call_command(
        "targets", "add", "outbox", "--name", "dry-mastodon", "--format", "mastodon", stdout=StringIO()
    )
    target = Target.objects.get(name="dry-mastodon")
    post = new_post(title=ARABIC_TITLE, url=LINK, language="ar")

    delivery = deliver(target, post)

    assert target.message_format == "mastodon" and delivery.status == "sent"
    assert "utm_source=mastodon" in delivery.rendered_text
    assert mastodon_length(delivery.rendered_text) <= 500
    assert delivery.rendered_text == render_message(post, "mastodon").text
    call_command(
        "targets", "add", "outbox", "--name", "dry-set", "--set", "format=mastodon", stdout=StringIO()
    )
    assert Target.objects.get(name="dry-set").message_format == "mastodon"


# --- images --------------------------------------------------------------------------------------


def test_an_image_is_uploaded_with_the_title_as_alt_text_and_waited_for(social):
    social.emulator.processing_polls = 2  # 202 from the upload, then 206, then 200
    post = new_post(image_url=social.emulator.image_url())
    delivery = deliver(social.make_target(image=True), post)

    [media] = [item for item in social.emulator.accepted if item["kind"] == "media"]
    [status] = social.sent()
    assert delivery.status == "sent", delivery.last_error
    assert media["description"] == post.title and media["content_type"] == "image/png"
    assert status["media_ids"] == [media["id"]]
    looked_up = [r for r in social.emulator.requests if r.path == f"/api/v1/media/{media['id']}"]
    assert len(looked_up) == 2


def test_an_image_still_processing_after_the_wait_is_left_out_not_the_status(social, caplog):
    social.emulator.processing_polls = 1000
    delivery = deliver(
        social.make_target(image=True, media_wait=0.6), new_post(image_url=social.emulator.image_url())
    )

    [status] = social.sent()
    assert delivery.status == "sent" and status["media_ids"] == []
    assert "image not attached" in caplog.text and "still processing" in caplog.text


def test_the_image_goes_through_the_private_address_guard(social, settings, caplog):
    settings.SYNDICATOR_FEED_ALLOW_PRIVATE = []  # the emulator's image is on 127.0.0.1
    delivery = deliver(social.make_target(image=True), new_post(image_url=social.emulator.image_url()))

    [status] = social.sent()
    assert delivery.status == "sent" and status["media_ids"] == []
    assert not [r for r in social.emulator.requests if r.path.startswith("/images/")], "never fetched"
    assert "image not attached" in caplog.text


# --- errors --------------------------------------------------------------------------------------


def test_a_429_waits_until_x_ratelimit_reset(social):
    social.emulator.fail_next(
        status=429, json={"error": "Too many requests"}, headers={"X-RateLimit-Reset": rate_limit_reset(120)}
    )
    delivery = deliver(social.make_target(), new_post())

    attempt = DeliveryAttempt.objects.get(delivery=delivery)
    assert delivery.status == "retrying" and attempt.outcome == "rate_limited"
    assert 110 < attempt.retry_after <= 120
    assert (delivery.next_attempt_at - timezone.now()).total_seconds() > 105
    assert social.sent() == []


def test_retry_after_reads_iso_8601_then_retry_after():
    now = timezone.now()
    reset = (now + timedelta(seconds=42)).isoformat().replace("+00:00", "Z")
    at = now.timestamp()
    headers = RATE_LIMIT_HEADERS
    assert retry_after(httpx.Headers({"X-RateLimit-Reset": reset}), headers, now=at) == pytest.approx(
        42, abs=0.01
    )
    assert retry_after(httpx.Headers({"X-RateLimit-Reset": "soon", "Retry-After": "7"}), headers, now=at) == 7
    assert retry_after(httpx.Headers({}), headers, now=at) is None


def test_a_429_without_a_reset_header_waits_the_contracts_minute(social):
    social.emulator.fail_next(status=429, json={"error": "Too many requests"})
    delivery = deliver(social.make_target(), new_post())

    attempt = DeliveryAttempt.objects.get(delivery=delivery)
    assert delivery.status == "retrying" and attempt.outcome == "rate_limited"
    assert attempt.retry_after == RATE_LIMIT_FALLBACK
    assert "(429): rate limited" in delivery.last_error and "Too many requests" in delivery.last_error


def test_a_bad_timeout_pauses_the_target_instead_of_falling_back(social):
    target = social.make_target(timeout="soon")
    delivery = deliver(target, new_post())

    target.refresh_from_db()
    assert target.paused_at is not None and "timeout is a duration" in target.paused_reason
    assert delivery.status == "queued" and social.sent() == []


def test_a_check_whose_answer_is_lost_is_a_plain_retry_not_uncertain(social):
    adapter = get_adapter(social.make_target())
    social.inject("timeout")  # verify_credentials hangs past the 1 s timeout: it posted nothing
    with pytest.raises(TransientError, match="GET /api/v1/accounts/verify_credentials") as raised:
        adapter.check()
    assert type(raised.value) is TransientError


@pytest.mark.parametrize(("status", "said"), [(401, "token rejected"), (403, "posting refused")])
def test_a_dead_token_pauses_the_target_and_holds_its_delivery(social, status, said):
    social.inject("bad_token" if status == 401 else "forbidden")
    target = social.make_target()
    delivery = deliver(target, new_post())

    target.refresh_from_db()
    assert delivery.status == "queued" and target.paused_at is not None
    assert said in target.paused_reason and TOKEN not in target.paused_reason


def test_a_422_fails_the_delivery_for_good(social):
    with Harness(max_characters=100) as small:
        target = small.make_target()  # believes the stock 500: the instance refuses the status
        delivery = deliver(target, new_post(summary="A long summary of the news. " * 20))

    assert delivery.status == "failed" and delivery.attempts == 1
    assert "(422): status rejected" in delivery.last_error and "character limit of 100" in delivery.last_error
    assert "not retrying this content" in delivery.last_error


def test_a_5xx_makes_the_delivery_uncertain_and_a_refused_connection_retries(social):
    social.inject("server_error")
    assert deliver(social.make_target(), new_post()).status == "uncertain"

    closed = social.make_target("closed", base_url="http://127.0.0.1:9")  # nothing listens: not sent
    assert deliver(closed, new_post()).status == "retrying"


# --- uncertain deliveries and the Idempotency-Key ----------------------------------------------


def test_a_status_made_but_unanswered_is_sent_again_under_its_key_and_posted_once(social, settings):
    social.emulator.lose_next_answers()  # the status is made; the answer comes after the 1 s timeout
    delivery = deliver(social.make_target(), new_post())
    assert delivery.status == "uncertain" and len(social.sent()) == 1
    assert "sent again shortly with the same Idempotency-Key" in delivery.last_error
    assert "looked up" not in delivery.last_error  # Mastodon's are re-sent, not looked up
    assert deliveries.attempt_delivery(delivery.pk) is None, "not before SYNDICATOR_VERIFY_AFTER"

    settings.SYNDICATOR_VERIFY_AFTER = 0
    resent = deliveries.attempt_delivery(delivery.pk)

    delivery.refresh_from_db()
    [status] = social.sent()
    assert delivery.status == "sent" and delivery.external_id == status["id"]
    assert resent.kind == "lookup" and "resent_with_idempotency_key" in resent.message
    keys = [r.headers["idempotency-key"] for r in status_posts(social)]
    assert keys == [idempotency_key(delivery)] * 2, "sent twice, under one key, posted once"


def test_a_status_never_made_is_posted_by_the_re_send(social, settings):
    settings.SYNDICATOR_VERIFY_AFTER = 0
    social.inject("timeout")  # the request hangs and makes nothing
    delivery = deliver(social.make_target(), new_post())
    assert delivery.status == "uncertain" and social.sent() == []

    deliveries.attempt_delivery(delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == "sent" and len(social.sent()) == 1


def test_a_worker_lost_mid_send_is_settled_by_the_same_key(social, settings):
    settings.SYNDICATOR_VERIFY_AFTER = 0
    target = social.make_target()
    delivery = Delivery.objects.create(post=new_post(), target=target)
    assert deliveries.claim(delivery.pk)
    DeliveryAttempt.objects.create(delivery=delivery, number=1)
    # The lost worker's request went out and made the status.
    httpx.post(
        f"{social.emulator.base_url}/api/v1/statuses",
        json={"status": "Families of Camp Ashraf residents ask for news"},
        headers={"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": idempotency_key(delivery)},
    )
    Delivery.objects.filter(pk=delivery.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert deliveries.sweep()["uncertain"] == 1

    deliveries.attempt_delivery(delivery.pk)

    delivery.refresh_from_db()
    [status] = social.sent()
    assert delivery.status == "sent" and delivery.external_id == status["id"]
    assert [a.outcome for a in delivery.attempt_log.order_by("number")] == ["lost", "sent"]


def test_past_the_keys_hour_an_uncertain_delivery_waits_for_an_admin(social, settings):
    settings.SYNDICATOR_VERIFY_AFTER = 0
    social.emulator.lose_next_answers()
    delivery = deliver(social.make_target(), new_post())
    long_ago = timezone.now() - timedelta(seconds=IDEMPOTENCY_WINDOW + 60)
    DeliveryAttempt.objects.filter(delivery=delivery).update(started_at=long_ago)

    looked_up = deliveries.attempt_delivery(delivery.pk)

    delivery.refresh_from_db()
    assert looked_up.outcome == "unknown" and len(status_posts(social)) == 1, "not re-sent"
    assert delivery.status == "uncertain"
    assert "may have forgotten its Idempotency-Key" in delivery.last_error
    assert "An admin checks the account" in delivery.last_error
    assert deliveries.attempt_delivery(delivery.pk) is None, "looked at once, then left to an admin"


@pytest.mark.django_db(transaction=True)
def test_a_worker_re_sends_an_unanswered_status_once_under_its_key(social, settings, celery_worker, beat):
    settings.SYNDICATOR_VERIFY_AFTER = 0.5
    social.emulator.lose_next_answers()
    delivery = Delivery.objects.create(post=new_post(), target=social.make_target())
    deliveries.enqueue([(delivery.pk, "mastodon")])

    wait_for(lambda: Delivery.objects.get(pk=delivery.pk).status == "sent", timeout=30)

    delivery.refresh_from_db()
    [status] = social.sent()
    assert delivery.external_id == status["id"] and len(status_posts(social)) == 2
    assert [a.outcome for a in delivery.attempt_log.order_by("number")] == ["unknown", "sent"]


# --- the command line -----------------------------------------------------------------------------


def test_targets_add_mastodon_and_check_through_the_cli(social):
    call_command(
        "targets",
        "add",
        "mastodon",
        "--name",
        "social",
        "--set",
        f"base_url={social.emulator.base_url}",
        "visibility=unlisted",
        "--token-env",
        Harness.TOKEN_ENV,
        stdout=StringIO(),
    )
    target = Target.objects.get(name="social")
    assert target.secret_env == Harness.TOKEN_ENV and target.settings["visibility"] == "unlisted"

    out = StringIO()
    call_command("targets", "check", "social", stdout=out, no_color=True)

    assert f"@{USERNAME}@{DOMAIN}" in out.getvalue() and TOKEN not in out.getvalue()
    target.refresh_from_db()
    assert target.settings["max_characters"] == 500
    social.inject("bad_token")
    out = StringIO()
    with pytest.raises(CommandError, match="1 target failed the check"):
        call_command("targets", "check", "social", stdout=out, no_color=True)
    assert "TargetBroken" in out.getvalue() and "token rejected" in out.getvalue()


def test_targets_add_mastodon_needs_an_instance():
    with pytest.raises(CommandError, match="mastodon targets need --set base_url="):
        call_command(
            "targets",
            "add",
            "mastodon",
            "--name",
            "social",
            "--token-env",
            "SYNDICATOR_SECRET_T",
            stdout=StringIO(),
        )


def test_the_token_never_reaches_the_log_or_the_delivery_log(social, caplog):
    caplog.set_level(logging.DEBUG)
    target = social.make_target()
    for mode in social.expected:
        social.inject(mode)
        Target.objects.filter(pk=target.pk).update(paused_at=None)
        deliver(target, new_post())

    stored = [
        *Delivery.objects.values_list("last_error", flat=True),
        *DeliveryAttempt.objects.values_list("message", flat=True),
    ]
    assert DeliveryAttempt.objects.count() == len(social.expected)
    assert not [text for text in [caplog.text, *stored] if TOKEN in text]
