"""Fixtures of the bad-input suite: the two loopback servers, outbox targets, small caps."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from syndicator.models import Target
from tests.bad_input.catalogue import MAX_BYTES, TIMEOUT, Servers
from tests.bad_input.rawserver import RawServer
from tests.feedserver import FeedServer


@pytest.fixture
def servers() -> Iterator[Servers]:
    """A well-behaved feed server and a raw one, both on 127.0.0.1."""
    with FeedServer() as feed, RawServer() as raw:
        yield Servers(feed, raw)


@pytest.fixture
def targets(db) -> list[Target]:
    """One outbox (dry-run) target per network format: every new post is rendered four ways."""
    return [
        Target.objects.create(kind="outbox", name=f"outbox-{fmt}", settings={"format": fmt})
        for fmt in ("telegram", "facebook", "twitter", "email")
    ]


@pytest.fixture
def small_caps(settings) -> None:
    """Caps small enough that the size and time cases each take a second or two."""
    settings.SYNDICATOR_FEED_TIMEOUT = TIMEOUT
    settings.SYNDICATOR_FEED_MAX_BYTES = MAX_BYTES
