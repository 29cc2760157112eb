"""The bundled demo feeds, as the web app serves them: the English one grows a post after a while."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from syndicator import watch
from syndicator.demo import seed_demo
from syndicator.models import Delivery, Feed, Post
from syndicator.targets.registry import formats
from syndicator.views import DEMO_NEXT_EDITION_AFTER

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
