"""What the start page shows: per-target counts, the latest posts, what needs attention, liveness.

Counts are by creation time, as the delivery log's date filter is (syndicator/admin/filters.py),
so each number links to a filtered log that lists exactly those deliveries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Count, Prefetch, Q
from django.urls import reverse
from django.utils import timezone

from syndicator.health import feed_health, target_health
from syndicator.models import Delivery, Feed, Heartbeat, Post, Target

Status = Delivery.Status
WAITING = (Status.QUEUED, Status.RETRYING, Status.SENDING)
COUNTED = (Status.SENT, Status.FAILED, Status.UNCERTAIN)
LATEST_POSTS = 10
WORKER = "worker"
# A heartbeat older than this many intervals: the worker (or beat) is presumed down.
HEARTBEAT_STALE_AFTER = 3


def log_url(**params: object) -> str:
    """The delivery log filtered by these query parameters (the admin's own filter names)."""
    return reverse("admin:syndicator_delivery_changelist") + "?" + urlencode(params)


@dataclass
class Cell:
    """A count and the filtered log that lists exactly those deliveries."""

    value: int
    url: str


@dataclass
class TargetRow:
    """One target's line: today's and the past 7 days' counts, and what waits now and why."""

    target: Target
    today: dict[str, Cell]
    week: dict[str, Cell]
    waiting: Cell
    why: str


@dataclass
class Attention:
    """A feed or target that needs a person: what is wrong and what to do."""

    what: str  # "feed" or "target"
    name: str
    state: str
    reason: str
    action: str
    url: str


@dataclass
class Liveness:
    """For admins: the oldest waiting delivery and the worker's last heartbeat."""

    oldest: Delivery | None
    oldest_age: timedelta | None
    beat: Heartbeat | None
    beat_age: timedelta | None
    worker_ok: bool
    worker_note: str

    @property
    def oldest_for(self) -> str:
        """How long the oldest waiting delivery has waited, in words."""
        return age(self.oldest_age) if self.oldest_age is not None else ""


@dataclass
class Desk:
    rows: list[TargetRow]
    posts: list[Post]
    attention: list[Attention] = field(default_factory=list)
    liveness: Liveness | None = None


# The delivery log's presets (syndicator/admin/filters.py PRESETS): days before today they begin.
PERIOD_DAYS = {"today": 0, "7d": 6}


def period_start(period: str, now: datetime | None = None) -> datetime:
    """Local midnight that begins a log preset ("today", "7d"), as the log's date filter counts."""
    day = timezone.localdate(now) - timedelta(days=PERIOD_DAYS[period])
    return timezone.make_aware(datetime.combine(day, time.min))


def target_rows(now: datetime | None = None) -> list[TargetRow]:
    """Every target with its counts; one query for the counts, one for the targets.

    The counts read only the past 7 days' deliveries and those still waiting (an index range on
    created_at or status each), not a year of the log: the page is every editor's first.
    """
    starts = {period: period_start(period, now) for period in ("today", "7d")}
    aggregates = {
        f"{period}_{status}": Count("id", filter=Q(status=status, created_at__gte=start))
        for period, start in starts.items()
        for status in COUNTED
    }
    aggregates["waiting"] = Count("id", filter=Q(status__in=WAITING))
    counted = Delivery.objects.filter(Q(created_at__gte=min(starts.values())) | Q(status__in=WAITING))
    by_target = counted.values("target_id").annotate(**aggregates).order_by()
    counts: dict[int, dict[str, int]] = {}
    for row in by_target:
        values: dict[str, Any] = dict(row)
        counts[int(values.pop("target_id"))] = values
    rows = []
    for target in Target.objects.order_by("name"):
        mine: dict[str, int] = counts.get(target.pk, {})

        def cell(period: str, status: str, target: Target = target, mine: dict[str, int] = mine) -> Cell:
            url = log_url(target__id__exact=target.pk, status__exact=status, period=period)
            return Cell(mine.get(f"{period}_{status}", 0), url)

        waiting = Cell(
            mine.get("waiting", 0), log_url(target__id__exact=target.pk, status__in=",".join(WAITING))
        )
        rows.append(
            TargetRow(
                target=target,
                today={s: cell("today", s) for s in COUNTED},
                week={s: cell("7d", s) for s in COUNTED},
                waiting=waiting,
                why=waiting_reason(target) if waiting.value else "",
            )
        )
    return rows


def waiting_reason(target: Target) -> str:
    """Why a target's deliveries wait: paused, switched off, retrying after an error, or in line."""
    if not target.enabled:
        return "the target is switched off"
    if target.paused_at:
        return f"the target is paused: {target.paused_reason or 'by an admin'}"
    by_status = dict(
        Delivery.objects.filter(target=target, status__in=WAITING)
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    parts = []
    if by_status.get(Status.RETRYING):
        retry = (
            Delivery.objects.filter(target=target, status=Status.RETRYING)
            .order_by("next_attempt_at")
            .only("next_attempt_at", "last_error")
            .first()
        )
        if retry is not None:  # None when it has moved on since the count
            when = (
                f", next at {timezone.localtime(retry.next_attempt_at):%H:%M}"
                if retry.next_attempt_at
                else ""
            )
            parts.append(
                f"{by_status[Status.RETRYING]} retrying after an error{when}: {retry.last_error[:120]}"
            )
    if by_status.get(Status.SENDING):
        parts.append(f"{by_status[Status.SENDING]} being sent now")
    if by_status.get(Status.QUEUED):
        parts.append(f"{by_status[Status.QUEUED]} queued for a worker")
    return "; ".join(parts)


def latest_posts(limit: int = LATEST_POSTS) -> list[Post]:
    """The newest posts, each with ``latest``: the newest delivery per target."""
    newest_first = Delivery.objects.select_related("target").order_by("target__name", "-created_at")
    posts = list(
        Post.objects.select_related("feed")
        .prefetch_related(Prefetch("deliveries", queryset=newest_first))
        .order_by("-first_seen_at", "-id")[:limit]
    )
    for post in posts:
        latest: dict[int, Delivery] = {}
        for delivery in post.deliveries.all():
            latest.setdefault(delivery.target_id, delivery)
        post.latest = list(latest.values())  # type: ignore[attr-defined]  # for the page only, not a field
    return posts


FEED_ACTIONS = {
    "failing": "check the feed's URL and error, then Poll now",
    "warning": "watch it: the next poll may succeed; Poll now to try",
}
TARGET_ACTIONS = {
    "paused": "fix the cause (token, settings, the network's answer), then Resume",
    "failing": "check the target's settings and its secret; the log shows each error",
    "warning": "review its failed and uncertain deliveries: retry or mark them",
}


def attention() -> list[Attention]:
    """Feeds and targets that are failing, paused or have deliveries waiting on a person."""
    items = []
    for feed in Feed.objects.filter(enabled=True, consecutive_failures__gt=0).order_by(
        "-consecutive_failures"
    ):
        health = feed_health(feed)
        if health.state in FEED_ACTIONS:
            url = reverse("admin:syndicator_feed_change", args=[feed.pk])
            items.append(
                Attention("feed", str(feed), health.state, health.reason, FEED_ACTIONS[health.state], url)
            )
    for target in Target.objects.filter(enabled=True).order_by("name"):
        health = target_health(target)
        if health.state not in TARGET_ACTIONS:
            continue
        url = reverse("admin:syndicator_target_change", args=[target.pk])
        if health.state == "warning":
            url = log_url(target__id__exact=target.pk, status__in="failed,uncertain")
        items.append(
            Attention("target", target.name, health.state, health.reason, TARGET_ACTIONS[health.state], url)
        )
    return items


def record_heartbeat(hostname: str, now: datetime | None = None) -> datetime:
    """Write the worker's heartbeat (one row, updated in place)."""
    moment = now or timezone.now()
    Heartbeat.objects.update_or_create(name=WORKER, defaults={"beat_at": moment, "hostname": hostname[:200]})
    return moment


def liveness(now: datetime | None = None) -> Liveness:
    """The oldest delivery still waiting and how long ago a worker last beat."""
    now = now or timezone.now()
    oldest = (
        Delivery.objects.filter(status__in=(Status.QUEUED, Status.RETRYING))
        .select_related("target", "post")
        .order_by("created_at", "id")
        .first()
    )
    beat = Heartbeat.objects.filter(name=WORKER).first()
    beat_age = now - beat.beat_at if beat else None
    stale = timedelta(seconds=settings.SYNDICATOR_HEARTBEAT_INTERVAL * HEARTBEAT_STALE_AFTER)
    if beat is None or beat_age is None:  # both or neither
        ok, note = (
            False,
            "no worker has reported yet: is `celery worker --beat` (or `syndicator run`) running?",
        )
    elif beat_age > stale:
        ok, note = False, f"no heartbeat for {age(beat_age)}: the worker or beat may be down"
    else:
        ok, note = True, f"running ({beat.hostname or 'a worker'}, {age(beat_age)} ago)"
    return Liveness(oldest, now - oldest.created_at if oldest else None, beat, beat_age, ok, note)


def build(*, admin: bool, now: datetime | None = None) -> Desk:
    """Everything on the start page; liveness only for admins."""
    return Desk(
        rows=target_rows(now),
        posts=latest_posts(),
        attention=attention(),
        liveness=liveness(now) if admin else None,
    )


def age(span: timedelta) -> str:
    seconds = max(0, int(span.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"
