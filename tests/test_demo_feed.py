"""The bundled demo feeds, as the web app serves them: the English one grows a post after a while."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from syndicator import delivery as deliveries
from syndicator import feeds, watch
from syndicator.demo import seed_demo
from syndicator.models import Delivery, Feed, Post
from syndicator.targets.registry import formats
from syndicator.views import DEMO_LATER_EDITION_AFTER, DEMO_NEXT_EDITION_AFTER

pytestmark = pytest.mark.django_db(transaction=True)

NEW_POST_GUID = "https://www.nejatngo.org/?p=90006"  # only in nejat-en-recent-next.rss


def test_the_english_demo_feed_shows_a_new_post_once_it_has_been_watched_a_while(client):
    feed = Feed.objects.create(url="http://127.0.0.1:8000/demo/feeds/nejat-en-recent.rss")

    assert NEW_POST_GUID not in client.get("/demo/feeds/nejat-en-recent.rss").content.decode()
    feed.first_polled_at = timezone.now() - DEMO_NEXT_EDITION_AFTER + timedelta(seconds=30)
    feed.save()
    assert NEW_POST_GUID not in client.get("/demo/feeds/nejat-en-recent.rss").content.decode()
    feed.first_polled_at = timezone.now() - DEMO_NEXT_EDITION_AFTER - timedelta(seconds=1)
    feed.save()
    assert NEW_POST_GUID in client.get("/demo/feeds/nejat-en-recent.rss").content.decode()
    # Feeds without a next edition stay as they are.
    assert client.get("/demo/feeds/nejat-ar.rss").status_code == 200


def test_the_demo_delivers_the_new_post_live_after_its_backfill(live_server):
    seed_demo(live_server.url)
    english = Feed.objects.get(url__endswith="nejat-en-recent.rss")
    first = watch.poll_feed(english.pk)
    # Backfill 3, one outbox per format.
    assert first.status == "ok" and first.deliveries == 3 * len(formats())

    Feed.objects.filter(pk=english.pk).update(
        first_polled_at=timezone.now() - DEMO_NEXT_EDITION_AFTER - timedelta(seconds=1)
    )
    second = watch.poll_feed(english.pk)

    new = Post.objects.get(guid=NEW_POST_GUID)
    assert [p.pk for p in second.new_posts] == [new.pk]
    assert Delivery.objects.filter(post=new).count() == len(formats())


def test_the_demo_then_edits_a_headline_and_pulls_a_post_which_the_outboxes_follow(client, settings):
    """The "-later" edition: the new post's headline edited, an older post taken out (#12)."""

    settings.SYNDICATOR_FEED_ALLOW_PRIVATE = True
    seed_demo("http://testserver")
    feed = Feed.objects.get(url__endswith="nejat-en-recent.rss")
    body = client.get("/demo/feeds/nejat-en-recent.rss").content
    later = client.get("/demo/feeds/nejat-en-recent-later.rss").content
    store = watch._store_body  # the body as served, parsed and stored as a poll does

    with transaction.atomic():
        store(feed, feeds.parse(body, base_url=feed.url), timezone.now())
    Feed.objects.filter(pk=feed.pk).update(first_polled_at=timezone.now() - DEMO_LATER_EDITION_AFTER)
    assert client.get("/demo/feeds/nejat-en-recent.rss").content == later
    with transaction.atomic():  # the "-next" edition: the newsletter arrives
        store(
            feed,
            feeds.parse(client.get("/demo/feeds/nejat-en-recent-next.rss").content, base_url=feed.url),
            timezone.now(),
        )
    pulled = Post.objects.get(guid="https://www.nejatngo.org/?p=90004")
    edited = Post.objects.get(guid=NEW_POST_GUID)
    for d in Delivery.objects.filter(post__in=[pulled, edited]):
        deliveries.attempt_delivery(d.pk)
    with transaction.atomic():
        store(feed, feeds.parse(later, base_url=feed.url), timezone.now())
    pulled.refresh_from_db()
    assert pulled.unpublished_at is not None
    for d in Delivery.objects.filter(post=pulled):
        deliveries.attempt_delivery(d.pk)
    edited.refresh_from_db()
    assert edited.version == 2 and "letters" in edited.title
    for d in Delivery.objects.filter(post=edited, followup="edit"):
        deliveries.attempt_delivery(d.pk)
    assert "letters" in Delivery.objects.get(post=edited, target__name="demo-telegram").rendered_text
    statuses = dict(Delivery.objects.filter(post=pulled).values_list("target__name", "status"))
    assert statuses["demo-telegram"] == "deleted"  # Telegram deletes (within 48 h)
    assert statuses["demo-email"] == "sent"
    # An email cannot be taken back: said on the delivery, not flagged for an editor to act on.
    mail = Delivery.objects.get(post=pulled, target__name="demo-email")
    assert (
        mail.flagged_at is None and "it stays: email (dry run) posts cannot be deleted" in mail.followup_note
    )
