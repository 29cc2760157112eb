"""One contract for every network adapter, run against each network's emulator over real I/O.

Every registered adapter (but the outbox dry run) must have a harness in tests/emulators/, send a
real post and answer with an external id, and turn each failure mode into the right error class.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from syndicator.errors import RateLimited, TargetBroken
from syndicator.models import Delivery, Feed, Post
from syndicator.targets import ADAPTERS, get_adapter
from syndicator.targets.registry import OUTBOX
from tests.emulators import harness_class, network_kinds

FAILURE_MODES = ("server_error", "rate_limited", "timeout", "bad_token", "rejected_content")

pytestmark = pytest.mark.django_db


def test_every_registered_network_has_a_harness():
    assert set(ADAPTERS) - {OUTBOX} == set(network_kinds())
    for kind in network_kinds():
        assert harness_class(kind).kind == kind


@pytest.fixture(params=network_kinds())
def harness(request) -> Iterator[object]:
    with harness_class(request.param)() as running:
        yield running


@pytest.fixture
def post() -> Post:
    feed = Feed.objects.create(url="https://www.nejatngo.org/en/feed/", language="en")
    return Post.objects.create(
        feed=feed,
        guid="https://www.nejatngo.org/?p=90006",
        url="https://www.nejatngo.org/en/?p=90006",
        title="Nejat NewsLetter – January 2026",
        summary="The January issue of the Nejat NewsLetter is out.",
        content="<p>The January issue of the Nejat NewsLetter is out.</p>",
        categories=["MEK"],
        language="en",
    )


def send(harness, post: Post):
    target = harness.make_target()
    delivery = Delivery.objects.create(post=post, target=target)
    adapter = get_adapter(target)
    return adapter.send(adapter.render(delivery), delivery)


def test_send_publishes_once_and_answers_with_an_external_id(harness, post):
    result = send(harness, post)

    assert result.external_id
    if harness.public_urls:  # a mailing list has no public URL (TARGETS.md)
        assert result.external_url.startswith("https://")
    sent = harness.sent()
    assert len(sent) == 1
    assert "Nejat NewsLetter" in sent[0]["text"]


@pytest.mark.parametrize("mode", FAILURE_MODES)
def test_each_failure_mode_raises_its_error_class(harness, post, mode):
    harness.inject(mode)
    with pytest.raises(Exception) as raised:
        send(harness, post)

    expected = harness.expected[mode]
    assert type(raised.value) is expected, f"{harness.kind}/{mode}: {raised.value!r}"
    if isinstance(raised.value, RateLimited):
        assert raised.value.retry_after and raised.value.retry_after > 0
    assert harness.sent() == [], "a failed send published nothing"


def test_check_accepts_good_credentials_and_rejects_a_dead_token(harness):
    target = harness.make_target()
    assert get_adapter(target).check()
    harness.inject("bad_token")
    with pytest.raises(TargetBroken):
        get_adapter(target).check()
