"""kill -9 a worker while deliveries are in flight, start another: nothing lost, nothing posted twice."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from syndicator.models import Delivery, DeliveryAttempt
from syndicator.targets.registry import network
from tests.conftest import wait_for
from tests.faults.conftest import TAG
from tests.faults.networks import KINDS, reconcile
from tests.faults.support import settled, status_counts, store_posts

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

POSTS = 6
PACE = 2.0  # every answer comes this long after the network handled the request


def arrived_in_flight(networks) -> dict[str, set[int]]:
    """Per network, the posts whose request reached it while their delivery still waits for the
    answer: one query and one look at the networks, so that the kill follows the moment seen as
    closely as it can (looked at network by network, the first ones were a second old on a loaded
    machine, and an answer that came meanwhile left that network with nothing in flight)."""
    sending: dict[str, set[int]] = {}
    for kind, guid in Delivery.objects.filter(status="sending").values_list("target__kind", "post__guid"):
        sending.setdefault(kind, set()).add(int(guid.rsplit("-", 1)[1]))
    return {
        kind: sending.get(kind, set()) & {item.number for item in items}
        for kind, items in networks.received().items()
    }


def test_a_worker_killed_mid_send_loses_nothing_and_posts_nothing_twice(networks, start_worker, sweeper):
    networks.make_targets(timeout=10)
    networks.pace = PACE
    # The networks whose uncertain posts get settled (looked up, or re-sent under a key), and the
    # HTTP ones that leave them to an admin.
    settling = [kind for kind in KINDS if network(kind).can_verify()]
    others = [kind for kind in networks.http_kinds() if kind not in settling]
    # As many sends in flight as there are networks, so the kill can catch one of each that can
    # settle a lost answer.
    first = start_worker(concurrency=len(KINDS))
    store_posts(TAG, POSTS)

    def killable() -> bool:
        first.check()
        # A post made and unanswered on each network that can settle it, and one more network's.
        in_flight = arrived_in_flight(networks)
        return any(in_flight[kind] for kind in others) and all(in_flight[kind] for kind in settling)

    wait_for(killable, timeout=60)
    first.kill()
    networks.pace = 0
    start_worker(concurrency=2)
    wait_for(lambda: settled(POSTS * len(KINDS)), timeout=90)

    books = reconcile(networks)
    print(f"\nafter kill -9: {dict(status_counts())}; {books.summary()}")
    assert not books.problems, books.problems
    assert DeliveryAttempt.objects.filter(outcome="lost").exists(), "the kill hit sends in flight"
    # A network that can list the account's posts finds each post it received and marks it sent;
    # one with idempotency keys re-sends under the same key and is answered with what it made.
    looked_up = DeliveryAttempt.objects.filter(kind="lookup", outcome="sent")
    for kind in settling:
        assert books.counts[kind]["uncertain_arrived"] == 0, (kind, books.counts[kind])
        assert looked_up.filter(delivery__target__kind=kind).exists(), kind
    for kind, harness in networks.harnesses.items():
        if harness.outage_settles_hangs:
            assert books.counts[kind]["uncertain"] == 0, books.counts[kind]
            resent = looked_up.filter(delivery__target__kind=kind)
            assert all(harness.settled_note in a.message for a in resent), list(resent.values("message"))
    for delivery in Delivery.objects.filter(pk__in=looked_up.values("delivery")):
        assert delivery.status == "sent" and delivery.external_url.startswith("https://")
    # What stays uncertain waits for an admin, who sees it and why: the others cannot look a post
    # up, and a Graph or Bluesky post killed before its request arrived was looked for, not found.
    uncertain = Delivery.objects.filter(status="uncertain")
    out = StringIO()
    call_command("log", "--status", "uncertain", "--json", stdout=out)
    shown = {row["id"]: row for row in map(json.loads, out.getvalue().splitlines())}
    assert set(shown) == set(uncertain.values_list("pk", flat=True))
    for row in shown.values():
        assert "may or may not be published" in row["last_error"], row
        harness = networks.harnesses[row["target_kind"]]
        assert (harness.not_found_note or "an admin") in row["last_error"], row
