"""Following an article (#12), the detection side: edits, unpublishing, one article across feeds.

Feeds are served over real HTTP (tests/feedserver.py) and polled by syndicator.watch on the real
database; what happens on the networks is behind syndicator.followup, whose two calls are
recorded here (the boundary: the acting side has its own tests).
"""

from __future__ import annotations

import pytest

from syndicator import followup, watch
from syndicator.models import Delivery, Feed, Post, Target
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def item(n: int, *, title: str = "", body: str = "", link: str = "", guid: str = "", extra: str = "") -> str:
    """One RSS item, published on day n of January 2026 (later n: newer)."""
    return (
        f"<item><title>{title or f'Story {n}'}</title>"
        f"<link>{link or f'https://site.example/story-{n}/'}</link>"
        f'<guid isPermaLink="false">{guid or f"story-{n}"}</guid>'
        f"<pubDate>Thu, {n:02d} Jan 2026 10:00:00 GMT</pubDate>"
        f"<description>{body or f'Body {n}'}</description>{extra}</item>"
    )


def rss(*items: str) -> bytes:
    # Newest first, as feeds are.
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>T</title>'
        "<link>https://site.example/</link>" + "".join(items) + "</channel></rss>"
    ).encode()


def atom(*entries: tuple[int, str, str]) -> bytes:
    """(n, title, updated ISO time) per entry."""
    body = "".join(
        f"<entry><id>urn:story:{n}</id><title>{title}</title>"
        f'<link href="https://site.example/a-{n}"/><updated>{updated}</updated>'
        f"<summary>S{n}</summary></entry>"
        for n, title, updated in entries
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>T</title><id>urn:feed</id><updated>2026-01-09T00:00:00Z</updated>{body}</feed>"
    ).encode()


@pytest.fixture
def calls(monkeypatch) -> dict[str, list]:
    """What was reported to followup, by function (the detection/acting boundary)."""
    seen: dict[str, list] = {"changed": [], "unpublished": []}
    monkeypatch.setattr(
        followup,
        "post_changed",
        lambda post: seen["changed"].append((post.pk, post.version, post.title)) or 0,
    )
    monkeypatch.setattr(
        followup,
        "post_unpublished",
        lambda post, *, reason, actor=None: seen["unpublished"].append((post.pk, reason, actor)) or 0,
    )
    return seen


def poll(server, path: str, body: bytes, feed: Feed | None = None) -> Feed:
    server.set(path, body)
    feed = feed or Feed.objects.create(url=server.url(path), poll_interval=3600)
    report = watch.poll_feed(feed.pk)
    assert report.status in ("ok", "not_modified"), report.error
    return feed


def test_an_edited_item_updates_its_post_once_and_reports_it_once(feed_server, calls):
    feed = poll(feed_server, "/feed", rss(item(2), item(1)))
    post = Post.objects.get(guid="story-2")
    assert post.version == 1
    published = post.published_at

    poll(
        feed_server, "/feed", rss(item(2, title="Story 2, typo fixed", body="<b>new</b> body"), item(1)), feed
    )
    post.refresh_from_db()
    assert (post.title, post.version) == ("Story 2, typo fixed", 2)
    assert "new" in post.summary
    assert post.published_at == published, "an edit keeps the published time"
    assert calls["changed"] == [(post.pk, 2, "Story 2, typo fixed")]
    assert Post.objects.get(guid="story-1").version == 1

    # The same item in a body that changed elsewhere (a new item): no second report, no write.
    poll(
        feed_server,
        "/feed",
        rss(item(3), item(2, title="Story 2, typo fixed", body="<b>new</b> body"), item(1)),
        feed,
    )
    post.refresh_from_db()
    assert post.version == 2 and len(calls["changed"]) == 1


def test_the_same_body_again_is_not_parsed_and_changes_nothing(
    feed_server, calls, django_assert_max_num_queries
):
    feed = poll(feed_server, "/feed", rss(item(2), item(1)))
    before = list(Post.objects.values_list("pk", "version", "source_hash"))
    poll(feed_server, "/feed", rss(item(2), item(1)), feed)
    assert list(Post.objects.values_list("pk", "version", "source_hash")) == before
    assert calls == {"changed": [], "unpublished": []}


