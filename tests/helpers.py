"""Test data built the way production builds it."""

from __future__ import annotations

import itertools
from html.parser import HTMLParser
from pathlib import Path

import pytest

from syndicator import feeds
from syndicator.models import Feed, Post
from syndicator.watch import post_from_item

DEMO_FEEDS = Path(feeds.__file__).resolve().parent / "demo_feeds"
_feed_numbers = itertools.count(1)


def demo_post(filename: str = "nejat-en-recent.rss", index: int = 0, **overrides: object) -> Post:
    """Item `index` of a bundled demo feed, parsed, sanitized and stored as a poll stores it.

    Each call stores it under a feed of its own, so one test may store the same item twice.
    """
    parsed = feeds.parse((DEMO_FEEDS / filename).read_bytes())
    feed = Feed.objects.create(
        url=f"https://feeds.example/{next(_feed_numbers)}/{filename}", language=parsed.language
    )
    post = post_from_item(feed, feeds.sanitize(parsed.items[index]))
    for name, value in overrides.items():
        setattr(post, name, value)
    post.save()
    return post


class Tags(HTMLParser):
    """The start tags of an HTML text, with their decoded attributes."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.found: list[tuple[str, dict]] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.found.append((tag, dict(attrs)))


def require_postgresql(why: str) -> None:
    """Fail (not skip) a test that needs PostgreSQL when the suite runs on another database.

    `make test` runs these on PostgreSQL; on SQLite they could not check what they are for, and a
    skip would let that pass unnoticed.
    """
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.fail(f"needs PostgreSQL ({why}); run it with DATABASE_URL=postgres://… as `make test` does")
