"""Every network answers 5xx, 429 and times out for a while: the system recovers by itself.

Each emulator fails its first requests in a scripted burst. A 5xx or a 429 means nothing was
posted, so it is retried and sent exactly once; a timeout after the request left is ambiguous,
so that delivery ends `uncertain` (never re-sent blindly) and is accounted for as such. Mastodon
differs: any 5xx of POST /api/v1/statuses, and a timeout, is uncertain there, and settled by one
re-send under the same Idempotency-Key, so every Mastodon delivery ends sent, exactly once.
"""

from __future__ import annotations

import dataclasses
import time

import pytest

from syndicator.models import Delivery, DeliveryAttempt
from tests.conftest import wait_for
from tests.emulators.base import EmulatedRequest, Reply
from tests.emulators.bluesky import xrpc_error
from tests.emulators.graph import PAGE_ID, buc_usage, graph_error
from tests.emulators.mastodon import rate_limit_reset
from tests.emulators.telegram import error
from tests.emulators.x import PROBLEM, problem
from tests.faults.conftest import TAG
from tests.faults.networks import KINDS, reconcile
from tests.faults.support import settled, status_counts, store_posts

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

POSTS = 8
TIMEOUT = 3.0  # the targets' API timeout
HANG = 6.0  # a scripted hang outlasts it


def script_outage(networks) -> None:
    """For each network: two 5xx, one rate limit with its hint, one hang past the client timeout."""
    tg = networks.http("telegram")
    tg.fail_next(status=502, body=b"<html><title>502 Bad Gateway</title></html>")
    tg.fail_next(status=503, json=error(503, "Service Unavailable"))
    tg.rate_limit_next(retry_after=1)
    tg.hang_next(seconds=HANG)

    fb = networks.http("facebook")
    fb.fail_next(status=500, body=b"Internal Server Error")
    fb.fail_next(status=500, json=graph_error(2, "Service temporarily unavailable", type=""))
    limited = graph_error(32, "(#32) Page request limit reached", is_transient=True)
    fb.fail_next(status=400, json=limited, headers=buc_usage(PAGE_ID, 0.02))  # 1.2 s
    fb.hang_next(seconds=HANG)
    # The first post that goes through is made, but its answer is lost (a bare 502): the retry
    # meets Graph's duplicate refusal (506), and the adapter finds the earlier post.
    fb.lose_answer_next()

    tw = networks.http("twitter")
    tw.fail_next(2, status=503, json=problem(503, "Service Unavailable", "Over capacity"), headers=PROBLEM)
    reset = {"x-rate-limit-remaining": "0", "x-rate-limit-reset": str(int(time.time()) + 2)}
    tw.fail_next(status=429, json=problem(429, "Too Many Requests", "Too Many Requests"), headers=reset)
    tw.hang_next(seconds=HANG)

    # Mastodon: only first sends fail; the re-send that settles an uncertain one must get through
    # (one look-up per uncertain delivery), whichever order the worker takes them in.
    fail_first_sends(
        networks.http("mastodon"),
        [
            Reply(502, body=b"<html><title>502 Bad Gateway</title></html>"),
            Reply(503, json={"error": "Service Unavailable"}),
            Reply(429, json={"error": "Too many requests"}, headers=mastodon_limited()),
            Reply(504, body=b"", delay=HANG),  # hangs, no status made
        ],
    )

    bsky = networks.http("bluesky")
    create, login = "com.atproto.repo.createRecord", "com.atproto.server.createSession"
    bsky.fail_method(login, status=502, json=xrpc_error("UpstreamFailure", "Bad Gateway"))
    bsky.fail_method(create, status=503, json=xrpc_error("NotEnoughResources", "Service Unavailable"))
    limited = {
        "ratelimit-limit": "5000",
        "ratelimit-remaining": "0",
        "ratelimit-reset": str(int(time.time()) + 2),
    }
    bsky.fail_method(
        create, status=429, json=xrpc_error("RateLimitExceeded", "Rate Limit Exceeded"), headers=limited
    )
    bsky.fail_method(create, status=504, delay=HANG)  # createRecord hangs, no record made

    mail = networks.smtp
    mail.fail_next_session(greeting="421 4.3.2 Service not available, closing transmission channel")
    mail.fail_next_session(greeting="421 4.3.2 Service not available, closing transmission channel")
    mail.fail_next_session(rcpt="451 4.4.5 Too many messages, slow down")
    mail.fail_next_session(data_stall=HANG)  # silence after the message: it may have arrived


