"""Following an article after it went out (#12): edits and deletions of the networks' posts.

Who asks:
- detection (syndicator/watch.py, syndicator/webhook.py) calls ``post_changed`` and
  ``post_unpublished`` after its transaction committed; each target's policy decides
  (``on_update``: edit | ignore; ``on_unpublish``: delete | flag);
- an editor calls ``edit_everywhere`` / ``delete_everywhere`` (the post page, ``syndicator edit``
  / ``syndicator delete``, the JSON API), in their name.

Asking writes ``Delivery.followup`` (edit | delete) on the post's sent deliveries and sends each
one's ordinary deliver task. The worker (``delivery.attempt_delivery``) claims a follow-up like a
send — ``Event.EDIT`` / ``Event.DELETE`` to `editing` / `deleting` under a lease, an attempt of
kind edit or delete in the log — calls the adapter (``Adapter.edit`` / ``Adapter.delete``, both
safe to repeat), and records the outcome through syndicator.delivery_states.move: `deleted`, or
back to `sent` (edited, unchanged, refused with the reason, or to be tried again by the one retry
policy). A sent post never becomes `failed`: what is out stays out.

Order: an edit renders the article as it is when the worker runs, so a burst of saves in the CMS
ends as the newest version only, and an older version can never be applied after a newer one
(the claim lets one follow-up of a delivery run at a time). A delete asked for while an edit is
pending replaces it. docs/followups.md says why each rule is as it is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from syndicator import clock
from syndicator.clock import db_now
from syndicator.delivery_states import Event, move
from syndicator.errors import (
    DeliveryError,
    EditRefused,
    OutcomeUnknown,
    PermanentError,
    TargetBroken,
    UserError,
)
from syndicator.models import Delivery, DeliveryAttempt, Post
from syndicator.redact import redact
from syndicator.targets import get_adapter
from syndicator.targets.base import Adapter

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

    User = AbstractBaseUser | AnonymousUser

log = logging.getLogger(__name__)

Status = Delivery.Status
Followup = Delivery.Followup
Outcome = DeliveryAttempt.Outcome
Kind = DeliveryAttempt.Kind
# Where a network post exists, or may: what an edit or a delete is asked for on. `sending` and
# `uncertain` too: the post may be out, and the follow-up runs once it is `sent`.
FOLLOWABLE = (Status.SENDING, Status.SENT, Status.EDITING, Status.DELETING, Status.UNCERTAIN)
# What has not gone out yet: an unpublished article's are cancelled, never sent.
NOT_OUT = (Status.QUEUED, Status.RETRYING)
ACTIVE_TARGET = Q(target__enabled=True, target__paused_at__isnull=True)
BATCH = 500


@dataclass(frozen=True)
class Plan:
    """What one target does about an edit or a delete: asked for, or why not."""

    delivery_id: int
    target: str
    action: str  # "edit" | "delete"
    asked: bool
    reason: str = ""  # why not (or, asked, what else to know); shown to the editor

    def as_dict(self) -> dict[str, object]:
        return {
            "delivery": self.delivery_id,
            "target": self.target,
            "action": self.action,
            "asked": self.asked,
            "reason": self.reason,
        }


# --- what a target can do ------------------------------------------------------------------------


def _span(seconds: float) -> str:
    hours = seconds / 3600
    if hours >= 1:
        return f"{hours:g} hours"
    return f"{seconds / 60:g} minutes"


def cannot(adapter: Adapter, delivery: Delivery, action: str, *, now: datetime | None = None) -> str:
    """Why this target cannot make this follow-up now ('' when it can): what its network declares
    (``Capabilities``), its window since the post went out and its edit count."""
    abilities = adapter.abilities()
    now = now or timezone.now()
    age = (now - delivery.sent_at).total_seconds() if delivery.sent_at else 0.0
    label = adapter.network_label()
    if action == Followup.EDIT:
        if not abilities.edit:
            return f"{label} posts cannot be edited ({abilities.note})"
        if abilities.edit_window is not None and age > abilities.edit_window:
            return f"{label} allows edits only within {_span(abilities.edit_window)} of posting"
        if abilities.max_edits is not None and delivery.edits >= abilities.max_edits:
            most, done = abilities.max_edits, delivery.edits
            return f"{label} allows at most {most} edits, and it was edited {done} times"
        return ""
    if not abilities.delete:
        return f"{label} posts cannot be deleted ({abilities.note})"
    if abilities.delete_window is not None and age > abilities.delete_window:
        return f"{label} deletes posts only within {_span(abilities.delete_window)} of posting"
    return ""


def policy(adapter: Adapter, name: str) -> str:
    """The target's on_update or on_unpublish; a value it does not take counts as its default
    (the follow-up is the network's business; a bad setting pauses the next send, not this)."""
    try:
        return str(adapter.setting(name))
    except TargetBroken:
        return str(adapter.spec(name).default)


# --- asking --------------------------------------------------------------------------------------


def _candidates(post: Post, targets: Sequence[str] | None) -> list[Delivery]:
    article = post.same_as or post
    rows = Delivery.objects.filter(post=article).select_related("target", "post__feed").order_by("pk")
    if targets:
        known = set(Delivery.objects.filter(post=article).values_list("target__name", flat=True))
        if unknown := [name for name in targets if name not in known]:
            raise UserError(f"the post was not delivered to {', '.join(unknown)}")
        rows = rows.filter(target__name__in=list(targets))
    return list(rows)


def _ask(delivery: Delivery, action: str, *, by: str) -> bool:
    """Write the follow-up on the delivery (a delete replaces a pending edit; an edit never a
    delete); True when it was written."""
    rows = Delivery.objects.filter(pk=delivery.pk, status__in=FOLLOWABLE)
    if action == Followup.EDIT:
        rows = rows.exclude(followup=Followup.DELETE)
    # A follow-up is due at once; a retry's wait (next_attempt_at) belongs to the one it replaces.
    return bool(rows.update(followup=action, followup_by=by[:150], next_attempt_at=None, enqueued_at=None))


def _send_tasks(deliveries: Iterable[Delivery]) -> None:
    from syndicator.dispatch import enqueue

    # Only the `sent` ones now: a `sending` or `uncertain` one is followed up once it is sent
    # (the sweeper sends its task then); an `editing` one when its edit ends.
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=timezone.now())
    pairs = [
        (d.pk, d.target.kind)
        for d in Delivery.objects.filter(
            due,
            pk__in=[d.pk for d in deliveries],
            status=Status.SENT,
            followup__in=(Followup.EDIT, Followup.DELETE),
        ).select_related("target")
    ]
    if pairs:
        enqueue(pairs)