def test_unchanged_items_in_a_changed_body_cost_no_writes(feed_server, calls):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    feed = poll(feed_server, "/feed", rss(item(2), item(1)))
    feed_server.set("/feed", rss(item(3), item(2), item(1)))
    with CaptureQueriesContext(connection) as queries:
        watch.poll_feed(feed.pk)
    post_writes = [
        q["sql"] for q in queries if q["sql"].startswith("UPDATE") and "syndicator_post" in q["sql"]
    ]
    assert post_writes == [], post_writes


def test_five_quick_edits_end_with_the_last_version(feed_server, calls):
    feed = poll(feed_server, "/feed", rss(item(2), item(1)))
    for n in range(1, 6):
        poll(feed_server, "/feed", rss(item(2, title=f"Take {n}"), item(1)), feed)
    post = Post.objects.get(guid="story-2")
    assert (post.title, post.version) == ("Take 5", 6)
    assert [title for _, _, title in calls["changed"]] == [f"Take {n}" for n in range(1, 6)]


def test_a_link_image_or_category_change_is_an_edit(feed_server, calls):
    feed = poll(feed_server, "/feed", rss(item(1, extra="<category>News</category>")))
    poll(feed_server, "/feed", rss(item(1, extra="<category>Sport</category>")), feed)
    assert Post.objects.get().categories == ["Sport"]
    poll(
        feed_server,
        "/feed",
        rss(item(1, link="https://site.example/moved/", extra="<category>Sport</category>")),
        feed,
    )
    post = Post.objects.get()
    assert post.url == "https://site.example/moved/" and post.canonical_url == "https://site.example/moved"
    assert post.version == 3 and len(calls["changed"]) == 2


def test_atom_updated_must_move_forward_for_a_change_to_count(feed_server, calls):
    feed = poll(feed_server, "/atom", atom((1, "First", "2026-01-05T10:00:00Z")))
    post = Post.objects.get()
    assert post.source_updated_at.isoformat() == "2026-01-05T10:00:00+00:00"
    # An older copy (a lagging cache or mirror) with another title: not an edit.
    poll(feed_server, "/atom", atom((1, "Stale", "2026-01-04T10:00:00Z")), feed)
    post.refresh_from_db()
    assert (post.title, post.version) == ("First", 1)
    poll(feed_server, "/atom", atom((1, "Edited", "2026-01-06T10:00:00Z")), feed)
    post.refresh_from_db()
    assert (post.title, post.version) == ("Edited", 2)
    assert post.source_updated_at.isoformat() == "2026-01-06T10:00:00+00:00"
    assert post.published_at.isoformat() == "2026-01-05T10:00:00+00:00", "published stays put"
    assert len(calls["changed"]) == 1


def test_an_item_removed_while_older_items_remain_is_unpublished(feed_server, calls):
    feed = poll(feed_server, "/feed", rss(item(3), item(2), item(1)))
    poll(feed_server, "/feed", rss(item(3), item(1)), feed)
    gone = Post.objects.get(guid="story-2")
    assert gone.unpublished_at is not None
    assert gone.unpublished_reason == watch.VANISHED
    assert calls["unpublished"] == [(gone.pk, watch.VANISHED, None)]
    assert not Post.objects.filter(unpublished_at__isnull=False).exclude(pk=gone.pk).exists()

    # It comes back: recorded as in the feed again, still unpublished, not new, no deliveries.
    Target.objects.create(name="out", kind="outbox")
    poll(feed_server, "/feed", rss(item(4), item(3), item(2), item(1)), feed)
    gone.refresh_from_db()
    assert gone.in_feed and gone.unpublished_at is not None
    assert list(Delivery.objects.values_list("post__guid", flat=True)) == ["story-4"]
    assert len(calls["unpublished"]) == 1


def test_items_that_scroll_off_the_end_are_not_unpublished(feed_server, calls):
    feed = poll(feed_server, "/feed", rss(item(3), item(2), item(1)))
    poll(feed_server, "/feed", rss(item(5), item(4), item(3)), feed)
    assert not Post.objects.filter(unpublished_at__isnull=False).exists()
    assert set(Post.objects.filter(in_feed=False).values_list("guid", flat=True)) == {"story-1", "story-2"}
    # An empty body (a broken export) says nothing about any item.
    poll(feed_server, "/feed", rss(), feed)
    assert calls["unpublished"] == []


def test_a_vanished_item_newer_than_what_remains_was_taken_out(feed_server, calls):
    # The newest item pulled: items published before it are still there.
    feed = poll(feed_server, "/feed", rss(item(3), item(2), item(1)))
    poll(feed_server, "/feed", rss(item(2), item(1)), feed)
    assert list(Post.objects.filter(unpublished_at__isnull=False).values_list("guid", flat=True)) == [
        "story-3"
    ]


