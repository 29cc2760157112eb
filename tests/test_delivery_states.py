"""The one writer of delivery statuses: its table, and that everyone moves a delivery through it."""

from __future__ import annotations

import ast
import logging
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from syndicator import decisions
from syndicator import delivery as deliveries
from syndicator.delivery_states import TRANSITIONS, By, Event, IllegalMove, allowed, move
from syndicator.models import Delivery, DeliveryAttempt, Feed, Post, Target
from syndicator.recovery import LOOK_UP_LOST, LOST_WHILE_SENDING, settle_lost_sends
from syndicator.targets import SendResult
from syndicator.targets.outbox import OutboxAdapter

pytestmark = pytest.mark.django_db

Status = Delivery.Status
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def post() -> Post:
    feed = Feed.objects.create(url="https://news.example/feed", enabled=False)
    return Post.objects.create(feed=feed, guid="g-1", url="https://news.example/a", title="A story")


@pytest.fixture
def box() -> Target:
    return Target.objects.create(name="box", kind="outbox", settings={"format": "telegram"})


def expire_lease(delivery: Delivery) -> None:
    Delivery.objects.filter(pk=delivery.pk).update(lease_until=timezone.now() - timedelta(seconds=1))


# --- the table ----------------------------------------------------------------------------------


def test_the_table_refuses_an_illegal_move_and_a_move_from_a_status_it_does_not_list(post, box):
    d = Delivery.objects.create(post=post, target=box, status=Status.SENT, external_id="x-1")
    assert not allowed(Status.SENT, Event.LOST_BEFORE_SEND)

    # A sweeper that takes a sent delivery for a lost send moves nothing.
    assert move(d.pk, Event.LOST_BEFORE_SEND, lease_until=None) == 0
    d.refresh_from_db()
    assert (d.status, d.external_id) == ("sent", "x-1")

    # Asking for a move the table does not list is a bug, refused loudly rather than run.
    with pytest.raises(IllegalMove, match="lost_before_send cannot move a delivery from sent"):
        move(d.pk, Event.LOST_BEFORE_SEND, only_from=(Status.SENT,))
    with pytest.raises(IllegalMove, match="the status comes from the table"):
        move(d.pk, Event.RETRY, status=Status.QUEUED)
    d.refresh_from_db()
    assert d.status == "sent"


def test_sent_is_final_and_only_a_person_retries_cancels_or_gives_a_verdict():
    # What is out is never sent again: a sent post leaves `sent` only to be edited or deleted on
    # its network (#12), and those end in `sent` or `deleted`, never `queued` or `failed`.
    assert [event for event, t in TRANSITIONS.items() if Status.SENT in t.sources] == [
        Event.EDIT,
        Event.DELETE,
    ]
    following = {Status.EDITING, Status.DELETING}
    assert {t.to for t in TRANSITIONS.values() if following & set(t.sources)} == {Status.SENT, Status.DELETED}
    assert not [event for event, t in TRANSITIONS.items() if Status.DELETED in t.sources]
    assert not [event for event, t in TRANSITIONS.items() if Status.SKIPPED in t.sources]
    person = {event for event, t in TRANSITIONS.items() if t.by == By.PERSON}
    assert person == {Event.RETRY, Event.CANCEL, Event.MARK_SENT, Event.MARK_NOT_SENT, Event.RESCHEDULE}
    sweeper = {event for event, t in TRANSITIONS.items() if t.by == By.SWEEPER}
    assert sweeper == {
        Event.LOST_BEFORE_SEND,
        Event.LOST_MID_SEND,
        Event.LOST_MID_FANOUT,
        Event.LOST_MID_FOLLOWUP,
    }
    sends = {Event.LOST_BEFORE_SEND, Event.LOST_MID_SEND, Event.LOST_MID_FANOUT}
    assert all(TRANSITIONS[e].sources == (Status.SENDING,) for e in sends), "the sweeper takes lost sends"
    # A lost send to a list goes back to the retry (for the recipients never tried), never `queued`.
    assert TRANSITIONS[Event.LOST_MID_FANOUT].to == Status.RETRYING
    # and lost follow-ups, back to `sent` with the follow-up still asked for (safe to repeat)
    assert TRANSITIONS[Event.LOST_MID_FOLLOWUP].to == Status.SENT


def test_a_move_happens_once_when_two_ask_for_it(post, box):
    d = Delivery.objects.create(post=post, target=box)
    assert move(d.pk, Event.CLAIM) == 1
    assert move(d.pk, Event.CLAIM) == 0, "the second claim finds it sending"


# --- recovery asks the table too ----------------------------------------------------------------


def test_recovery_moves_lost_sends_through_the_state_module(post, box, caplog):
    before = Delivery.objects.create(post=post, target=box)
    mid = Delivery.objects.create(post=post, target=box, origin="manual")
    for d in (before, mid):
        assert deliveries.claim(d.pk)
    DeliveryAttempt.objects.create(delivery=mid, number=1)  # its request may have left
    expire_lease(before)
    expire_lease(mid)

    with caplog.at_level(logging.DEBUG, logger="syndicator.delivery_states"):
        assert settle_lost_sends(timezone.now()) == (1, 1)

    moves = [r.getMessage() for r in caplog.records if r.name == "syndicator.delivery_states"]
    assert f"delivery {before.pk}: sending → queued (lost_before_send)" in moves
    assert f"delivery {mid.pk}: sending → uncertain (lost_mid_send)" in moves
    mid.refresh_from_db()
    assert mid.status == "uncertain" and mid.last_error.startswith(LOST_WHILE_SENDING)