def post_changed(post: Post) -> int:
    """A stored post's content changed at its source and was saved (post.version bumped).

    Called once per detected change, after the transaction that saved it committed. Each target
    whose policy is on_update=edit and whose network can still edit the post gets an edit, unless
    the change does not alter its rendered text; the others get the reason in their
    followup_note. Returns how many edits were asked for.
    """
    article = post.same_as or post
    article.refresh_from_db()
    asked: list[Delivery] = []
    for delivery in _candidates(article, None):
        if delivery.status not in FOLLOWABLE:
            continue  # not out yet: the send renders the newest version itself
        adapter = get_adapter(delivery.target)
        why = ""
        if problem := cannot(adapter, delivery, Followup.EDIT):
            why = problem
        elif policy(adapter, "on_update") != "edit":
            why = "this target's on_update is ignore"
        elif delivery.status == Status.SENT and not _text_changes(adapter, delivery):
            Delivery.objects.filter(pk=delivery.pk, status=Status.SENT).update(source_version=article.version)
            continue
        if why:
            note = f"the article changed at its source (version {article.version}); not edited here: {why}"
            Delivery.objects.filter(pk=delivery.pk).update(followup_note=note[:5000])
            log.info("delivery %s: %s", delivery.pk, note)
            continue
        if _ask(delivery, Followup.EDIT, by=""):
            asked.append(delivery)
    _send_tasks(asked)
    log.info("post %s changed (version %s): %d edits asked for", article.pk, article.version, len(asked))
    return len(asked)


def _text_changes(adapter: Adapter, delivery: Delivery) -> bool:
    """Whether the article as it is now renders differently from what the network shows."""
    try:
        return adapter.render(delivery).as_log_text() != delivery.rendered_text
    except Exception:  # the worker's render reports it properly; asking costs nothing
        log.warning("delivery %s: re-rendering failed while planning an edit", delivery.pk, exc_info=True)
        return True


