"""The Telegram target (syndicator/targets/telegram.py), over real HTTP to the Bot API emulator."""

from __future__ import annotations

import html
import itertools
import logging
import re
import socket
from collections.abc import Iterator

import pytest

from syndicator.delivery import attempt_delivery
from syndicator.errors import OutcomeUnknown, PermanentError, RateLimited, TargetBroken, TransientError
from syndicator.formatting import Message
from syndicator.models import Delivery, DeliveryAttempt, Post, Target
from syndicator.targets import get_adapter
from syndicator.targets.base import SendResult
from tests.emulators.telegram import (
    BOT_USERNAME,
    OLD_GROUP_ID,
    PRIVATE_CHANNEL_ID,
    PUBLIC_CHANNEL,
    PUBLIC_CHANNEL_ID,
    SUPERGROUP_ID,
    TOKEN,
    Harness,
    TelegramEmulator,
    telegram_parse,
)
from tests.helpers import demo_post

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

ENV = "TELEGRAM_BOT_TOKEN"
IMAGE = "https://www.nejatngo.org/wp-content/uploads/2025/01/camp.jpg"
_names = itertools.count(1)


@pytest.fixture(scope="module")
def emulator() -> Iterator[TelegramEmulator]:
    with TelegramEmulator() as running:
        yield running


@pytest.fixture
def api(emulator: TelegramEmulator, monkeypatch: pytest.MonkeyPatch) -> TelegramEmulator:
    """The emulator as configured (one server for the module: stopping one costs 0.5 s), and the
    bot token in the environment variable the targets name."""
    emulator.reset()
    monkeypatch.setenv(ENV, TOKEN)
    return emulator


def make_target(api: TelegramEmulator, **settings: object) -> Target:
    return Target.objects.create(
        kind="telegram",
        name=f"telegram-{next(_names)}",
        secret_env=ENV,
        settings={"chat_id": PUBLIC_CHANNEL, "base_url": api.base_url, "timeout": 2, **settings},
    )


stored_post = demo_post


def send(target: Target, post: Post | None = None, message: Message | None = None) -> SendResult:
    """Render (unless a message is given) and send one delivery straight through the adapter."""
    delivery = Delivery.objects.create(post=post or stored_post(), target=target)
    adapter = get_adapter(target)
    return adapter.send(message or adapter.render(delivery), delivery)


def visible(text_html: str) -> str:
    """What a reader sees of Telegram HTML: tags gone, entities decoded."""
    return html.unescape(re.sub(r"<[^>]*>", "", text_html)).strip()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- sending -----------------------------------------------------------------------------------


def test_a_feed_post_goes_out_as_the_rendered_html_message(api: TelegramEmulator) -> None:
    target, post = make_target(api), stored_post()
    message = get_adapter(target).render(Delivery(post=post, target=target))

    result = send(target, post)

    [sent] = api.messages()
    assert sent["method"] == "sendMessage" and sent["parse_mode"] == "HTML"
    assert sent["html"] == message.text
    assert sent["text"] == visible(message.text) and post.title in sent["text"]
    assert sent["link_preview_options"] == {"is_disabled": False, "url": message.link}
    assert sent["disable_notification"] is False
    assert result.external_id == f"{PUBLIC_CHANNEL_ID}:{sent['message_id']}"
    assert result.external_url == f"https://t.me/nejat_news/{sent['message_id']}"


@pytest.mark.parametrize("feed_file", ["nejat-ar.rss", "nejat-fa.rss"])
@pytest.mark.parametrize("index", [0, 1])
def test_arabic_and_farsi_posts_arrive_intact(api: TelegramEmulator, feed_file: str, index: int) -> None:
    target, post = make_target(api), stored_post(feed_file, index)
    message = get_adapter(target).render(Delivery(post=post, target=target))

    send(target, post)

    [sent] = api.messages()
    assert sent["html"] == message.text  # byte for byte, RLM marks included
    assert sent["text"] == visible(message.text)
    assert post.title in sent["text"]
    assert message.direction == "rtl"


