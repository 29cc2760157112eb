"""The real default caps, not the catalogue's small ones: a 50 MB body is refused after the first
10 MB, and never held whole in memory; a gzip bomb likewise."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable, Iterator

import pytest
from django.conf import settings

from syndicator.errors import FeedTooLarge
from syndicator.feeds import fetch
from tests.bad_input import rawserver
from tests.bad_input.rawserver import RawServer

pytestmark = pytest.mark.timeout(60)

MB = 1 << 20
DEFAULT_CAP = 10 * MB  # syndicator/settings.py, with SYNDICATOR_FEED_MAX_BYTES unset
PADDING = b"<!-- padding -->" * 4096


@pytest.fixture
def raw() -> Iterator[RawServer]:
    with RawServer() as server:
        yield server


@pytest.fixture(autouse=True)
def shipped_defaults() -> None:
    assert settings.SYNDICATOR_FEED_MAX_BYTES == DEFAULT_CAP, "run without SYNDICATOR_FEED_MAX_BYTES set"


def peak_memory(action: Callable[[], object]) -> int:
    """The most memory Python held at once (all threads) while action ran."""
    tracemalloc.start()
    try:
        action()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def refused(url: str) -> None:
    with pytest.raises(FeedTooLarge, match=f"feed larger than {DEFAULT_CAP} bytes"):
        fetch(url)


@pytest.mark.parametrize("declared", [False, True], ids=["undeclared", "declared"])
def test_a_50_mb_body_is_refused_by_the_default_cap_without_being_held_whole(raw, declared):
    raw.set("/feed", rawserver.sized(50 * MB, PADDING, declare=declared))

    started = time.monotonic()
    peak = peak_memory(lambda: refused(raw.url("/feed")))

    assert peak < 2 * DEFAULT_CAP, f"{peak / MB:.1f} MB held"
    # The server stops when the client leaves; socket buffers take a few MB more than were read.
    assert raw.sent("/feed") < 30 * MB
    if declared:  # refused from the Content-Length header, before reading any of the body
        assert peak < MB and time.monotonic() - started < 2


def test_a_gzip_bomb_is_refused_by_the_default_cap_as_it_decodes(raw):
    raw.set("/feed", rawserver.gzip_bomb(50 * MB))

    peak = peak_memory(lambda: refused(raw.url("/feed")))

    assert peak < 2 * DEFAULT_CAP, f"{peak / MB:.1f} MB held"