def test_one_article_in_two_feeds_is_one_post_with_one_delivery_per_target(feed_server, calls):
    main_feed = poll(feed_server, "/feed", rss(item(1)))
    category = poll(feed_server, "/category/news/feed", rss(item(1)))
    everything = Target.objects.create(name="all", kind="outbox")
    news_only = Target.objects.create(name="news", kind="outbox")
    news_only.feeds.add(category)
    main_only = Target.objects.create(name="main", kind="outbox")
    main_only.feeds.add(main_feed)

    # A new article, with tracking parameters and another case in the category feed's link.
    poll(feed_server, "/feed", rss(item(2), item(1)), main_feed)
    assert set(Delivery.objects.values_list("target__name", flat=True)) == {"all", "main"}
    poll(
        feed_server,
        "/category/news/feed",
        rss(
            item(2, link="https://SITE.example:443/story-2?utm_source=rss&fbclid=x#more", guid="cat-2"),
            item(1),
        ),
        category,
    )
    article = Post.objects.get(feed=main_feed, guid="story-2")
    sighting = Post.objects.get(feed=category, guid="cat-2")
    assert sighting.same_as == article
    deliveries = list(Delivery.objects.values_list("post_id", "target__name").order_by("target__name"))
    assert deliveries == [(article.pk, "all"), (article.pk, "main"), (article.pk, "news")]
    assert everything.deliveries.count() == 1

    # Seen again in both: nothing more.
    poll(feed_server, "/feed", rss(item(3), item(2), item(1)), main_feed)
    assert Delivery.objects.filter(post=article).count() == 3


def test_an_article_first_seen_in_the_category_feed_is_not_posted_again_from_the_main_feed(
    feed_server, calls
):
    main_feed = poll(feed_server, "/feed", rss(item(1)))
    category = poll(feed_server, "/cat/feed", rss(item(1)))
    Target.objects.create(name="all", kind="outbox")
    poll(feed_server, "/cat/feed", rss(item(2), item(1)), category)
    poll(feed_server, "/feed", rss(item(2), item(1)), main_feed)
    assert Delivery.objects.count() == 1
    assert Post.objects.filter(same_as__isnull=True, guid="story-2").count() == 1


def test_wordpress_guid_and_permalink_of_one_post_meet(feed_server, calls):
    # WordPress: the guid is ?p=ID, the link the permalink; another feed may link ?p=ID.
    main_feed = poll(feed_server, "/feed", rss(item(1)))
    other = poll(feed_server, "/other/feed", rss(item(1)))
    Target.objects.create(name="all", kind="outbox")
    poll(
        feed_server,
        "/feed",
        rss(
            item(7, link="https://site.example/2026/01/07/pulled/", guid="https://site.example/?p=123"),
            item(1),
        ),
        main_feed,
    )
    poll(
        feed_server,
        "/other/feed",
        rss(item(7, link="https://site.example/?p=123", guid="wp-123"), item(1)),
        other,
    )
    article = Post.objects.get(feed=main_feed, guid="https://site.example/?p=123")
    assert article.guid_key == "https://site.example?p=123"
    assert Post.objects.get(feed=other, guid="wp-123").same_as == article
    assert Delivery.objects.count() == 1


def test_an_edit_seen_in_the_category_feed_edits_the_article_once(feed_server, calls):
    main_feed = poll(feed_server, "/feed", rss(item(1)))
    category = poll(feed_server, "/cat/feed", rss(item(1)))
    poll(feed_server, "/feed", rss(item(2), item(1)), main_feed)
    poll(feed_server, "/cat/feed", rss(item(2), item(1)), category)
    poll(feed_server, "/cat/feed", rss(item(2, title="Fixed"), item(1)), category)
    poll(feed_server, "/feed", rss(item(2, title="Fixed"), item(1)), main_feed)
    article = Post.objects.get(feed=main_feed, guid="story-2")
    assert (article.title, article.version) == ("Fixed", 2)
    assert calls["changed"] == [(article.pk, 2, "Fixed")]