def post_unpublished(post: Post, *, reason: str, actor: User | None = None) -> int:
    """A stored post was unpublished at its source (post.unpublished_at/_reason set), for `reason`.

    `actor` is the person who decided it, None when the software did. Called once per
    unpublishing, after the transaction that recorded it committed. What has not gone out is
    cancelled; what is out is deleted where the target's on_unpublish is delete (and its network
    can), else flagged for an editor. Returns how many deletions were asked for.
    """
    article = post.same_as or post
    now = timezone.now()
    by = _person(actor)
    why = f"the article was unpublished at its source: {reason}"
    asked: list[Delivery] = []
    for delivery in _candidates(article, None):
        if delivery.status in NOT_OUT:
            from syndicator import decisions

            decisions.cancel([delivery], by=actor if by else None, reason=why)
            continue
        if delivery.status not in FOLLOWABLE:
            continue
        adapter = get_adapter(delivery.target)
        problem = cannot(adapter, delivery, Followup.DELETE, now=now)
        if policy(adapter, "on_unpublish") == "delete" and not problem:
            if _ask(delivery, Followup.DELETE, by=by):
                asked.append(delivery)
            continue
        if not adapter.abilities().delete:
            # Nothing anyone can take back (a sent email): said, not flagged for an editor.
            stays = f"{why}; it stays: {problem}"
            Delivery.objects.filter(pk=delivery.pk, status__in=FOLLOWABLE).update(followup_note=stays[:5000])
            continue
        if problem:  # past the network's window: an editor may still delete it on the network itself
            why_flag = f"{why}; flagged for an editor, it cannot be deleted from here: {problem}"
        else:
            why_flag = f"{why}; flagged for an editor (on_unpublish is flag)"
        Delivery.objects.filter(pk=delivery.pk, status__in=FOLLOWABLE).update(
            flagged_at=now, followup_note=why_flag[:5000]
        )
    _send_tasks(asked)
    log.info("post %s unpublished (%s): %d deletions asked for", article.pk, reason, len(asked))
    return len(asked)


def _person(actor: User | None) -> str:
    if actor is None or not getattr(actor, "is_authenticated", False):
        return ""
    return str(actor.get_username())


def edit_everywhere(post: Post, *, actor: User | None, targets: Sequence[str] | None = None) -> list[Plan]:
    """An editor's "Update everywhere": re-render the article and edit it on every target (or
    those named) whose network still allows it; the plan says which cannot, and why."""
    return _everywhere(post, Followup.EDIT, actor=actor, targets=targets, apply=True)


def delete_everywhere(post: Post, *, actor: User | None, targets: Sequence[str] | None = None) -> list[Plan]:
    """An editor's "Delete everywhere": delete the article's post on every target (or those
    named) whose network allows it, and cancel what has not gone out; in the editor's name."""
    return _everywhere(post, Followup.DELETE, actor=actor, targets=targets, apply=True)


def preview(post: Post, action: str, *, targets: Sequence[str] | None = None) -> list[Plan]:
    """What edit_everywhere / delete_everywhere would do, changing nothing (the confirm page)."""
    if action not in (Followup.EDIT, Followup.DELETE):
        raise UserError(f"unknown follow-up {action!r}: edit or delete")
    return _everywhere(post, action, actor=None, targets=targets, apply=False)


def _everywhere(
    post: Post, action: str, *, actor: User | None, targets: Sequence[str] | None, apply: bool
) -> list[Plan]:
    by = _person(actor)
    plans: list[Plan] = []
    asked: list[Delivery] = []
    for delivery in _candidates(post, targets):
        name = delivery.target.name
        if delivery.status in NOT_OUT and action == Followup.DELETE:
            if apply:
                from syndicator import decisions

                decisions.cancel([delivery], by=actor, reason="the editor deleted the article everywhere")
            plans.append(Plan(delivery.pk, name, action, True, "not sent yet: cancelled"))
            continue
        if delivery.status == Status.DELETED:
            plans.append(Plan(delivery.pk, name, action, False, "already deleted"))
            continue
        if delivery.status not in FOLLOWABLE:
            plans.append(Plan(delivery.pk, name, action, False, f"nothing was posted ({delivery.status})"))
            continue
        adapter = get_adapter(delivery.target)
        if problem := cannot(adapter, delivery, action):
            if apply:  # in the delivery's history too, not only in the editor's message
                what = "edit" if action == Followup.EDIT else "delete"
                note = f"{by or 'an editor'} asked to {what} it everywhere; not here: {problem}"
                Delivery.objects.filter(pk=delivery.pk).update(followup_note=note[:5000])
            plans.append(Plan(delivery.pk, name, action, False, problem))
            continue
        if (
            action == Followup.EDIT
            and delivery.status == Status.SENT
            and not _text_changes(adapter, delivery)
        ):
            plans.append(Plan(delivery.pk, name, action, False, "its text would not change"))
            continue
        if action == Followup.EDIT and delivery.followup == Followup.DELETE:
            plans.append(Plan(delivery.pk, name, action, False, "a deletion is already asked for"))
            continue
        if apply and not _ask(delivery, action, by=by):
            plans.append(Plan(delivery.pk, name, action, False, "it changed meanwhile; try again"))
            continue
        asked.append(delivery)
        later = "" if delivery.status == Status.SENT else f"once its {delivery.status} ends"
        plans.append(Plan(delivery.pk, name, action, True, later))
    if apply:
        _send_tasks(asked)
        log.info("post %s: %s everywhere by %s: %d asked", post.pk, action, by or "?", len(asked))
    return plans


