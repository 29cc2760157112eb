"""Every network that declares edits or deletes (Adapter.capabilities) does them through the
follow-up machinery, against its emulator over real HTTP (#12): the article changes → the post
reads the new text, edited once; it is pulled with on_unpublish=delete → the post is gone, the
delivery `deleted`. A network that declares neither is told plainly, and never asked."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest

from syndicator import delivery as deliveries
from syndicator import followup, watch
from syndicator.models import Delivery, DeliveryAttempt, Feed, Post
from syndicator.targets import ADAPTERS
from tests.emulators import harness_class, network_kinds

pytestmark = pytest.mark.django_db

_numbers = itertools.count(1)


@pytest.fixture(params=network_kinds())
def harness(request) -> Iterator[object]:
    with harness_class(request.param)() as running:
        yield running


def sent(harness, **target_settings) -> Delivery:
    n = next(_numbers)
    feed = Feed.objects.create(url=f"https://www.nejatngo.org/feed/f{n}-{time.time_ns()}", language="en")
    post = Post.objects.create(
        feed=feed,
        guid=f"https://www.nejatngo.org/?p=f{n}",
        url=f"https://www.nejatngo.org/en/news/f{n}",
        title=f"Families ask for news of their children ({time.time_ns()})",
        summary="Nejat Society met families who have waited years for a word from their children.",
        language="en",
    )
    target = harness.make_target(name=f"{harness.kind}-f{n}", **target_settings)
    delivery = Delivery.objects.create(post=post, target=target)
    deliveries.attempt_delivery(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == "sent", delivery.last_error
    return delivery


def test_an_edit_reaches_every_network_that_declares_it(harness):
    abilities = ADAPTERS[harness.kind].capabilities
    delivery = sent(harness)
    post = delivery.post
    Post.objects.filter(pk=post.pk).update(title="Families still ask, a year on", version=2)
    post.refresh_from_db()
    asked = followup.post_changed(post)
    delivery.refresh_from_db()
    if not abilities.edit:
        assert asked == 0 and "cannot be edited" in delivery.followup_note
        assert not DeliveryAttempt.objects.filter(delivery=delivery, kind="edit").exists()
        return
    assert asked == 1 and delivery.followup == "edit"
    deliveries.attempt_delivery(delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.followup, delivery.edits) == ("sent", "", 1), delivery.followup_note
    assert "a year on" in (harness.post_text(delivery.external_id) or "")
    assert harness.edit_count(delivery.external_id) == 1
    edit = DeliveryAttempt.objects.get(delivery=delivery, kind="edit")
    assert edit.outcome == "sent" and "a year on" in edit.text_after and "a year on" not in edit.text_before

    # Asked again for the same text (a repeated edit): nothing more happens on the network.
    Delivery.objects.filter(pk=delivery.pk).update(followup="edit")
    deliveries.attempt_delivery(delivery.pk)
    assert harness.edit_count(delivery.external_id) == 1
    assert DeliveryAttempt.objects.filter(delivery=delivery, kind="edit").last().outcome == "unchanged"


def test_a_delete_reaches_every_network_that_declares_it(harness):
    abilities = ADAPTERS[harness.kind].capabilities
    policy = {"on_unpublish": "delete"} if abilities.delete else {}
    delivery = sent(harness, **policy)
    watch.unpublish(delivery.post, reason="the article was withdrawn")
    followup.post_unpublished(delivery.post, reason="the article was withdrawn")
    delivery.refresh_from_db()
    if not abilities.delete:
        assert delivery.status == "sent" and delivery.flagged_at is None
        assert "it stays:" in delivery.followup_note and "cannot be deleted" in delivery.followup_note
        assert not DeliveryAttempt.objects.filter(delivery=delivery, kind="delete").exists()
        return
    assert delivery.followup == "delete"
    deliveries.attempt_delivery(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == "deleted", delivery.followup_note
    assert delivery.deleted_by == "syndicator: the article was withdrawn"
    assert harness.post_text(delivery.external_id) is None
