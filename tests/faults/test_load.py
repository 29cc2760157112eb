"""Load: new posts × 6 networks with 10 % of publishing requests failing transiently.

At the end, what each network received equals the deliveries marked `sent`, one to one, under the
network's own ids. `make test` runs 100 posts; `make test-long` the full 1,000 (6,000 deliveries).
A Mastodon 503 leaves its delivery uncertain; the sweeper has it re-sent under the same
Idempotency-Key (one verification attempt), which must not make a second status.
"""

from __future__ import annotations

import time

import pytest
from django.db.models import Count

from syndicator.models import Delivery, DeliveryAttempt
from tests.conftest import wait_for
from tests.faults.conftest import TAG
from tests.faults.networks import KINDS, reconcile
from tests.faults.support import settled, status_counts, store_posts

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

FAILURE_RATE = 0.10


@pytest.mark.parametrize(
    "posts",
    [
        pytest.param(100, id="100-posts"),
        pytest.param(1000, id="1000-posts", marks=[pytest.mark.long, pytest.mark.timeout(1800)]),
    ],
)
def test_every_sent_delivery_reached_its_network_exactly_once_under_load(
    posts, networks, start_worker, sweeper, settings
):
    # Queued deliveries wait behind thousands of others: that is not "stranded". Retries still
    # go out when due, whatever this says.
    settings.SYNDICATOR_STRANDED_AFTER = 600
    networks.make_targets(timeout=15)  # a loaded machine answers slowly; that is not a timeout
    networks.flaky = FAILURE_RATE
    # Exactly-once under load, not pacing: 100 posts into one Telegram chat would be paced at the
    # Bot API's 20 a minute, and X's free tier at 17 a day (docs/pacing.md; tests/test_pacing.py).
    worker = start_worker(concurrency=4, SYNDICATOR_PACING_REDIS_URL="none")
    expected = posts * len(KINDS)

    started = time.monotonic()
    store_posts(TAG, posts)
    wait_for(lambda: worker.check() or settled(expected), timeout=60 + expected * 0.25, interval=0.5)
    elapsed = time.monotonic() - started

    books = reconcile(networks)
    attempts = DeliveryAttempt.objects.count()
    outcomes = dict(DeliveryAttempt.objects.values_list("outcome").annotate(n=Count("id")).order_by())
    print(
        f"\nload: {posts} posts x {len(KINDS)} networks = {expected} deliveries in {elapsed:.1f} s "
        f"({expected / elapsed:.1f}/s); statuses {dict(status_counts())}; {attempts} attempts {outcomes}; "
        f"injected failures {dict(networks.injected)}\n{books.summary()}"
    )
    assert not books.problems, books.problems
    assert status_counts() == {"sent": expected}
    for kind in KINDS:
        assert books.counts[kind]["received"] == books.counts[kind]["sent"] == posts, kind
    # The injected failures happened, were retried, and never turned into a second post.
    assert sum(networks.injected.values()) > 0
    # One attempt per delivery, plus one per transient failure or rate limit, plus one re-send per
    # uncertain one.
    retried = outcomes.get("transient", 0) + outcomes.get("rate_limited", 0) + outcomes.get("unknown", 0)
    assert attempts == expected + retried
    resent = DeliveryAttempt.objects.filter(kind="lookup", outcome="sent")
    uncertain = {kind for kind, harness in networks.harnesses.items() if harness.flaky_is_uncertain}
    assert set(resent.values_list("delivery__target__kind", flat=True)) <= uncertain
    assert resent.count() == outcomes.get("unknown", 0) == sum(networks.injected[kind] for kind in uncertain)
    assert Delivery.objects.filter(attempts__gt=1).exists()