# --- the worker's side ---------------------------------------------------------------------------


def claim(delivery_id: int, *, attempts: int | None = None) -> str:
    """Atomically take a sent delivery's due follow-up (to `editing` or `deleting`, under a lease,
    counting an attempt); the action taken, or '' when there is none. A delete goes first.

    ``attempts``: the count read before claiming, so the claim is attempt ``attempts + 1`` and a
    claim answered late is not confused with a newer one (as delivery.claim)."""
    at = clock.now_expr()
    lease = timedelta(seconds=settings.SYNDICATOR_SEND_LEASE)
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=at)
    active = Q(pk__in=Delivery.objects.filter(ACTIVE_TARGET, pk=delivery_id).values("pk"))
    for action, event in ((Followup.DELETE, Event.DELETE), (Followup.EDIT, Event.EDIT)):
        if move(
            delivery_id,
            event,
            where=Q(followup=action) & due & active & (Q() if attempts is None else Q(attempts=attempts)),
            now=at,
            attempts=F("attempts") + 1,
            lease_until=at + lease,
        ):
            return action
    return ""


def run(
    delivery_id: int, action: str, *, number: int | None = None, task_id: str = "", worker: str = ""
) -> DeliveryAttempt | None:
    """Edit or delete the claimed delivery's post on its network and record the outcome.

    ``number``: the attempt the claim made; a delivery read back with another is a newer claim's,
    left alone."""
    from syndicator.delivery import _finish_attempt
    from syndicator.recovery import durably

    delivery = Delivery.objects.select_related("post__feed", "target").get(pk=delivery_id)
    if number is not None and delivery.attempts != number:
        log.warning("delivery %s: %s claim taken back before it began; nothing done", delivery_id, action)
        return None
    started = time.monotonic()
    status = Status.EDITING if action == Followup.EDIT else Status.DELETING
    adapter = get_adapter(delivery.target)
    version = delivery.post.version
    message = None
    before = delivery.rendered_text
    after = ""
    if action == Followup.EDIT:
        try:
            message = adapter.render(delivery)
            after = message.as_log_text()
        except Exception as exc:
            log.exception("delivery %s: rendering the edit failed", delivery_id)
            error: DeliveryError = (
                exc if isinstance(exc, DeliveryError) else PermanentError(f"rendering failed: {exc!r}")
            )
            broken = _open_attempt(delivery, action, status, task_id, worker, before=before, after="")
            if broken is None:
                return None
            return durably(lambda: _failed(delivery, broken, action, error, started))
    attempt = _open_attempt(delivery, action, status, task_id, worker, before=before, after=after)
    if attempt is None:
        return None
    if action == Followup.EDIT and after == before:
        # A burst that ended where it began, or an edit already applied: nothing to send.
        def unchanged() -> DeliveryAttempt:
            now = db_now()
            _finish_attempt(attempt, Outcome.UNCHANGED, started, now)
            _back(delivery, attempt, action, now, source_version=version)
            return attempt

        return durably(unchanged)
    if problem := cannot(adapter, delivery, action):
        refused = EditRefused(problem)
        return durably(lambda: _failed(delivery, attempt, action, refused, started))
    try:
        if action == Followup.EDIT:
            assert message is not None
            result = adapter.edit(message, delivery)
        else:
            adapter.delete(delivery)
            result = None
    except NotImplementedError as exc:  # a network that declares what its adapter cannot do
        gap = PermanentError(f"{adapter.label}: {exc}")
        return durably(lambda: _failed(delivery, attempt, action, gap, started))
    except Exception as exc:
        failure = exc if isinstance(exc, DeliveryError) else OutcomeUnknown(f"unexpected error: {exc!r}")
        if failure is not exc:
            log.exception("delivery %s: unexpected error during %s", delivery_id, action)
        return durably(lambda: _failed(delivery, attempt, action, failure, started))

    def done() -> DeliveryAttempt:
        now = db_now()
        _finish_attempt(attempt, Outcome.SENT, started, now)
        if action == Followup.DELETE:
            decided = (
                f"editor {delivery.followup_by}"
                if delivery.followup_by
                else (f"syndicator: {delivery.post.unpublished_reason or 'the article was unpublished'}")
            )
            moved = move(
                delivery.pk,
                Event.DELETED,
                where=Q(attempts=attempt.number),
                now=now,
                followup="",
                lease_until=None,
                next_attempt_at=None,
                deleted_at=now,
                deleted_by=decided[:300],
                flagged_at=None,
                followup_note="",
            )
            if moved:
                log.info("delivery %s: deleted on %s (%s)", delivery.pk, delivery.target.name, decided)
            return attempt
        assert result is not None
        changes: dict[str, Any] = {"rendered_text": after, "edits": F("edits") + 1, "followup_note": ""}
        if result.external_id:
            changes["external_id"] = result.external_id[:200]
        if result.external_url:
            changes["external_url"] = result.external_url[:2000]
        if result.details:
            changes["sent_details"] = result.details
        if _back(delivery, attempt, action, now, event=Event.EDITED, source_version=version, **changes):
            log.info("delivery %s: edited on %s (version %s)", delivery.pk, delivery.target.name, version)
        return attempt

    return durably(done)


