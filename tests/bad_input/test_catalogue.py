"""Every hostile feed of the catalogue, polled as the worker polls it: its outcome on the feed and
in the log, what was stored, and that every delivery made from it renders clean and is sent."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from syndicator.delivery import attempt_delivery
from syndicator.models import Delivery, Feed, Post, Target
from syndicator.watch import poll_feed
from tests.bad_input.bodies import FORBIDDEN
from tests.bad_input.catalogue import CASES, Case, Servers
from tests.bad_input.content_cases import CONTENT_CASES

# 180 s: the "10,000 items" first poll stores each item with its own savepoint, INSERT and
# same-article look-up, ~6 ms each on this 2-core machine (about 60 s: it timed out at 60 in CI).
pytestmark = [pytest.mark.django_db, pytest.mark.timeout(180)]

ALL = CASES + CONTENT_CASES
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


def test_the_catalogue_has_at_least_forty_distinct_cases() -> None:
    assert len(ALL) >= 40
    assert len({case.name for case in ALL}) == len(ALL)


@pytest.mark.parametrize("case", ALL, ids=[case.name for case in ALL])
def test_hostile_feed(
    case: Case, servers: Servers, targets: list[Target], small_caps: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    feed = Feed.objects.create(
        # A plain name: the email footer shows it, and the case names mention what is forbidden.
        url=case.serve(servers),
        name="Bad input",
        first_polled_at=None if case.first_poll else LONG_AGO,
    )
    polls = [poll_feed(feed.pk)]
    if case.then is not None:
        case.then(servers)
        polls.append(poll_feed(feed.pk))

    feed.refresh_from_db()
    assert feed.last_status == case.status, feed.last_error
    assert "internal error" not in feed.last_error
    if case.status == Feed.Status.ERROR:
        assert case.error in feed.last_error
        assert feed.consecutive_failures == len(polls)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("poll failed" in line and case.error in line for line in warnings), warnings
    else:
        assert (feed.last_error, feed.consecutive_failures) == ("", 0)
    lines = [record.getMessage() for record in caplog.records]
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR], "nothing crashes"
    assert not case.log or any(case.log in line for line in lines), lines

    posts = list(Post.objects.filter(feed=feed).order_by("pk"))
    assert len(posts) == case.posts
    for post in posts[:50]:
        assert_clean(f"{post.title} {post.summary} {post.content} {post.url} {post.image_url}")
    deliveries = list(Delivery.objects.filter(post__feed=feed).values_list("pk", flat=True))
    assert len(deliveries) == (0 if case.first_poll else len(posts) * len(targets))
    for delivery_id in deliveries:
        attempt_delivery(delivery_id)
    for status, text, error in Delivery.objects.filter(pk__in=deliveries).values_list(
        "status", "rendered_text", "last_error"
    ):
        assert status == Delivery.Status.SENT, error
        assert_clean(text)
    if case.check is not None:
        case.check(posts, servers)


def assert_clean(text: str) -> None:
    """No markup that runs, and no link that does."""
    found = [bad for bad in FORBIDDEN if bad in text.lower()]
    assert not found, f"{found} in {text[:300]!r}"