def test_a_post_with_an_image_goes_out_as_a_photo_with_caption(api: TelegramEmulator) -> None:
    target, post = make_target(api), stored_post(image_url=IMAGE)

    result = send(target, post)

    [sent] = api.messages()
    assert sent["method"] == "sendPhoto" and sent["photo"] == IMAGE
    assert post.title in sent["caption"] and sent["text"] == sent["caption"]
    assert result.external_url == f"https://t.me/nejat_news/{sent['message_id']}"
    assert result.details["photo"] is True


@pytest.mark.parametrize(
    "refusal",
    ["Bad Request: wrong file identifier/HTTP URL specified", "Bad Request: failed to get HTTP URL content"],
)
def test_a_refused_photo_falls_back_to_the_text_in_the_same_attempt(
    api: TelegramEmulator, refusal: str
) -> None:
    api.refuse_photo(IMAGE, refusal)
    target, post = make_target(api), stored_post(image_url=IMAGE)

    result = send(target, post)

    [sent] = api.messages()
    assert sent["method"] == "sendMessage" and post.title in sent["text"]
    assert [r.match["method"] for r in api.requests if r.match] == ["sendPhoto", "sendMessage"]
    assert refusal in result.details["photo_fallback"]


def test_text_too_long_for_a_caption_is_sent_as_a_message(api: TelegramEmulator) -> None:
    long_title = " ".join(["Testimony"] * 120)  # ~1200 characters: over 1024, under 4096
    target, post = make_target(api), stored_post(image_url=IMAGE, title=long_title)

    send(target, post)

    [sent] = api.messages()
    assert sent["method"] == "sendMessage" and long_title in sent["text"]
    assert [r.match["method"] for r in api.requests if r.match] == ["sendMessage"]


def test_a_caption_telegram_finds_too_long_falls_back_to_the_text(api: TelegramEmulator) -> None:
    api.fail_with("Bad Request: message caption is too long")
    target, post = make_target(api), stored_post(image_url=IMAGE)

    send(target, post)

    [sent] = api.messages()
    assert sent["method"] == "sendMessage" and post.title in sent["text"]


def test_photo_setting_off_sends_text_only(api: TelegramEmulator) -> None:
    send(make_target(api, photo="false"), stored_post(image_url=IMAGE))

    assert [m["method"] for m in api.messages()] == ["sendMessage"]


def test_a_migrated_group_gets_its_new_id_stored_and_the_message_once(api: TelegramEmulator) -> None:
    target = make_target(api, chat_id=str(OLD_GROUP_ID))

    result = send(target)
    send(Target.objects.get(pk=target.pk))

    target.refresh_from_db()
    assert target.settings["chat_id"] == SUPERGROUP_ID
    assert [m["chat_id"] for m in api.messages()] == [SUPERGROUP_ID, SUPERGROUP_ID]
    assert [r.json["chat_id"] for r in api.requests] == [OLD_GROUP_ID, SUPERGROUP_ID, SUPERGROUP_ID]
    assert result.external_id == f"{SUPERGROUP_ID}:1"
    assert result.external_url == "https://t.me/c/5551234567/1"


def test_migrating_again_within_one_attempt_is_a_broken_target(api: TelegramEmulator) -> None:
    api.fail_with("Bad Request: group chat was upgraded", count=2, migrate_to_chat_id=SUPERGROUP_ID)

    with pytest.raises(TargetBroken, match="migrated twice"):
        send(make_target(api))
    assert api.messages() == []


@pytest.mark.parametrize(
    "chat_id, url",
    [
        (PUBLIC_CHANNEL, "https://t.me/nejat_news/1"),
        (str(PUBLIC_CHANNEL_ID), "https://t.me/nejat_news/1"),  # the answer's username decides
        (str(PRIVATE_CHANNEL_ID), "https://t.me/c/1234567890/1"),
        (PRIVATE_CHANNEL_ID, "https://t.me/c/1234567890/1"),  # as `targets add --set` stores it
    ],
)
def test_public_and_private_channel_urls(api: TelegramEmulator, chat_id: object, url: str) -> None:
    result = send(make_target(api, chat_id=chat_id))

    assert result.external_url == url
    assert result.external_id.endswith(":1")