def _open_attempt(
    delivery: Delivery, action: str, status: str, task_id: str, worker: str, *, before: str, after: str
) -> DeliveryAttempt | None:
    """The follow-up's attempt row, if the claim is still ours (as delivery._claim_and_log)."""
    from django.db import transaction

    now = db_now()
    lease = timedelta(seconds=settings.SYNDICATOR_SEND_LEASE)
    with transaction.atomic():
        mine = Delivery.objects.filter(pk=delivery.pk, status=status, attempts=delivery.attempts)
        if not mine.update(lease_until=now + lease):
            log.warning("delivery %s: %s claim taken back; nothing done", delivery.pk, action)
            return None
        return DeliveryAttempt.objects.create(
            delivery=delivery,
            number=delivery.attempts,
            kind=Kind.EDIT if action == Followup.EDIT else Kind.DELETE,
            worker=worker[:200],
            task_id=task_id[:200],
            started_at=now,
            actor_name=delivery.followup_by,
            text_before=before if action == Followup.EDIT else "",
            text_after=after,
        )


def _back(
    delivery: Delivery,
    attempt: DeliveryAttempt,
    action: str,
    now: datetime,
    *,
    event: Event = Event.FOLLOWUP_BACK,
    keep: bool = False,
    source_version: int | None = None,
    **changes: Any,
) -> int:
    """Move the delivery back to `sent` (``event``), the follow-up done unless ``keep``; an edit
    asked for while this one ran (a newer version of the article) is kept and its task sent."""
    if source_version is not None:
        changes["source_version"] = source_version
    followup: dict[str, Any] = {} if keep else {"followup": ""}
    moved = move(
        delivery.pk,
        event,
        where=Q(attempts=attempt.number, followup=action) if not keep else Q(attempts=attempt.number),
        now=now,
        lease_until=None,
        **followup,
        **changes,
    )
    if not moved:
        # A delete asked for meanwhile replaced the edit: back to sent with it pending.
        moved = move(
            delivery.pk, event, where=Q(attempts=attempt.number), now=now, lease_until=None, **changes
        )
    if moved and not keep and action == Followup.EDIT and source_version is not None:
        # An edit of a newer version asked for while this one ran was written on the row before
        # the move above cleared it (post_changed runs after the version's commit): ask again.
        newest = Post.objects.filter(pk=delivery.post_id).values_list("version", flat=True).first()
        if newest is not None and newest > source_version:
            Delivery.objects.filter(pk=delivery.pk, status=Status.SENT, followup="").update(
                followup=Followup.EDIT
            )
    if moved:
        _send_tasks([delivery])
    return moved


