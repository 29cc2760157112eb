"""Hostile HTML end to end: from a feed on 127.0.0.1, through the poll, the real Telegram and email
adapters, to the Telegram emulator and the SMTP server; nothing that runs arrives."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from syndicator.delivery import attempt_delivery
from syndicator.models import Delivery, Feed, Post
from syndicator.watch import poll_feed
from tests.bad_input.bodies import FORBIDDEN, HOSTILE_HTML, SITE, cdata, item, rss
from tests.emulators import email as smtp
from tests.emulators import telegram
from tests.emulators.telegram import telegram_parse
from tests.feedserver import FeedServer

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

TITLE = "Tom & Jerry <script>alert(0)</script> 3 < 5"
CONTENT = "<h2 onmouseover=alert(8)>Inside</h2>" + HOSTILE_HTML
HOSTILE_FEED = rss(
    item(
        1,
        title=cdata(TITLE),
        description=cdata(HOSTILE_HTML),
        raw=f"<content:encoded>{cdata(CONTENT)}</content:encoded>",
    )
)


@pytest.fixture
def networks() -> Iterator[tuple[telegram.Harness, smtp.Harness]]:
    with telegram.Harness() as tg, smtp.Harness() as mail:
        tg.make_target("telegram-hostile")
        mail.make_target("email-hostile")
        yield tg, mail


def deliver_all() -> None:
    for delivery_id in Delivery.objects.values_list("pk", flat=True):
        attempt_delivery(delivery_id)
    failed = list(Delivery.objects.exclude(status=Delivery.Status.SENT).values_list("status", "last_error"))
    assert not failed


def assert_clean(text: str) -> None:
    found = [bad for bad in (*FORBIDDEN, "onmouseover") if bad in text.lower()]
    assert not found, f"{found} in {text[:400]!r}"


def test_hostile_html_from_a_feed_reaches_telegram_and_email_sanitized(
    feed_server: FeedServer, networks: tuple[telegram.Harness, smtp.Harness]
):
    tg, mail = networks
    feed_server.set("/feed", HOSTILE_FEED)
    feed = Feed.objects.create(url=feed_server.url("/feed"), first_polled_at=datetime(2020, 1, 1, tzinfo=UTC))

    assert poll_feed(feed.pk).deliveries == 2
    deliver_all()

    (message,) = tg.sent()
    assert telegram_parse(message["html"])[1] in (None, ""), "Telegram accepts the markup"
    assert_clean(message["html"])
    assert message["text"].startswith("Tom & Jerry 3 < 5"), "a script's text goes with its tags"
    (letter,) = mail.sent()
    assert_clean(letter["html"])
    assert_clean(letter["text"])
    assert_clean(letter["subject"])
    assert f'<a href="{SITE}more" rel="noopener">more</a>' in letter["html"], "safe markup is kept"
    assert "<h2>Inside</h2>" in letter["html"]


def test_a_post_edited_after_the_poll_is_sanitized_again(networks: tuple[telegram.Harness, smtp.Harness]):
    # Editors can change a post in the admin; what they paste is not trusted either.
    tg, mail = networks
    feed = Feed.objects.create(url=f"{SITE}feed/")
    post = Post.objects.create(
        feed=feed,
        guid="edited",
        url="javascript:alert(1)//https://news.example/",
        title="Edited",
        summary=HOSTILE_HTML,
        content=HOSTILE_HTML,
    )
    Delivery.objects.bulk_create(Delivery(post=post, target=target) for target in tg_mail_targets())

    deliver_all()

    (message,) = tg.sent()
    assert_clean(message["html"])
    (letter,) = mail.sent()
    assert_clean(letter["html"])
    assert_clean(letter["text"])
    links = re.findall(r'href="([^"]*)"', letter["html"])
    assert all(html.unescape(link).startswith(("https://", "http://")) for link in links), links


def tg_mail_targets() -> list:
    from syndicator.models import Target

    return list(Target.objects.filter(name__in=["telegram-hostile", "email-hostile"]))
