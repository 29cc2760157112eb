"""WebSub, the subscriber's side, through real HTTP: a hub emulator on 127.0.0.1 calls our
callbacks on the live test server; polls and deliveries run on a real Celery worker."""

from __future__ import annotations

from datetime import timedelta
from email.utils import format_datetime

import httpx
import pytest
from django.utils import timezone

from syndicator import watch, websub
from syndicator.models import Delivery, Feed, Post, PushSubscription, Target
from tasks.watch import poll_feed
from tests.conftest import wait_for
from tests.emulators.websub_hub import WebSubHub

pytestmark = pytest.mark.django_db(transaction=True)


def rss(*numbers: int, hub: str = "", topic: str = "") -> bytes:
    """An RSS body with items 1…n (item n the newest), optionally naming a hub and itself."""
    start = timezone.now() - timedelta(hours=10)
    links = ""
    if hub:
        links += f'<atom:link rel="hub" href="{hub}"/>'
    if topic:
        links += f'<atom:link rel="self" href="{topic}"/>'
    items = "".join(
        f"<item><title>Story {n}</title><link>https://news.example/{n}</link><guid>story-{n}</guid>"
        f"<pubDate>{format_datetime(start + timedelta(minutes=n))}</pubDate>"
        f"<description>Text {n}</description></item>"
        for n in sorted(numbers, reverse=True)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom">'
        f"<channel><title>News</title><link>https://news.example/</link>{links}{items}</channel></rss>"
    ).encode()


@pytest.fixture
def hub():
    with WebSubHub() as emulator:
        yield emulator


@pytest.fixture
def push(settings, live_server):
    """Push on: our callbacks are reachable at the live server's URL."""
    settings.SYNDICATOR_PUSH_ENABLED = True
    settings.SYNDICATOR_PUBLIC_URL = live_server.url
    return settings


@pytest.fixture
def served(feed_server, hub):
    """A feed whose HTTP headers name the hub and its topic; returns (feed, topic)."""
    topic = feed_server.url("/topic")
    links = {"Link": f'<{hub.url}>; rel="hub", <{topic}>; rel="self"'}
    feed_server.set("/feed", rss(1, 2), headers=links)
    feed = Feed.objects.create(url=feed_server.url("/feed"), poll_interval=60)
    return feed, topic


def subscribed(feed: Feed) -> PushSubscription:
    return wait_for(
        lambda: PushSubscription.objects.filter(feed=feed, state="subscribed").first(), timeout=15
    )


def test_pushed_item_is_delivered_once_to_every_target_and_a_poll_of_it_delivers_nothing(
    push, hub, served, feed_server, celery_worker
):
    feed, topic = served
    targets = [
        Target.objects.create(name=f"out-{f}", kind="outbox", settings={"format": f})
        for f in ("telegram", "twitter")
    ]
    poll_feed.delay(feed.pk)  # the first poll records the backlog and finds the hub
    hub.wait_subscribed(topic)
    sub = subscribed(feed)
    assert sub.topic_url == topic and sub.hub_url == hub.url
    assert hub.accepted[0]["secret"] == websub.hub_secret(sub) and len(hub.accepted[0]["secret"]) < 200
    assert str(websub.push_state(feed)).startswith("subscribed until ")
    safety = Feed.objects.get(pk=feed.pk).next_poll_at - timezone.now()
    assert safety > timedelta(minutes=50), "while subscribed, polling is only a safety net (1 h)"

    feed_server.set("/feed", rss(1, 2, 3), headers={"Link": f'<{hub.url}>; rel="hub", <{topic}>; rel="self"'})
    assert hub.publish(topic, rss(1, 2, 3)) == [204]
    wait_for(lambda: Delivery.objects.filter(status="sent").count() == 2)
    assert {(d.post.guid, d.target_id) for d in Delivery.objects.all()} == {
        ("story-3", t.pk) for t in targets
    }
    assert Feed.objects.get(pk=feed.pk).last_push_at is not None

    report = watch.poll_feed(feed.pk)  # the same item polled
    assert report.status == "ok" and report.new_posts == []
    assert hub.publish(topic, rss(1, 2, 3)) == [204]  # and pushed again
    assert Delivery.objects.count() == 2 and Post.objects.filter(feed=feed).count() == 3


@pytest.mark.parametrize("method", ["sha1", "sha384", "sha512"])
def test_every_signature_method_of_the_spec_is_accepted(push, hub, served, method):
    feed, topic = served
    watch.poll_feed(feed.pk)
    websub.ensure(Feed.objects.get(pk=feed.pk))
    hub.wait_subscribed(topic)
    assert hub.publish(topic, rss(1, 2, 3), method=method) == [204]
    assert Post.objects.filter(feed=feed, guid="story-3").exists()


