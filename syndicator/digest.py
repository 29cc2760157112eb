"""Email digests: one email per subscriber per day (or week) with every post since the last one.

An email target with ``mode=digest`` gets no delivery per post (dispatch.create_auto_deliveries
leaves it out). Instead, at ``digest_at`` in its ``timezone`` (daily, or weekly on
``digest_day``), the sweeper (``due``, every few seconds on beat) makes the period's ``Digest``
row and, when the period has posts, one delivery that carries them all. That delivery is claimed,
sent and recorded like every other (delivery.attempt_delivery: attempt rows, per-recipient
results with their write-ahead "unknown", the one retry policy); only its rendering differs
(``render``). docs/email.md, "Digest", is this module in prose.

Once per period, whatever the race: the row's unique (target, period) is the claim, made in the
transaction that creates the delivery, so two sweepers (or a second tick) make one digest.

The delivery's ``post`` is the digest's first post (the leader): Delivery.post stays non-null, so
every page, count and command that reads it keeps working, and the first post's wait to be sent
is the digest's latency (metrics). The leader is never a post this target already had a delivery
of (a target switched from per_post), so the one automatic delivery per (post, target) holds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, transaction

from syndicator.models import Delivery, Digest, DigestPost, Post, Target
from syndicator.sandbox import time_limit

if TYPE_CHECKING:
    from syndicator.formatting import Message

log = logging.getLogger(__name__)

DIGEST = "digest"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TEMPLATES = ("email_digest.subject.j2", "email_digest.txt.j2", "email_digest.html.j2")
# Posts one digest carries at most: a feed that floods (a backfill gone wrong) still makes an email
# a reader can open; the rest are named in the note, not lost silently.
MAX_POSTS = 200
# Seconds after its instant a digest is made: a poll that stored a post just before it (first_seen_at
# is taken when the row is built) has committed by then, so the post is in this digest, not lost
# between two windows.
SETTLE = 30.0
TEASER = 300  # characters of each post's summary: a digest is a list of headlines, not the articles


_warned: set[tuple[int, str]] = set()


@dataclass(frozen=True)
class Schedule:
    """When a target's digests go out: at ``at`` local time in ``zone``, daily or on ``weekday``."""

    at: tuple[int, int]
    zone: ZoneInfo
    weekday: int | None  # 0 = Monday; None: daily

    def boundary(self, day: date) -> datetime:
        """The instant of ``day``'s digest time, in UTC. A time that does not exist that day (the
        hour the clocks skip) is the one it would have been, an hour later; one that happens twice
        (the hour repeated) is its first (zoneinfo's fold=0)."""
        local = datetime.combine(day, time(*self.at), tzinfo=self.zone)
        return local.astimezone(UTC)

    def latest(self, now: datetime) -> datetime:
        """The last digest instant at or before ``now``."""
        day = now.astimezone(self.zone).date()
        for back in range(8):
            candidate = day - timedelta(days=back)
            if self.weekday is not None and candidate.weekday() != self.weekday:
                continue
            instant = self.boundary(candidate)
            if instant <= now:
                return instant
        raise AssertionError("a week always holds a digest instant")  # pragma: no cover

    def period(self, instant: datetime) -> str:
        """The period a digest instant ends: its local date, or its ISO week when weekly."""
        day = instant.astimezone(self.zone).date()
        if self.weekday is None:
            return day.isoformat()
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"


def schedule(target: Target) -> Schedule | None:
    """The target's digest schedule, or None when it sends one email per post.

    Read through the adapter's typed settings: a bad value (stored before validation, or edited in
    the database) is a TargetBroken at send time like any other; here it means "no digest yet".
    """
    if target.kind != "email":
        return None
    from syndicator.targets.config import SettingError, parse_time_of_day
    from syndicator.targets.registry import network

    cls = network(target.kind)
    try:
        if cls.spec("mode").parse(target.settings.get("mode")) != DIGEST:
            return None
        at = parse_time_of_day(cls.spec("digest_at").parse(target.settings.get("digest_at")))
        day = cls.spec("digest_day").parse(target.settings.get("digest_day"))
        zone = ZoneInfo(cls.spec("timezone").parse(target.settings.get("timezone")) or "UTC")
    except (SettingError, ValueError) as exc:
        # Once per process and target: the sweeper asks every few seconds. The forms refuse such a
        # value; it can only come from an edit in the database.
        if (target.pk, str(exc)) not in _warned:
            _warned.add((target.pk, str(exc)))
            log.warning("email target %s: digest settings unusable, no digest: %s", target.name, exc)
        return None
    return Schedule(at=at, zone=zone, weekday=WEEKDAYS.index(day) if day else None)


def is_digest(target: Target) -> bool:
    """Whether posts reach this target in a digest, not one by one (even while its schedule is
    unusable: a digest list never falls back to mailing each post)."""
    return target.kind == "email" and target.settings.get("mode") == DIGEST


