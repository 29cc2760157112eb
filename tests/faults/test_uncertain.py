"""Uncertain deliveries are settled by their target's policy; lost claims and a database that is
briefly away never cost a post, nor send one twice. In-process, through the emulators."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import OperationalError, connection
from django.utils import timezone

from syndicator import delivery as deliveries
from syndicator.delivery_states import Event, move
from syndicator.models import Delivery, DeliveryAttempt, Feed, Post, Target
from syndicator.targets.outbox import OutboxAdapter
from tests.emulators import bluesky, mastodon, telegram
from tests.emulators import facebook as graph
from tests.emulators.base import EmulatedRequest, Reply

pytestmark = pytest.mark.django_db


@pytest.fixture
def post() -> Post:
    feed = Feed.objects.create(url="https://news.example/feed", enabled=False)
    return Post.objects.create(
        feed=feed, guid="g-1", url="https://news.example/a", title="Kits reach the villages"
    )


@pytest.fixture
def fb() -> Iterator[graph.Harness]:
    with graph.Harness() as harness:
        yield harness


def answer_late_once(emulator: graph.GraphEmulator, seconds: float) -> None:
    """The next POST is handled (the post is made), and its answer comes after the client gave up."""
    original = emulator.dispatch

    def dispatch(request: EmulatedRequest) -> Reply:
        reply = original(request)
        if request.method == "POST":
            emulator.dispatch = original
            return dataclasses.replace(reply, delay=seconds)
        return reply

    emulator.dispatch = dispatch


def expire_lease(delivery: Delivery) -> None:
    Delivery.objects.filter(pk=delivery.pk).update(lease_until=timezone.now() - timedelta(seconds=1))


def test_a_graph_post_made_but_unanswered_is_found_and_marked_sent(fb, post, settings):
    target = fb.make_target()  # 1 s timeout
    d = Delivery.objects.create(post=post, target=target)
    answer_late_once(fb.emulator, 3)
    assert deliveries.attempt_delivery(d.pk).outcome == "unknown"
    d.refresh_from_db()
    assert d.status == "uncertain" and "looked up on the network shortly" in d.last_error
    assert deliveries.attempt_delivery(d.pk) is None, "not before SYNDICATOR_VERIFY_AFTER"

    settings.SYNDICATOR_VERIFY_AFTER = 0
    looked_up = deliveries.attempt_delivery(d.pk)

    d.refresh_from_db()
    [made] = fb.sent()
    assert d.status == "sent" and d.external_id == made["post_id"] and d.external_url.startswith("https://")
    assert looked_up.outcome == "sent" and looked_up.kind == "lookup"
    assert looked_up.message.startswith("verified")
    assert len(fb.sent()) == 1, "found, not posted again"


def test_a_graph_post_never_made_is_looked_up_once_then_waits_for_an_admin(fb, post, settings):
    settings.SYNDICATOR_VERIFY_AFTER = 0
    target = fb.make_target()
    d = Delivery.objects.create(post=post, target=target)
    fb.inject("timeout")  # the request hangs, and no post is made
    deliveries.attempt_delivery(d.pk)

    looked_up = deliveries.attempt_delivery(d.pk)

    d.refresh_from_db()
    assert looked_up.outcome == "unknown" and looked_up.kind == "lookup"
    assert d.status == "uncertain" and "not among the Page's 25 newest posts" in d.last_error
    assert deliveries.attempt_delivery(d.pk) is None, "looked up at most once"
    assert deliveries.sweep()["verifying"] == 0
    # The admin's retry sends it; had it been made after all, Graph's 506 would lead to it.
    deliveries.retry([d])
    assert deliveries.attempt_delivery(d.pk).outcome == "sent"
    assert len(fb.sent()) == 1


def statuses_posted(emulator: mastodon.MastodonEmulator) -> list[EmulatedRequest]:
    return [r for r in emulator.requests if r.method == "POST" and r.path == "/api/v1/statuses"]


@pytest.mark.parametrize("lost", ["answer", "request"])
def test_an_uncertain_mastodon_status_is_re_sent_under_its_key_and_made_exactly_once(post, settings, lost):
    """Whether the instance made the status (its answer was lost) or not (the request hung), the
    re-send under the same Idempotency-Key ends with one status, and the delivery sent under its id."""
    with mastodon.Harness() as social:
        d = Delivery.objects.create(post=post, target=social.make_target())  # 1 s timeout
        if lost == "answer":
            social.emulator.lose_next_answers(seconds=3)
        else:
            social.inject("timeout")  # the request hangs, no status is made
        assert deliveries.attempt_delivery(d.pk).outcome == "unknown"
        d.refresh_from_db()
        assert d.status == "uncertain" and "same Idempotency-Key" in d.last_error
        assert len(social.sent()) == (1 if lost == "answer" else 0)

        settings.SYNDICATOR_VERIFY_AFTER = 0
        resent = deliveries.attempt_delivery(d.pk)

        d.refresh_from_db()
        [made] = social.sent()
        assert d.status == "sent" and d.external_id == made["id"]
        assert resent.outcome == "sent" and resent.kind == "lookup"
        assert "resent_with_idempotency_key" in resent.message
        keys = {r.headers["idempotency-key"] for r in statuses_posted(social.emulator)}
        assert len(statuses_posted(social.emulator)) == 2 and len(keys) == 1, "the same key, twice"
        assert deliveries.attempt_delivery(d.pk) is None


def test_a_bluesky_post_made_but_unanswered_is_found_with_list_records(post, settings):
    with bluesky.Harness() as pds:
        d = Delivery.objects.create(post=post, target=pds.make_target())  # 1 s timeout
        pds.emulator.answer_late = 3  # the record is committed, its answer comes too late
        assert deliveries.attempt_delivery(d.pk).outcome == "unknown"
        d.refresh_from_db()
        assert d.status == "uncertain"

        settings.SYNDICATOR_VERIFY_AFTER = 0
        looked_up = deliveries.attempt_delivery(d.pk)

        d.refresh_from_db()
        [made] = pds.sent()
        assert d.status == "sent" and d.external_id == made["uri"]
        assert looked_up.outcome == "sent" and looked_up.kind == "lookup"
        assert any("listRecords" in r.path for r in pds.emulator.requests)
        assert len(pds.sent()) == 1, "found, not posted again"


def test_a_bluesky_post_never_made_is_looked_up_once_then_waits_for_an_admin(post, settings):
    settings.SYNDICATOR_VERIFY_AFTER = 0
    with bluesky.Harness() as pds:
        d = Delivery.objects.create(post=post, target=pds.make_target())
        pds.inject("timeout")  # createRecord hangs, no record is made
        deliveries.attempt_delivery(d.pk)

        looked_up = deliveries.attempt_delivery(d.pk)

        d.refresh_from_db()
        assert looked_up.outcome == "unknown" and looked_up.kind == "lookup"
        assert d.status == "uncertain" and "not among the account's" in d.last_error
        assert deliveries.attempt_delivery(d.pk) is None, "looked up at most once"
        assert pds.sent() == []
        deliveries.retry([d])  # the admin's retry sends it
        assert deliveries.attempt_delivery(d.pk).outcome == "sent"
        assert len(pds.sent()) == 1


def test_networks_that_cannot_look_a_post_up_leave_it_to_an_admin(post, settings):
    settings.SYNDICATOR_VERIFY_AFTER = 0
    with telegram.Harness(hang_seconds=3) as tg:
        d = Delivery.objects.create(post=post, target=tg.make_target())
        tg.inject("timeout")
        deliveries.attempt_delivery(d.pk)

        assert deliveries.attempt_delivery(d.pk) is None, "Telegram cannot be asked"
        assert deliveries.sweep()["verifying"] == 0
    d.refresh_from_db()
    assert d.status == "uncertain" and d.attempts == 1
    assert "an admin checks the account" in d.last_error
    out = StringIO()
    call_command("log", "--status", "uncertain", "--json", stdout=out)
    assert [row["id"] for row in map(json.loads, out.getvalue().splitlines())] == [d.pk]


def outbox_delivery(post: Post) -> Delivery:
    target = Target.objects.create(name="out", kind="outbox", settings={"format": "telegram"})
    return Delivery.objects.create(post=post, target=target)


def test_an_outbox_delivery_lost_mid_send_is_sent_again_since_that_is_harmless(post, settings):
    settings.SYNDICATOR_VERIFY_AFTER = 0
    d = outbox_delivery(post)
    assert deliveries.claim(d.pk)
    DeliveryAttempt.objects.create(delivery=d, number=1)  # the worker died with its request out
    expire_lease(d)
    assert deliveries.sweep()["uncertain"] == 1

    looked_up = deliveries.attempt_delivery(d.pk)

    d.refresh_from_db()
    assert d.status == "sent" and d.external_id.startswith(f"outbox-{d.pk}-")
    assert [a.outcome for a in d.attempt_log.all()] == ["lost", "sent"]
    assert looked_up.kind == "lookup"


def test_a_claim_lost_before_its_request_left_is_queued_again_not_uncertain(post):
    d = outbox_delivery(post)
    assert deliveries.claim(d.pk)  # and the worker died before logging an attempt
    expire_lease(d)

    assert deliveries.sweep()["requeued_lost"] == 1

    d.refresh_from_db()
    assert d.status == "queued" and "lost before sending" in d.last_error
    assert deliveries.attempt_delivery(d.pk).outcome == "sent"


def test_a_delivery_claimed_elsewhere_while_this_worker_rendered_is_never_sent(post, monkeypatch):
    d = outbox_delivery(post)
    render, sends = OutboxAdapter.render, []

    def render_too_slowly(self, delivery):
        # The worker stalls between its read and its claim; meanwhile another worker claims it
        # (the sweeper re-sent its message, taken for lost) and fails transiently: `retrying` and
        # due again, as when this worker read it, but one attempt on. This worker's claim, a
        # compare-and-set on the attempt count it read, must take nothing.
        assert deliveries.claim(delivery.pk)
        assert move(delivery.pk, Event.RETRY_LATER, lease_until=None, next_attempt_at=None)
        return render(self, delivery)

    monkeypatch.setattr(OutboxAdapter, "render", render_too_slowly)
    monkeypatch.setattr(OutboxAdapter, "send", lambda self, *a: sends.append(a))

    assert deliveries.attempt_delivery(d.pk) is None

    d.refresh_from_db()
    assert sends == [] and (d.status, d.attempts) == ("retrying", 1) and not d.attempt_log.exists()


@pytest.mark.django_db(transaction=True)
def test_an_answer_is_written_even_while_the_database_is_briefly_away(post, settings):
    settings.SYNDICATOR_RECORD_RETRY = 5
    d = outbox_delivery(post)
    failures: list[str] = []

    def outage_at_the_outcome(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        # The statement that writes the attempt's outcome: on PostgreSQL one statement with the
        # delivery's move (delivery._finish_and_move), elsewhere the attempt's UPDATE.
        writes_outcome = sql.startswith(("WITH finished AS", 'UPDATE "syndicator_deliveryattempt"'))
        if writes_outcome and "sent" in (params or ()) and len(failures) < 2:
            failures.append(sql)
            raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(outage_at_the_outcome):
        attempt = deliveries.attempt_delivery(d.pk)

    d.refresh_from_db()
    assert len(failures) == 2 and attempt.outcome == "sent"
    assert d.status == "sent" and d.attempt_log.get().outcome == "sent"