@pytest.mark.parametrize("silent, preview", [("true", "false"), (True, False)])
def test_silent_and_link_preview_settings_arrive_as_sent(
    api: TelegramEmulator, silent: object, preview: object
) -> None:
    target, post = make_target(api, silent=silent, link_preview=preview), stored_post()
    message = get_adapter(target).render(Delivery(post=post, target=target))

    send(target, post)

    [sent] = api.messages()
    assert sent["disable_notification"] is True
    assert sent["link_preview_options"] == {"is_disabled": True, "url": message.link}


def test_a_full_attempt_ends_sent_with_id_and_url(api: TelegramEmulator) -> None:
    delivery = Delivery.objects.create(post=stored_post(), target=make_target(api))

    attempt = attempt_delivery(delivery.pk)

    delivery.refresh_from_db()
    [sent] = api.messages()
    assert attempt is not None and attempt.outcome == "sent"
    assert delivery.status == "sent"
    assert delivery.external_id == f"{PUBLIC_CHANNEL_ID}:{sent['message_id']}"
    assert delivery.external_url == f"https://t.me/nejat_news/{sent['message_id']}"
    assert visible(delivery.rendered_text) == sent["text"]


# --- errors: every row of TARGETS.md §1 "Errors: retry vs give up" -------------------------------


def html_message(text: str) -> Message:
    return Message("telegram", text, link="https://www.nejatngo.org/en/?p=90005", parse_mode="HTML")


def state(chat_id: int | str, **standing: object):
    """Setup: put the bot in this standing in a chat of the emulator, and post there."""

    def setup(api: TelegramEmulator, monkeypatch: pytest.MonkeyPatch) -> dict:
        chat = api.chat(chat_id)
        for key, value in standing.items():
            setattr(chat, key, value)
        return {"chat_id": chat_id}

    return setup


def script(description: str, code: int = 400, **parameters: object):
    """Setup: the next call gets this Bot API error."""
    return lambda api, monkeypatch: api.fail_with(description, code, **parameters) or {}


def page(status: int):
    """Setup: the next call gets an HTML error page from the API's front proxy."""
    return lambda api, monkeypatch: api.fail_next(status=status, body=b"<html>bad gateway</html>") or {}


def token(value: str):
    """Setup: the environment holds this token instead of the bot's."""
    return lambda api, monkeypatch: monkeypatch.setenv(ENV, value) or {}


def settings(**values: object):
    """Setup: the target has these settings."""
    return lambda api, monkeypatch: dict(values)


