"""The queue (#13 item 7): what will go out, target by target, in order, with time and reason;
and an editor's send now, reschedule and cancel (cancel is syndicator.decisions.cancel).

Each decision is a verdict attempt naming the person, as in syndicator/decisions.py, and a status
move of the one table (Event.RESCHEDULE: queued or retrying → queued, with a new time).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.db.models import F, QuerySet

from syndicator import dispatch, pacing
from syndicator.clock import current
from syndicator.decisions import Actor, _actor, _credit, _verdict
from syndicator.delivery_states import Event, move
from syndicator.errors import UserError
from syndicator.models import Delivery, DeliveryAttempt, Target

Status = Delivery.Status
WAITING = (Status.QUEUED, Status.RETRYING)


@dataclass(frozen=True)
class Entry:
    """One delivery in the queue."""

    delivery: Delivery
    at: datetime | None  # None: as soon as a worker takes it
    reason: str  # Delivery.Wait, "" when it is not held

    def as_json(self) -> dict:
        d = self.delivery
        return {
            "delivery": d.pk,
            "target": d.target.name,
            "post": d.post_id,
            "title": d.post.title,
            "status": d.status,
            "at": self.at.isoformat() if self.at else None,
            "reason": self.reason or "next",
            "breaking": d.breaking,
            "origin": d.origin,
        }


def waiting(target: str | None = None) -> QuerySet[Delivery]:
    """The deliveries that will go out, per target in order: breaking first, then by time, then
    publishing order."""
    rows = Delivery.objects.filter(status__in=WAITING).select_related("post", "target")
    if target:
        rows = rows.filter(target__name=target)
    return rows.order_by(
        "target__name",
        F("breaking").desc(),
        F("next_attempt_at").asc(nulls_first=True),
        F("post__published_at").asc(nulls_last=True),
        "pk",
    )


def entries(target: str | None = None) -> list[Entry]:
    return [Entry(d, d.next_attempt_at, d.wait_reason) for d in waiting(target)]


def reschedule(deliveries: Iterable[Delivery], at: datetime | None, *, by: Actor = None) -> int:
    """Give waiting deliveries a new time (``at``), or send them now (None: past the target's
    spacing, quiet hours and daily limit, never a network's hard limit). Logged in the person's name."""
    ids = [d.pk for d in deliveries]
    now = current()
    name = _actor(by)[1]
    moved: list[Delivery] = []
    with transaction.atomic():
        rows = list(
            Delivery.objects.select_for_update(of=("self",))
            .select_related("target")
            .filter(pk__in=ids, status__in=WAITING)
            .order_by("pk")
        )
        for d in rows:
            number = d.attempts + 1
            changes = (
                {"next_attempt_at": None, "wait_reason": "", "unpaced": True}
                if at is None
                else {"next_attempt_at": at, "wait_reason": Delivery.Wait.SCHEDULED, "unpaced": False}
            )
            if move(d.pk, Event.RESCHEDULE, now=now, attempts=number, enqueued_at=None, **changes):
                what = "sent now" if at is None else f"rescheduled for {at.isoformat()}"
                _verdict(
                    d,
                    number,
                    DeliveryAttempt.Outcome.RESCHEDULED,
                    by,
                    _credit(f"{what} (was {d.status})", name),
                    now,
                )
                moved.append(d)
        for target_id in {d.target_id for d in moved}:
            # Their old slots free up; a rescheduled one reserves anew when it comes due.
            freed = [d.pk for d in moved if d.target_id == target_id]
            transaction.on_commit(partial(pacing.release, freed, target_id))
        if at is None:
            dispatch.enqueue_on_commit(moved)
    return len(moved)


@dataclass(frozen=True)
class Group:
    """One target's part of the queue page."""

    target: Target
    zone: str  # the zone the page shows and reads times in
    rows: list[tuple[Entry, str]]  # each entry with its time in that zone ("": next)


def zone_of(target: Target) -> str:
    return str(target.settings.get("timezone") or settings.TIME_ZONE)


def by_target() -> list[Group]:
    groups: dict[int, Group] = {}
    for entry in entries():
        target = entry.delivery.target
        zone = zone_of(target)
        group = groups.setdefault(target.pk, Group(target, zone, []))
        # Formatted here: a template's date filter would show it in the site's zone instead.
        local = entry.at.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M") if entry.at else ""
        group.rows.append((entry, local))
    return list(groups.values())


def act_from_form(form: Any, *, by: Actor, notify: Callable[[str], None]) -> None:
    """The queue page's buttons: send now, reschedule (a local time in the target's zone), cancel."""
    from syndicator.decisions import cancel

    try:
        delivery = Delivery.objects.select_related("target").get(pk=int(form.get("delivery", "")))
    except (ValueError, Delivery.DoesNotExist):
        notify("no such delivery")
        return
    action = form.get("action")
    if action == "cancel":
        done = cancel([delivery], by=by)
        if done:
            pacing.release([delivery.pk], delivery.target_id)
        notify(f"delivery {delivery.pk} cancelled" if done else f"delivery {delivery.pk} has already left")
    elif action == "send_now":
        done = reschedule([delivery], None, by=by)
        notify(
            f"delivery {delivery.pk} goes now (within the network's limits)"
            if done
            else "it has already left"
        )
    elif action == "reschedule":
        try:
            local = datetime.fromisoformat(str(form.get("at", "")))
        except ValueError:
            notify("pick a date and time to reschedule")
            return
        at = (local if local.tzinfo else local.replace(tzinfo=ZoneInfo(zone_of(delivery.target)))).astimezone(
            UTC
        )
        done = reschedule([delivery], at, by=by)
        notify(f"delivery {delivery.pk} rescheduled" if done else f"delivery {delivery.pk} has already left")
    else:
        notify("unknown action")


def scheduled_time(value: datetime | str, target: Target) -> datetime:
    """An editor's chosen time as an aware UTC time: an offset it carries wins, else it is read in
    the target's ``timezone`` setting, else in the site's TIME_ZONE (the CLI, the API, the page)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise UserError(f"{value!r}: a time such as 2026-12-03T08:00") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(zone_of(target)))
    return value.astimezone(UTC)
