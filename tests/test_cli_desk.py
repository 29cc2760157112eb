"""The CLI as a newcomer meets it in the demo: `poll` on the demo feeds, `repost --text` checks (issue 14)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from syndicator.demo import demo_feed_url
from syndicator.models import Delivery, Feed, Post, Target

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_poll_reads_the_demo_feeds_the_web_app_serves_but_no_other_private_address(
    live_server, feed_server, settings
):
    settings.SYNDICATOR_FEED_ALLOW_PRIVATE = []  # as on a fresh install: nothing private allowed
    demo = Feed.objects.create(url=demo_feed_url(live_server.url, "nejat-ar.rss"), language="ar")
    feed_server.set("/feed.xml", b"<rss version='2.0'><channel><title>x</title></channel></rss>")
    other = Feed.objects.create(url=feed_server.url("/feed.xml"))

    out = run("poll", str(demo.pk))
    demo.refresh_from_db()
    assert demo.last_status == "ok" and demo.consecutive_failures == 0, out
    assert Post.objects.filter(feed=demo).exists()

    with pytest.raises(CommandError, match="1 of 1 polls failed"):
        run("poll", str(other.pk))
    other.refresh_from_db()
    assert "private address" in other.last_error


def test_repost_refuses_a_text_too_long_for_x_naming_the_network():
    feed = Feed.objects.create(url="https://news.example/feed", language="en")
    post = Post.objects.create(feed=feed, guid="1", url="https://news.example/1", title="A post")
    Target.objects.create(name="x", kind="outbox", settings={"format": "twitter"})
    Target.objects.create(name="tg", kind="outbox", settings={"format": "telegram"})

    with pytest.raises(CommandError, match=r"x: the text is \d+ weighted characters.*twitter allows 280"):
        run("repost", str(post.pk), "--to", "x,tg", "--text", "word " * 80)
    assert not Delivery.objects.exists()

    run("repost", str(post.pk), "--to", "tg", "--text", "word " * 80)  # Telegram takes 4096
    assert Delivery.objects.get().text_override == "word " * 80