@pytest.mark.parametrize(("status", "unpublished"), [(404, True), (410, True), (200, False), (500, False)])
def test_the_page_of_an_item_that_scrolled_off_is_checked_once(
    feed_server, calls, monkeypatch, status, unpublished
):
    queued: list[list[int]] = []
    monkeypatch.setattr(watch, "queue_page_checks", queued.append)
    page = feed_server.url("/story-1/")
    feed = poll(feed_server, "/feed", rss(item(2), item(1, link=page)))
    poll(feed_server, "/feed", rss(item(3), item(2)), feed)
    post = Post.objects.get(guid="story-1")
    assert queued == [[post.pk]], "queued once the poll committed"

    feed_server.set(
        "/story-1/", b"<html>gone</html>" if status != 200 else b"<html>here</html>", status=status
    )
    assert watch.check_pages(queued[0]) == ([post.pk] if unpublished else [])
    post.refresh_from_db()
    if unpublished:
        assert post.unpublished_reason == f"its page answered HTTP {status} after it left its feed"
        assert calls["unpublished"] == [(post.pk, post.unpublished_reason, None)]
    else:
        assert post.unpublished_at is None and calls["unpublished"] == []
    # Left for good: later bodies do not queue it again.
    poll(feed_server, "/feed", rss(item(4), item(3), item(2)), feed)
    assert [ids for ids in queued if post.pk in ids] == [[post.pk]]


def test_a_page_check_keeps_the_address_guard(feed_server, calls, settings):
    feed = poll(feed_server, "/feed", rss(item(2), item(1, link=feed_server.url("/story-1/"))))
    feed_server.set("/story-1/", b"gone", status=404)
    settings.SYNDICATOR_FEED_ALLOW_PRIVATE = []  # loopback refused again, as in production
    post = Post.objects.get(guid="story-1")
    assert watch.check_pages([post.pk]) == []
    assert feed_server.hits("/story-1/") == 0
    assert feed.pk


def test_page_checks_run_on_a_worker(feed_server, calls, celery_worker):
    page = feed_server.url("/story-1/")
    feed = poll(feed_server, "/feed", rss(item(2), item(1, link=page)))
    feed_server.set("/story-1/", b"gone", status=410)
    poll(feed_server, "/feed", rss(item(3), item(2)), feed)
    wait_for(lambda: Post.objects.filter(guid="story-1", unpublished_at__isnull=False).exists())


def test_a_post_stored_before_edits_were_followed_takes_its_next_body_as_its_baseline(feed_server, calls):
    feed = poll(feed_server, "/feed", rss(item(2), item(1)))
    # As migration 0013 leaves it, sanitized by an older sanitizer that kept something else.
    Post.objects.filter(guid="story-1").update(source_hash="", summary="Body 1 <i>as cleaned then</i>")
    poll(feed_server, "/feed", rss(item(3), item(2), item(1)), feed)
    post = Post.objects.get(guid="story-1")
    assert post.version == 1 and post.source_hash and calls["changed"] == []
    # From then on a real edit counts.
    poll(feed_server, "/feed", rss(item(3), item(2), item(1, title="Story 1 fixed")), feed)
    post.refresh_from_db()
    assert (post.title, post.version) == ("Story 1 fixed", 2)


def test_two_feeds_rendering_one_article_differently_is_no_edit(feed_server, calls):
    # The category feed carries an excerpt and a tracking link; the main feed the full text.
    main_feed = poll(feed_server, "/feed", rss(item(1)))
    category = poll(feed_server, "/cat/feed", rss(item(1)))
    excerpt = item(2, body="Excerpt", link="https://site.example/story-2/?utm_source=cat", guid="cat-2")
    poll(feed_server, "/feed", rss(item(2, body="Full text"), item(1)), main_feed)
    poll(feed_server, "/cat/feed", rss(excerpt, item(1)), category)
    # Both bodies change elsewhere, many times: the article is never taken for edited.
    for n in range(3, 6):
        poll(feed_server, "/cat/feed", rss(item(n), excerpt, item(1)), category)
        poll(feed_server, "/feed", rss(item(n), item(2, body="Full text"), item(1)), main_feed)
    article = Post.objects.get(feed=main_feed, guid="story-2")
    assert (article.summary, article.url, article.version) == (
        "Full text",
        "https://site.example/story-2/",
        1,
    )
    assert calls["changed"] == []
    # A real edit in the category feed only (its title) edits the article, and only its title.
    poll(
        feed_server,
        "/cat/feed",
        rss(item(2, title="New title", body="Excerpt", guid="cat-2"), item(1)),
        category,
    )
    article.refresh_from_db()
    assert (article.title, article.summary, article.version) == ("New title", "Full text", 2)
    assert len(calls["changed"]) == 1
