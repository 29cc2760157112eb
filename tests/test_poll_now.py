"""Poll now hands the poll to a worker and returns at once; the page then shows the result (issue 14)."""

from __future__ import annotations

import time

import pytest
from django.test import Client
from django.urls import reverse

from syndicator.models import Feed, Post
from tests.conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]

RSS = (
    "<rss version='2.0'><channel><title>Slow news</title>"
    "<item><guid>a</guid><title>Arrived late</title><link>https://news.example/a</link></item>"
    "</channel></rss>"
)


def test_poll_now_returns_before_a_slow_feed_answers_and_the_status_shows_the_result(
    admin_role_client, feed_server, celery_worker
):
    feed_server.set("/slow.xml", RSS, delay=3)
    feed = Feed.objects.create(url=feed_server.url("/slow.xml"), name="Slow", backfill=1)

    started = time.monotonic()
    response = admin_role_client.post(reverse("admin:syndicator_feed_poll", args=[feed.pk]))
    took = time.monotonic() - started
    assert response.status_code == 302 and "poll_queued=" in response["Location"]
    assert took < 1.5, f"the button waited {took:.1f} s for the feed"

    status_url = reverse("admin:syndicator_feed_poll_status", args=[feed.pk])
    assert admin_role_client.get(status_url).json()["last_polled_at"] == ""  # not yet: the feed is slow
    result = wait_for(
        lambda: (answer := admin_role_client.get(status_url).json())["last_polled_at"] and answer, timeout=30
    )
    assert result["summary"] == "ok: 1 new posts" and result["status"] == "ok"
    assert Post.objects.filter(feed=feed, title="Arrived late").exists()


def test_the_poll_status_is_for_those_who_may_see_the_feed(editor_client):
    feed = Feed.objects.create(url="https://news.example/feed", name="News")
    url = reverse("admin:syndicator_feed_poll_status", args=[feed.pk])
    assert Client().get(url).status_code == 302  # to the login page
    assert editor_client.get(url).json()["summary"] == "not polled yet"
    assert editor_client.post(reverse("admin:syndicator_feed_poll", args=[feed.pk])).status_code == 403


def test_the_list_action_queues_the_polls_too(admin_role_client, feed_server, celery_worker):
    feed_server.set("/slow.xml", RSS, delay=3)
    feed = Feed.objects.create(url=feed_server.url("/slow.xml"), name="Slow", backfill=1)
    started = time.monotonic()
    response = admin_role_client.post(
        reverse("admin:syndicator_feed_changelist"),
        {"action": "poll_now", "_selected_action": [feed.pk]},
        follow=True,
    )
    assert time.monotonic() - started < 1.5
    assert "Polls queued for Slow" in response.content.decode()
    wait_for(lambda: Post.objects.filter(feed=feed).exists(), timeout=30)