def mastodon_limited() -> dict[str, str]:
    return {
        "X-RateLimit-Limit": "300",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": rate_limit_reset(2),
    }


def fail_first_sends(emulator, replies: list[Reply]) -> None:
    """Answer the next statuses under Idempotency-Keys not seen before with these replies, in order."""
    original, seen = emulator.dispatch, set()
    emulator.pending_first_sends = replies

    def dispatch(request: EmulatedRequest) -> Reply:
        key = request.headers.get("idempotency-key", "")
        if request.path == "/api/v1/statuses" and key not in seen and replies:
            seen.add(key)
            emulator.requests.append(request)
            return dataclasses.replace(replies.pop(0))
        seen.add(key)
        return original(request)

    emulator.dispatch = dispatch


def test_outages_of_every_network_end_in_sent_exactly_once_or_uncertain(networks, start_worker, sweeper):
    networks.make_targets(timeout=TIMEOUT)
    script_outage(networks)
    worker = start_worker(concurrency=2)
    store_posts(TAG, POSTS)

    wait_for(lambda: worker.check() or settled(POSTS * len(KINDS)), timeout=120)
    books = reconcile(networks)
    print(f"\nafter the outages: {dict(status_counts())}; {books.summary()}")
    assert not books.problems, books.problems
    for kind in KINDS:
        if kind == "mastodon":  # its two 5xx and its hang were re-sent under their keys: all sent
            assert books.counts[kind]["sent"] == POSTS, (kind, books.counts[kind])
            continue
        # The one hang of each network is its one uncertain delivery; the request never made a post.
        assert books.counts[kind]["uncertain"] == 1, (kind, books.counts[kind])
        assert books.counts[kind]["uncertain_not_arrived"] == 1, (kind, books.counts[kind])
        assert books.counts[kind]["sent"] == POSTS - 1, (kind, books.counts[kind])
    for emulator in (networks.http(kind) for kind in ("telegram", "facebook", "twitter")):
        assert not emulator._script, "every scripted fault was served"
    assert not networks.http("mastodon").pending_first_sends, "every scripted fault was served"
    assert not any(networks.http("bluesky")._method_faults.values()), "every scripted fault was served"
    resent = DeliveryAttempt.objects.filter(delivery__target__kind="mastodon", kind="lookup", outcome="sent")
    assert resent.count() == 3 and all("resent_with_idempotency_key" in a.message for a in resent)
    assert not networks.smtp._faults
    outcomes = set(DeliveryAttempt.objects.values_list("outcome", flat=True))
    assert {"transient", "rate_limited", "unknown", "sent"} <= outcomes
    # The Graph post whose answer was lost: sent once, under the id Graph gave it.
    found = DeliveryAttempt.objects.get(message__contains="found_after_duplicate")
    assert found.delivery.status == "sent"
    assert found.delivery.external_id in {item.external_id for item in networks.received()["facebook"]}
    # The Graph delivery that hung was looked up, not found, and waits for an admin with the reason.
    hung = Delivery.objects.get(target__kind="facebook", status="uncertain")
    assert "not among the Page's" in hung.last_error
    # So was Bluesky's (listRecords).
    hung = Delivery.objects.get(target__kind="bluesky", status="uncertain")
    assert "not among the account's" in hung.last_error