def of(delivery: Delivery) -> Digest | None:
    """The digest a delivery carries, or None for a post's own delivery.

    No query for the usual case: a digest's delivery is always ``unpaced`` (its schedule is its
    pacing), so a per-post target's delivery that is not asks nothing of the database.
    """
    if delivery.target.settings.get("mode") != DIGEST and not delivery.unpaced:
        return None
    try:
        return delivery.digest  # cached on the instance by Django, None included
    except Digest.DoesNotExist:
        return None


# --- making the period's digest -------------------------------------------------------------------


def due(now: datetime) -> list[Delivery]:
    """Make the digest of every digest-mode target whose time has come and that has none yet for
    that period; the deliveries made, enqueued once committed. Called by delivery.sweep."""
    made: list[Delivery] = []
    for target in Target.objects.filter(enabled=True, kind="email", settings__mode=DIGEST).prefetch_related(
        "feeds"
    ):
        plan = schedule(target)
        if plan is None:
            continue
        instant = plan.latest(now - timedelta(seconds=SETTLE))
        period = plan.period(instant)
        if Digest.objects.filter(target=target, period=period).exists():
            continue  # the usual tick: this period's digest is made (the constraint is the guard)
        delivery = make(target, plan, instant, period)
        if delivery is not None:
            made.append(delivery)
    return made


def next_due(now: datetime) -> datetime | None:
    """When due() next makes a digest: the soonest coming instant of a digest-mode target, plus
    SETTLE; None: no such target. For the scheduler (syndicator/scheduling.py), asked right after
    a sweep, which made every digest already due."""
    after = now - timedelta(seconds=SETTLE)
    soonest: datetime | None = None
    for target in Target.objects.filter(enabled=True, kind="email", settings__mode=DIGEST):
        plan = schedule(target)
        if plan is None:
            continue
        day = after.astimezone(plan.zone).date()
        for ahead in range(9):
            candidate = day + timedelta(days=ahead)
            instant = plan.boundary(candidate)
            if (plan.weekday is None or candidate.weekday() == plan.weekday) and instant > after:
                made_at = instant + timedelta(seconds=SETTLE)
                soonest = made_at if soonest is None else min(soonest, made_at)
                break
    return soonest


def window_start(target: Target) -> datetime:
    """Where the next digest's posts begin: the end of the last digest, or the target's creation."""
    last = Digest.objects.filter(target=target).order_by("-window_end").values_list("window_end", flat=True)
    return last.first() or target.created_at


def make(target: Target, plan: Schedule, instant: datetime, period: str) -> Delivery | None:
    """The period's Digest row and, if it has posts, its delivery; None when another sweeper made
    it first, or when it has nothing to send (the row says so)."""
    from syndicator.dispatch import enqueue_on_commit

    start = window_start(target)
    if start >= instant:
        return None  # the target is newer than this period: its first digest is the next one
    posts = select(target, start, instant)
    shown, left_out = posts[:MAX_POSTS], posts[MAX_POSTS:]
    note = "" if shown else f"no posts since {start:%Y-%m-%d %H:%M} UTC: nothing sent"
    if left_out:
        note = f"{len(left_out)} more posts than the {MAX_POSTS} one digest carries were left out"
    try:
        with transaction.atomic():
            digest = Digest.objects.create(
                target=target, period=period, window_start=start, window_end=instant, note=note
            )
            DigestPost.objects.bulk_create(
                DigestPost(digest=digest, post=post, position=n) for n, post in enumerate(shown)
            )
            if not shown:
                log.info("digest %s of %s: %s", period, target.name, note)
                return None
            delivery = Delivery.objects.create(
                post=shown[0], target=target, origin=Delivery.Origin.AUTO, unpaced=True
            )
            Digest.objects.filter(pk=digest.pk).update(delivery=delivery)
            enqueue_on_commit([delivery])
    except IntegrityError:  # another sweeper made this period's digest first: it is that one
        return None
    log.info("digest %s of %s: %d posts, delivery %s", period, target.name, len(shown), delivery.pk)
    return delivery


def select(target: Target, start: datetime, end: datetime) -> list[Post]:
    """The posts of a digest: first seen in [start, end), passing the target's filters, neither
    unpublished nor stale nor a sighting, nor already delivered to this target; oldest first."""
    from syndicator.dispatch import feeds_seen, target_matches

    candidates = (
        Post.objects.filter(first_seen_at__gte=start, first_seen_at__lt=end, same_as__isnull=True)
        .filter(unpublished_at__isnull=True)
        .exclude(deliveries__target=target)
        .select_related("feed")
        .order_by("first_seen_at", "id")
    )
    max_age = _max_age(target)
    chosen = []
    for post in candidates:
        if (
            max_age
            and post.published_at
            and (post.first_seen_at - post.published_at).total_seconds() > max_age
        ):
            continue  # an old article surfacing in a feed, as pacing would skip its own delivery
        if target_matches(target, post, feeds_seen(post)):
            chosen.append(post)
    return sorted(chosen, key=lambda p: (p.published_at or p.first_seen_at, p.first_seen_at, p.pk))