@pytest.mark.parametrize("secret", [None, "not-the-secret"], ids=["unsigned", "wrong-signature"])
def test_unsigned_or_badly_signed_push_is_acknowledged_and_ignored(push, hub, served, secret):
    feed, topic = served
    Target.objects.create(name="out", kind="outbox")
    watch.poll_feed(feed.pk)
    websub.ensure(Feed.objects.get(pk=feed.pk))
    hub.wait_subscribed(topic)
    assert hub.publish(topic, rss(1, 2, 3), secret=secret) == [202], "2xx, as WebSub §8.2 allows"
    assert not Post.objects.filter(guid="story-3").exists() and Delivery.objects.count() == 0


def test_pushed_body_over_the_size_cap_is_refused(push, hub, served, settings):
    feed, topic = served
    watch.poll_feed(feed.pk)
    websub.ensure(Feed.objects.get(pk=feed.pk))
    hub.wait_subscribed(topic)
    settings.SYNDICATOR_FEED_MAX_BYTES = 300
    assert hub.publish(topic, rss(1, 2, 3)) == [413]
    assert not Post.objects.filter(guid="story-3").exists()


def test_verification_nobody_asked_for_gets_404(push, hub, served):
    feed, topic = served
    watch.poll_feed(feed.pk)
    sub = websub.ensure(Feed.objects.get(pk=feed.pk))
    hub.wait_subscribed(topic)
    callback = websub.callback_url(sub)
    assert hub.verification(callback, "https://elsewhere.example/feed").status_code == 404
    assert hub.verification(callback, topic, mode="unsubscribe").status_code == 404
    assert hub.verification(callback.rsplit("/", 1)[0] + "/guessed-key", topic).status_code == 404
    assert PushSubscription.objects.get(pk=sub.pk).state == "subscribed"


def test_hub_that_never_verifies_falls_back_to_polling_with_the_reason(push, hub, served, settings):
    feed, _ = served
    hub.verify = False
    watch.poll_feed(feed.pk)
    websub.ensure(Feed.objects.get(pk=feed.pk))
    assert str(websub.push_state(feed)) == "pending"
    later = timezone.now() + timedelta(seconds=settings.SYNDICATOR_WEBSUB_VERIFY_TIMEOUT + 1)
    assert websub.maintain(now=later)["timed_out"] == 1
    state = websub.push_state(feed)
    assert state.state == "failed" and "did not verify the subscribe request within 300 s" in state.reason
    assert Feed.objects.get(pk=feed.pk).next_poll_at <= later, "normal polling resumes at once"


def test_denied_subscription_shows_the_hubs_reason(push, hub, served):
    feed, _ = served
    hub.deny_with = "topic not served here"
    watch.poll_feed(feed.pk)
    websub.ensure(Feed.objects.get(pk=feed.pk))
    wait_for(lambda: websub.push_state(feed).state == "failed")
    assert "hub denied the subscription: topic not served here" in str(websub.push_state(feed))


def test_hub_refusing_the_request_is_shown(push, hub, served):
    feed, _ = served
    hub.fail_next(status=400, body=b"hub.topic is not allowed")
    watch.poll_feed(feed.pk)
    websub.ensure(Feed.objects.get(pk=feed.pk))
    assert str(websub.push_state(feed)) == "failed: hub answered HTTP 400: hub.topic is not allowed"


def test_lease_is_renewed_before_it_ends(push, hub, served):
    feed, topic = served
    hub.lease_seconds = 600
    watch.poll_feed(feed.pk)
    websub.ensure(Feed.objects.get(pk=feed.pk))
    hub.wait_subscribed(topic)
    first = subscribed(feed).expires_at
    near_end = first - timedelta(seconds=30)
    assert websub.maintain(now=near_end)["renewed"] == 1
    hub.wait_subscribed(topic, count=2)
    wait_for(lambda: PushSubscription.objects.get(feed=feed).expires_at > first)
    assert [r["kind"] for r in hub.accepted] == ["subscribe", "subscribe"]
    assert hub.accepted[0]["callback"] == hub.accepted[1]["callback"]


def test_failed_renewal_resumes_polling_when_the_lease_runs_out(push, hub, served):
    feed, topic = served
    hub.lease_seconds = 600
    watch.poll_feed(feed.pk)
    websub.ensure(Feed.objects.get(pk=feed.pk))
    hub.wait_subscribed(topic)
    expires = subscribed(feed).expires_at
    hub.fail_next(status=503, body=b"overloaded")
    websub.maintain(now=expires - timedelta(seconds=30))
    assert websub.push_state(feed).state == "subscribed", "the lease still holds"
    websub.maintain(now=expires + timedelta(seconds=1))
    state = websub.push_state(feed)
    assert state.state == "failed"
    assert state.reason == "the lease ran out; renewal failed: hub answered HTTP 503: overloaded"
    assert Feed.objects.get(pk=feed.pk).next_poll_at <= expires + timedelta(seconds=1)