def _failed(
    delivery: Delivery, attempt: DeliveryAttempt, action: str, exc: DeliveryError, started: float
) -> DeliveryAttempt:
    """Record a follow-up that did not happen: refused or permanent → back to `sent` with the
    reason shown; transient, a rate limit or no answer → tried again by the one retry policy
    (both are safe to repeat), until it gives up; a broken target pauses it and waits."""
    from syndicator.decisions import pause_target
    from syndicator.delivery import _finish_attempt, _outcome, retry_delay

    now = db_now()
    message = redact(f"{type(exc).__name__}: {exc}")
    outcome: str
    if isinstance(exc, EditRefused):
        outcome = Outcome.REFUSED
    elif isinstance(exc, OutcomeUnknown):
        outcome = Outcome.TRANSIENT  # an edit or delete whose answer was lost is simply repeated
    else:
        outcome = _outcome(exc)
    _finish_attempt(attempt, outcome, started, now, exc)
    what = "edit" if action == Followup.EDIT else "delete"
    if isinstance(exc, TargetBroken):
        pause_target(delivery.target, message)
        _back(delivery, attempt, action, now, keep=True, followup_note=f"{what} waits: {message}"[:5000])
    elif isinstance(exc, PermanentError):
        note = f"not {what}ed: {message}" if action == Followup.EDIT else f"not deleted: {message}"
        _back(delivery, attempt, action, now, followup_note=note[:5000])
    else:
        failures = _failures(delivery, action)
        delay = retry_delay(failures, getattr(exc, "retry_after", None))
        if delay is None:
            note = f"{what} gave up after {failures} attempts; last: {message}"
            _back(delivery, attempt, action, now, followup_note=note[:5000])
        else:
            _back(
                delivery,
                attempt,
                action,
                now,
                keep=True,
                next_attempt_at=now + timedelta(seconds=delay),
                enqueued_at=None,  # the sweeper sends its task when it is due
                followup_note=f"{what} to be tried again: {message}"[:5000],
            )
    log.warning(
        "delivery %s to %s: %s attempt %s %s: %s",
        delivery.pk,
        delivery.target.name,
        what,
        attempt.number,
        outcome,
        message,
    )
    return attempt


def _failures(delivery: Delivery, action: str) -> int:
    """This follow-up's failed attempts since the delivery's last success of any kind (rate limits
    do not count, as for sends)."""
    kind = Kind.EDIT if action == Followup.EDIT else Kind.DELETE
    attempts = DeliveryAttempt.objects.filter(delivery=delivery)
    last_ok = attempts.filter(outcome__in=(Outcome.SENT, Outcome.UNCHANGED)).order_by("-number").first()
    since = last_ok.number if last_ok else 0
    return (
        attempts.filter(kind=kind, number__gt=since)
        .exclude(outcome__in=(Outcome.RATE_LIMITED, Outcome.SENT, Outcome.UNCHANGED, ""))
        .count()
    )


# --- the sweeper's side --------------------------------------------------------------------------


def due(now: datetime, not_recently_sent: Q) -> list[tuple[int, str, datetime | None]]:
    """Sent deliveries whose follow-up is due and whose task message may be lost, for the sweeper."""
    return list(
        Delivery.objects.filter(ACTIVE_TARGET, not_recently_sent, status=Status.SENT)
        .filter(followup__in=(Followup.EDIT, Followup.DELETE))
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .order_by("pk")
        .values_list("pk", "target__kind", "enqueued_at")[:BATCH]
    )


def settle_lost(now: datetime) -> int:
    """Follow-ups whose worker was lost (lease expired): back to `sent` with the follow-up still
    asked for, their attempt marked lost; an edit or delete is safe to repeat. How many."""
    lost = list(
        Delivery.objects.filter(status__in=(Status.EDITING, Status.DELETING), lease_until__lt=now)
        .order_by("pk")
        .values_list("pk", "attempts")[:BATCH]
    )
    settled = 0
    for pk, number in lost:
        if move(
            pk,
            Event.LOST_MID_FOLLOWUP,
            where=Q(lease_until__lt=now, attempts=number),
            now=now,
            lease_until=None,
            enqueued_at=None,
            next_attempt_at=None,
        ):
            settled += 1
            DeliveryAttempt.objects.filter(delivery_id=pk, number=number, outcome="").update(
                outcome=Outcome.LOST, finished_at=now, message="the worker was lost; asked for again"
            )
    return settled


def history(delivery: Delivery) -> str:
    """The delivery's life in a few words: "sent, edited 2 times, deleted"."""
    parts = []
    if delivery.sent_at:
        parts.append("sent")
    if delivery.edits:
        parts.append(f"edited {delivery.edits} time{'s' if delivery.edits != 1 else ''}")
    if delivery.status == Status.DELETED:
        parts.append("deleted")
    elif delivery.flagged_at:
        parts.append("flagged")
    return ", ".join(parts) or delivery.status
