"""Every network answers 5xx, 429 and times out for a while: the system recovers by itself.

Each emulator fails its first requests in a scripted burst. A 5xx or a 429 means nothing was
posted, so it is retried and sent exactly once; a timeout after the request left is ambiguous,
so that delivery ends `uncertain` (never re-sent blindly) and is accounted for as such. Mastodon
differs: any 5xx of POST /api/v1/statuses, and a timeout, is uncertain there, and settled by one
re-send under the same Idempotency-Key, so every Mastodon delivery ends sent, exactly once.
"""

from __future__ import annotations

import pytest

from syndicator.models import DeliveryAttempt
from tests.conftest import wait_for
from tests.faults.conftest import TAG
from tests.faults.networks import KINDS, reconcile
from tests.faults.support import settled, status_counts, store_posts

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

POSTS = 8
TIMEOUT = 3.0  # the targets' API timeout
HANG = 6.0  # a scripted hang outlasts it


def test_outages_of_every_network_end_in_sent_exactly_once_or_uncertain(networks, start_worker, sweeper):
    networks.make_targets(timeout=TIMEOUT)
    for harness in networks.harnesses.values():
        harness.script_outage(HANG)
    worker = start_worker(concurrency=2)
    store_posts(TAG, POSTS)

    wait_for(lambda: worker.check() or settled(POSTS * len(KINDS)), timeout=120)
    books = reconcile(networks)
    print(f"\nafter the outages: {dict(status_counts())}; {books.summary()}")
    assert not books.problems, books.problems
    settled_by_key = [kind for kind, harness in networks.harnesses.items() if harness.outage_settles_hangs]
    for kind in KINDS:
        if kind in settled_by_key:  # its 5xx and its hang were re-sent under their keys: all sent
            assert books.counts[kind]["sent"] == POSTS, (kind, books.counts[kind])
            continue
        # The one hang of each network is its one uncertain delivery; the request never made a post.
        assert books.counts[kind]["uncertain"] == 1, (kind, books.counts[kind])
        assert books.counts[kind]["uncertain_not_arrived"] == 1, (kind, books.counts[kind])
        assert books.counts[kind]["sent"] == POSTS - 1, (kind, books.counts[kind])
    for kind, harness in networks.harnesses.items():
        assert harness.outage_served(), f"every fault scripted for {kind} was served"
    for kind in settled_by_key:
        harness = networks.harnesses[kind]
        resent = DeliveryAttempt.objects.filter(delivery__target__kind=kind, kind="lookup", outcome="sent")
        if harness.outage_lookups is not None:
            assert resent.count() == harness.outage_lookups, (kind, resent.count())
        assert all(harness.settled_note in a.message for a in resent), (kind, list(resent.values("message")))
    outcomes = set(DeliveryAttempt.objects.values_list("outcome", flat=True))
    assert {"transient", "rate_limited", "unknown", "sent"} <= outcomes
    for harness in networks.harnesses.values():
        harness.check_after_outage(networks.received()[harness.kind])