def test_a_lost_look_up_keeps_the_cause_from_the_attempt_log_not_from_last_error(post, settings):
    settings.SYNDICATOR_VERIFY_AFTER = 0
    fb = Target.objects.create(name="fb", kind="facebook", settings={"page_id": "1"})
    d = Delivery.objects.create(post=post, target=fb)
    assert deliveries.claim(d.pk)
    attempt = DeliveryAttempt.objects.create(delivery=d, number=1)
    attempt.outcome, attempt.error_class, attempt.message = "unknown", "OutcomeUnknown", "read timed out"
    attempt.finished_at = timezone.now()
    attempt.save()
    # What an admin reads may say anything; the cause is not parsed back out of it.
    Delivery.objects.filter(pk=d.pk).update(status="uncertain", last_error="edited; by hand")
    from syndicator.recovery import claim_verification

    look_up = claim_verification(d.pk, worker="w2")
    assert look_up is not None and look_up.kind == "lookup" and look_up.worker == "w2"
    expire_lease(d)

    assert settle_lost_sends(timezone.now()) == (0, 1)
    d.refresh_from_db()
    assert d.status == "uncertain"
    assert d.last_error == f"{LOOK_UP_LOST}; before: OutcomeUnknown: read timed out"


def test_only_the_state_module_writes_a_delivery_status():
    """A guard besides the behaviour tests: no `.update(status=…)` or `.status = …` anywhere in
    syndicator/ and tasks/ but syndicator/delivery_states.py (the network adapters in
    syndicator/targets/ write per-recipient email statuses, never a delivery's)."""
    offenders = []
    for path in [*ROOT.glob("syndicator/**/*.py"), *ROOT.glob("tasks/**/*.py")]:
        rel = path.relative_to(ROOT).as_posix()
        if rel == "syndicator/delivery_states.py" or rel.startswith(
            ("syndicator/targets/", "syndicator/migrations/")
        ):
            continue
        for node in ast.walk(ast.parse(path.read_text(), rel)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if node.func.attr in ("update", "update_or_create") and any(
                    k.arg == "status" for k in node.keywords
                ):
                    offenders.append(f"{rel}:{node.lineno}")
            elif isinstance(node, ast.Assign | ast.AugAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Attribute) and t.attr == "status" for t in targets):
                    offenders.append(f"{rel}:{node.lineno}")
    assert offenders == []


# --- issue 15 item 7: a late answer is recorded against the attempt that asked ------------------


def test_a_late_answer_from_an_older_attempt_never_marks_a_newer_in_flight_attempt_sent(
    post, box, monkeypatch
):
    d = Delivery.objects.create(post=post, target=box)
    newer: list[DeliveryAttempt] = []
    real_send = OutboxAdapter.send

    def slow_first_send(self, message, delivery):
        if newer:
            return real_send(self, message, delivery)
        # While attempt 1 waits for its answer: its lease expires, the sweeper marks it uncertain,
        # an admin retries it (attempt 2, a verdict) and a worker claims it again (attempt 3).
        expire_lease(delivery)
        assert deliveries.sweep()["uncertain"] == 1
        assert decisions.retry([Delivery.objects.get(pk=delivery.pk)], by="ada") == 1
        (current,) = deliveries.read_for_sending([delivery.pk])
        newer.append(deliveries._claim_and_log(current, "t3", "w3", rendered=message.as_log_text()))
        return SendResult(external_id="late-1", external_url="https://out.example/late-1")

    monkeypatch.setattr(OutboxAdapter, "send", slow_first_send)
    first = deliveries.attempt_delivery(d.pk, task_id="t1", worker="w1")

    # Attempt 1's own row says what its answer was; the delivery is attempt 3's, still in flight.
    assert first.number == 1 and first.outcome == "sent"
    d.refresh_from_db()
    assert (d.status, d.attempts, d.external_id, d.sent_at) == ("sending", 3, "", None)

    (third,) = newer
    result = SendResult(external_id="own-3", external_url="https://out.example/own-3")
    deliveries._record_success(d, third, result, time.monotonic())
    d.refresh_from_db()
    assert (d.status, d.external_id) == ("sent", "own-3")
    outcomes = [(a.number, a.kind, a.outcome) for a in d.attempt_log.all()]
    assert outcomes == [(1, "send", "sent"), (2, "verdict", "retried"), (3, "send", "sent")]


def test_a_late_answer_still_settles_its_own_uncertain_delivery(post, box, monkeypatch):
    # The other side of the rule: while attempt 1 is the latest, its answer after the sweeper
    # marked it lost is better knowledge than "maybe".
    d = Delivery.objects.create(post=post, target=box)

    def answer_after_the_lease(self, message, delivery):
        expire_lease(delivery)
        assert deliveries.sweep()["uncertain"] == 1
        return SendResult(external_id="slow-1")

    monkeypatch.setattr(OutboxAdapter, "send", answer_after_the_lease)
    assert deliveries.attempt_delivery(d.pk).outcome == "sent"
    d.refresh_from_db()
    assert (d.status, d.external_id) == ("sent", "slow-1")


def test_a_skip_leaves_only_a_send_in_flight():
    """A post the network cannot take (errors.Skipped) ends skipped, only from sending; an article
    too old for the target's max_age, only from the queue (pacing, before the claim)."""
    from syndicator.delivery_states import TRANSITIONS, Event

    assert TRANSITIONS[Event.SKIP].sources == ("sending",)
    assert TRANSITIONS[Event.SKIP].to == TRANSITIONS[Event.TOO_OLD].to == "skipped"
    assert TRANSITIONS[Event.TOO_OLD].sources == ("queued", "retrying")
    assert not any("skipped" in t.sources for t in TRANSITIONS.values()), "skipped is final"