def test_removed_and_disabled_feeds_are_unsubscribed(push, hub, served, feed_server):
    feed, topic = served
    watch.poll_feed(feed.pk)
    websub.ensure(Feed.objects.get(pk=feed.pk))
    hub.wait_subscribed(topic)
    Feed.objects.filter(pk=feed.pk).update(enabled=False)
    assert websub.maintain()["unsubscribed"] == 1
    # The hub forgets the subscription once our callback has echoed its challenge, which is after
    # we delete our row: wait for both.
    wait_for(lambda: not PushSubscription.objects.exists() and not hub.subscribed(topic))
    assert hub.accepted[-1]["kind"] == "unsubscribe"

    Feed.objects.filter(pk=feed.pk).update(enabled=True)
    websub.ensure(Feed.objects.get(pk=feed.pk))
    hub.wait_subscribed(topic, count=2)
    Feed.objects.get(pk=feed.pk).delete()
    websub.maintain()
    wait_for(lambda: not PushSubscription.objects.exists())
    assert not hub.subscribed(topic)


def test_a_new_hub_or_topic_resubscribes(push, hub, served, feed_server):
    feed, topic = served
    watch.poll_feed(feed.pk)
    first = websub.ensure(Feed.objects.get(pk=feed.pk))
    hub.wait_subscribed(topic)
    moved = feed_server.url("/topic-moved")
    feed_server.set("/feed", rss(1, 2), headers={"Link": f'<{hub.url}>; rel="hub", <{moved}>; rel="self"'})
    watch.poll_feed(feed.pk)
    second = websub.ensure(Feed.objects.get(pk=feed.pk))
    assert second.pk != first.pk and second.callback_key != first.callback_key
    hub.wait_subscribed(moved)
    wait_for(lambda: not hub.subscribed(topic))
    assert list(PushSubscription.objects.values_list("pk", flat=True)) == [second.pk]


def test_hub_found_in_the_feed_document_when_headers_name_none(push, hub, feed_server):
    topic = feed_server.url("/feed")
    feed_server.set("/feed", rss(1, hub=hub.url, topic=topic))
    feed = Feed.objects.create(url=topic)
    watch.poll_feed(feed.pk)
    websub.ensure(Feed.objects.get(pk=feed.pk))
    hub.wait_subscribed(topic)


def test_hub_requests_go_through_the_network_guard(push, hub, served, settings):
    feed, _ = served
    watch.poll_feed(feed.pk)
    settings.SYNDICATOR_FEED_ALLOW_PRIVATE = []
    websub.ensure(Feed.objects.get(pk=feed.pk))
    assert "resolves to a private address" in websub.push_state(feed).reason
    assert hub.accepted == []


def test_without_a_public_url_nothing_subscribes(hub, served, settings):
    settings.SYNDICATOR_PUSH_ENABLED = False
    feed, _ = served
    watch.poll_feed(feed.pk)
    assert websub.ensure(Feed.objects.get(pk=feed.pk)) is None
    assert hub.requests == [] and str(websub.push_state(feed)) == "none"


def test_push_for_an_unknown_callback_is_404(push, live_server):
    response = httpx.post(f"{live_server.url}/websub/no-such-key", content=rss(1))
    assert response.status_code == 404


def test_push_state_is_shown_in_feeds_list_the_feed_page_and_the_api(push, hub, served, admin_role_client):
    import json
    import shlex
    from io import StringIO

    from django.core.management import call_command

    feed, topic = served
    watch.poll_feed(feed.pk)
    websub.ensure(Feed.objects.get(pk=feed.pk))
    hub.wait_subscribed(topic)
    hub.publish(topic, rss(1, 2, 3))
    expires = subscribed(feed).expires_at

    out = StringIO()
    call_command(*shlex.split("feeds list --json"), stdout=out)
    row = json.loads(out.getvalue())
    assert row["push"] == f"subscribed until {expires:%Y-%m-%d %H:%M} UTC" and row["last_push_at"]

    page = admin_role_client.get(f"/admin/syndicator/feed/{feed.pk}/change/").content.decode()
    assert f"subscribed until {expires:%Y-%m-%d %H:%M} UTC" in page

    api = admin_role_client.get("/api/feeds").json()
    assert api[0]["push"]["state"] == "subscribed" and api[0]["push"]["hub_url"] == hub.url
    assert api[0]["push"]["last_push_at"] is not None