def _max_age(target: Target) -> float:
    from syndicator.targets.config import SettingError
    from syndicator.targets.registry import network

    try:
        own = network(target.kind).spec("max_age").parse(target.settings.get("max_age"))
    except SettingError:
        own = None
    return float(own or settings.SYNDICATOR_MAX_AGE or 0)


# --- the email -----------------------------------------------------------------------------------


def render(digest: Digest, target: Target) -> Message:
    """The digest's Message: a subject, a plain text and an HTML page, one section per edition."""
    posts = [entry.post for entry in DigestPost.objects.filter(digest=digest).select_related("post__feed")]
    plan = schedule(target)
    day = digest.window_end.astimezone(plan.zone if plan else UTC).date()
    return compose(posts, target, period=digest.period, day=day)


@time_limit  # one deadline for the whole digest's templates (syndicator.sandbox)
def compose(posts: list[Post], target: Target, *, period: str, day: date) -> Message:
    """Render the digest templates (each of which a target may override, as the post's own)."""
    from syndicator.formatting import RTL_LANGUAGES, Message, _context, _rules, template_renderer
    from syndicator.targets.email.text import SUBJECT_MAX
    from syndicator.textrules import mark_rtl_lines, truncate

    rules = _rules("email")
    options = target.settings or {}
    items = [_context(post, "email", rules, options) for post in posts]
    editions: list[dict[str, Any]] = []
    for item in items:  # one section per language, in the order their first posts come
        language = item["language"].split("-")[0].lower()
        section = next((e for e in editions if e["key"] == language), None)
        if section is None:
            rtl = language in RTL_LANGUAGES
            section = {"key": language, "language": item["language"], "posts": []}
            section["direction"] = "rtl" if rtl else "ltr"
            editions.append(section)
        item["summary"] = truncate(" ".join(item["summary"].split()), TEASER)
        # The plain text has no dir attribute: right-to-left lines carry RLM marks, as a post's own.
        rtl_item = section["direction"] == "rtl" or item["direction"] == "rtl"
        item["title_text"] = mark_rtl_lines(item["title"]) if rtl_item else item["title"]
        item["summary_text"] = mark_rtl_lines(item["summary"]) if rtl_item else item["summary"]
        section["posts"].append(item)
    only = editions[0] if len(editions) == 1 else None
    ctx = {
        "editions": editions,
        "posts": items,
        "count": len(items),
        "period": period,
        "weekly": "-W" in period,
        "date": day.isoformat(),
        "list_name": options.get("from_name") or target.name,
        "language": only["language"] if only else "",
        "direction": only["direction"] if only else "ltr",
    }
    overrides = target.template_overrides or {}
    subject = template_renderer(TEMPLATES[0], overrides, ctx, mark_rtl=False)({})
    text = template_renderer(TEMPLATES[1], overrides, ctx, mark_rtl=False)({})
    page = template_renderer(TEMPLATES[2], overrides, ctx, mark_rtl=False, tidy=False)({})
    language, direction = (only["language"], only["direction"]) if only else ("", "ltr")
    subject_line = " ".join(subject.split())[:SUBJECT_MAX]
    return Message("email", text, subject=subject_line, html=page, language=language, direction=direction)


def upcoming(target: Target, post: Post) -> str:
    """For a post page: which digest of the target will carry the post ("" if none)."""
    plan = schedule(target)
    if plan is None or post.unpublished_at is not None:
        return ""
    day = post.first_seen_at.astimezone(plan.zone).date()
    for ahead in range(9):
        instant = plan.boundary(day + timedelta(days=ahead))
        weekday_ok = plan.weekday is None or (day + timedelta(days=ahead)).weekday() == plan.weekday
        if weekday_ok and instant > post.first_seen_at:
            local = instant.astimezone(plan.zone)
            return f"in the digest of {plan.period(instant)}, sent {local:%Y-%m-%d %H:%M %Z}"
    return ""


@dataclass(frozen=True)
class PostDigest:
    """For the post page: a digest target's digest that carried the post, or will."""

    target: Target
    says: str
    delivery: Delivery | None = None


def for_post(post: Post) -> list[PostDigest]:
    """Each digest target's word on a post: "in the digest of 2026-12-03" (with its delivery) or
    "in the digest of 2026-12-03, sent 2026-12-03 07:00 CET" before it goes; none for a target
    whose filters leave the post out, or whose digests began after it."""
    from syndicator.dispatch import feeds_seen, target_matches

    carried = {
        d.target_id: d for d in Digest.objects.filter(entries__post=post).select_related("target", "delivery")
    }
    found: list[PostDigest] = []
    for target in Target.objects.filter(kind="email", settings__mode=DIGEST).prefetch_related("feeds"):
        if (done := carried.get(target.pk)) is not None:
            found.append(PostDigest(target, f"in the digest of {done.period}", done.delivery))
        elif target.enabled and post.first_seen_at >= window_start(target):
            says = upcoming(target, post)
            if says and post.same_as_id is None and target_matches(target, post, feeds_seen(post)):
                found.append(PostDigest(target, says))
    return found