def hang(api: TelegramEmulator, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Setup: the next call gets no answer within the target's 1 s timeout."""
    api.hang_next(seconds=5)
    return {"timeout": 1}


def refused(api: TelegramEmulator, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Setup: the Bot API's port refuses connections."""
    return {"base_url": f"http://127.0.0.1:{closed_port()}"}


WRONG_TOKEN = "7012345678:AAwrongwrongwrong"
P, M = pytest.param, html_message
ERROR_TABLE = [
    # 429 with parameters.retry_after: wait that long, then retry.
    P(script("Too Many Requests: retry after 7", 429, retry_after=7), None, RateLimited, "7", id="429"),
    # 5xx, transport errors, timeouts: retry; unknown where the request may have been processed.
    P(script("Internal Server Error: restart", 500), None, TransientError, "(500)", id="500-json"),
    P(page(502), None, TransientError, "(502)", id="502-front"),
    P(page(503), None, TransientError, "(503)", id="503-front"),
    P(page(504), None, OutcomeUnknown, "may have been posted", id="504-front"),
    P(refused, None, TransientError, "could not reach", id="refused"),
    P(hang, None, OutcomeUnknown, "no answer", id="read-timeout"),
    # Configuration: chat not found, bot kicked / not a member, no admin rights / not enough rights.
    P(settings(chat_id="@nobody_here"), None, TargetBroken, "check chat_id '@nobody_here'", id="no-chat"),
    P(state(PUBLIC_CHANNEL, bot_status="kicked"), None, TargetBroken, "bot was kicked", id="403-kicked"),
    P(state(PUBLIC_CHANNEL, bot_status="left"), None, TargetBroken, "not a member", id="403-not-member"),
    P(state(PUBLIC_CHANNEL, bot_status="member"), None, TargetBroken, "administrator rights", id="no-admin"),
    P(state(SUPERGROUP_ID, bot_status="restricted"), None, TargetBroken, "not enough rights", id="no-rights"),
    # Content: can't parse entities, message/caption too long, text empty.
    P(None, M("Line one<br>two"), PermanentError, 'start tag "br" at byte offset 8', id="cant-parse"),
    P(None, M("word " * 1000), PermanentError, "message is too long", id="too-long"),
    P(script("Bad Request: message caption is too long"), None, PermanentError, "caption", id="caption-long"),
    P(None, M("<b> </b>"), PermanentError, "message text is empty", id="text-empty"),
    # Bad token or method.
    P(token(WRONG_TOKEN), None, TargetBroken, "Unauthorized (401)", id="401-bad-token"),
    P(token("not-a-token"), None, TargetBroken, "Not Found (404)", id="404-not-a-token"),
    # The code decides where it can; the description where the code is 400 or unfamiliar.
    P(script("Forbidden: something new", 403), None, TargetBroken, "something new", id="403-unlisted"),
    P(script("Bad Request: chat not found", 418), None, TargetBroken, "check chat_id", id="odd-code"),
    P(script("Bad Request: something new"), None, PermanentError, "refused this message", id="400-unlisted"),
    P(script("Something broke", 599), None, TransientError, "(599)", id="5xx-unlisted"),
    # Answers that are not the Bot API's: a wrong base_url, or a success we cannot read.
    P(page(200), None, TargetBroken, "without JSON: check base_url", id="200-not-json"),
    P(page(301), None, TargetBroken, "check base_url", id="301-redirect"),
    P(
        lambda api, mp: api.fail_next(status=200, json={"ok": True}) or {},
        None,
        OutcomeUnknown,
        "readable",
        id="200-odd",
    ),
]


@pytest.mark.parametrize("setup, message, error, words", ERROR_TABLE)
def test_error_classification(
    api: TelegramEmulator, monkeypatch: pytest.MonkeyPatch, setup, message, error, words: str
) -> None:
    settings = setup(api, monkeypatch) if setup else {}
    target = make_target(api, **settings)

    with pytest.raises(error) as raised:
        send(target, message=message)

    assert type(raised.value) is error  # PermanentError must not be a TargetBroken, and so on
    assert words in str(raised.value)
    assert TOKEN not in str(raised.value) and WRONG_TOKEN not in str(raised.value)
    assert api.messages() == []
    if error is RateLimited:
        assert raised.value.retry_after == 7


@pytest.mark.parametrize(
    "break_it",
    [
        pytest.param(lambda api, mp: mp.setenv(ENV, WRONG_TOKEN), id="bad-token"),
        pytest.param(
            lambda api, mp: api.fail_with(f"Bad Request: no /bot{TOKEN}/sendMessage, token {TOKEN}"),
            id="echoed",
        ),
        pytest.param(
            lambda api, mp: api.fail_with(f"Forbidden: {TOKEN.split(':')[1]} kicked", 403), id="echoed-secret"
        ),
        pytest.param(lambda api, mp: api.fail_next(status=502, body=TOKEN.encode()), id="echoed-page"),
        pytest.param(lambda api, mp: api.hang_next(seconds=5), id="timeout"),
    ],
)
def test_the_token_never_reaches_the_delivery_log_or_the_logs(
    api: TelegramEmulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, break_it
) -> None:
    caplog.set_level(logging.DEBUG)
    target = make_target(api, timeout=1)
    delivery = Delivery.objects.create(post=stored_post(), target=target)
    break_it(api, monkeypatch)

    attempt_delivery(delivery.pk)

    delivery.refresh_from_db()
    target.refresh_from_db()
    [attempt] = DeliveryAttempt.objects.filter(delivery=delivery)
    assert attempt.outcome != "sent" and attempt.message
    for secret in (TOKEN, TOKEN.split(":")[1], WRONG_TOKEN):
        for text in (attempt.message, delivery.last_error, target.paused_reason, caplog.text):
            assert secret not in text


def test_a_kicked_bot_pauses_the_target_and_the_delivery_waits(api: TelegramEmulator) -> None:
    api.chat(PUBLIC_CHANNEL).bot_status = "kicked"
    delivery = Delivery.objects.create(post=stored_post(), target=make_target(api))

    attempt_delivery(delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == "queued"
    assert delivery.target.paused_at is not None and "bot was kicked" in delivery.target.paused_reason


@pytest.mark.parametrize(
    "chat_id, words",
    [
        ("nejat_news", "did you mean '@nejat_news'"),
        ("", "neither @channelusername"),
        ("https://t.me/x", "neither"),
    ],
)
def test_a_malformed_chat_id_is_a_broken_target_before_anything_is_sent(
    api: TelegramEmulator, chat_id: str, words: str
) -> None:
    with pytest.raises(TargetBroken, match=re.escape(words)):
        send(make_target(api, chat_id=chat_id))
    assert api.requests == []


def test_a_missing_token_is_a_broken_target(api: TelegramEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV)

    with pytest.raises(TargetBroken, match=f"{ENV} is not set"):
        send(make_target(api))


# --- check() -----------------------------------------------------------------------------------


def test_check_names_the_bot_and_the_chat(api: TelegramEmulator) -> None:
    verdict = get_adapter(make_target(api)).check()

    assert verdict == f'ok: bot @{BOT_USERNAME} can post to {PUBLIC_CHANNEL} (channel "Nejat News")'


@pytest.mark.parametrize(
    "setup, words",
    [
        P(token(WRONG_TOKEN), "Unauthorized", id="bad-token"),
        P(settings(chat_id="@nobody_here"), "chat not found", id="unknown-chat"),
        P(state(PUBLIC_CHANNEL, bot_status="member"), "make it an administrator", id="not-admin"),
        P(state(PUBLIC_CHANNEL, can_post=False), "right to post", id="no-post-right"),
        P(state(str(PRIVATE_CHANNEL_ID), bot_status="left"), "chat not found", id="private-not-member"),
    ],
)
def test_check_refuses_what_cannot_post(
    api: TelegramEmulator, monkeypatch: pytest.MonkeyPatch, setup, words: str
) -> None:
    target = make_target(api, **setup(api, monkeypatch))

    with pytest.raises(TargetBroken, match=words) as raised:
        get_adapter(target).check()
    assert TOKEN not in str(raised.value)


# --- the conformance harness -------------------------------------------------------------------


@pytest.mark.parametrize("mode", sorted(Harness.expected))
def test_harness_modes_raise_what_they_promise(mode: str) -> None:
    with Harness(hang_seconds=3) as harness:
        target = harness.make_target()
        harness.inject(mode)

        with pytest.raises(Harness.expected[mode]) as raised:
            send(target)

    assert type(raised.value) is Harness.expected[mode]
    if mode == "rate_limited":
        assert raised.value.retry_after and raised.value.retry_after > 0


def test_harness_migrated_mode_delivers_to_the_supergroup() -> None:
    with Harness() as harness:
        target = harness.make_target()
        harness.inject("migrated")

        send(target)

        target.refresh_from_db()
        assert target.settings["chat_id"] == SUPERGROUP_ID
        assert [m["chat_id"] for m in harness.sent()] == [SUPERGROUP_ID]
        assert harness.sent()[0]["text"]


# --- the emulator's HTML rules (TDLib's parser) ------------------------------------------------


@pytest.mark.parametrize(
    "text, plain, problem",
    [
        ('<b>A</b> &amp; <a href="https://x.org/?a=1&amp;b=2">B</a>', "A & B", None),
        ("&#x27;quoted&#39; &nbsp; &copy", "'quoted' &nbsp; &copy", None),  # unknown entities stay as written
        ('<span class="tg-spoiler">s</span><tg-spoiler>t</tg-spoiler>', "st", None),
        ("<blockquote expandable>q</blockquote>", "q", None),
        ("a<br>b", "", 'Unsupported start tag "br" at byte offset 1'),
        ("سلام<p>", "", 'Unsupported start tag "p" at byte offset 8'),  # offsets count UTF-8 bytes
        ("1 < 2", "", 'Unsupported start tag "" at byte offset 2'),
        ("<b>x</i>", "", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("<b>x", "", "Can't find end tag corresponding to start tag b"),
        ("<span>x</span>", "", 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
        ("&#xD83D;", "", "Text contains invalid Unicode characters after decoding HTML entities, "
         "check for unmatched surrogate code units"),
    ],
)  # fmt: skip
def test_telegram_parse_follows_tdlib(text: str, plain: str, problem: str | None) -> None:
    assert telegram_parse(text) == (plain, problem)
