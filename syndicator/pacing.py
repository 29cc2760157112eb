"""Pacing: spacing, daily budgets, quiet hours and networks' hard limits, shared by every worker.

Called once per send, on the delivery as the worker read it, right before the claim
(delivery.attempt_delivery): ``held`` either lets the delivery go, gives it the time it will go and
why (Event.WAIT: `queued`, ``next_attempt_at``, ``wait_reason``; the sweeper re-enqueues it once
due), or skips an automatic delivery of an article older than the target's ``max_age``
(Event.TOO_OLD). Both are compare-and-sets on the attempt count read, so a delivery another
worker claimed meanwhile is left alone. docs/pacing.md is this module in prose.

The limiter lives in Redis (the embedded default always has one; SYNDICATOR_PACING_REDIS_URL), so
all worker processes on all machines share it, unlike Celery's per-worker ``rate_limit``:

- a target's own rules (``min_interval``, ``daily_limit``, ``quiet_hours`` in its ``timezone``)
  *reserve* a slot: under a per-target Redis lock, the delivery gets the first time that keeps
  every rule, recorded in the target's sorted set of slots (member: the delivery id, so a delivery
  that comes back at its slot finds its reservation). Reservations are made in the order the
  deliveries are read, which is publishing order (one batch message per target: dispatch.py);
- a network's hard limits (``Adapter.pacing.rate_limits``, and the daily budget of the target's
  tier) are sliding windows checked and taken at send time by one Lua script over all the scopes
  (per account, per chat): either every window has room and each records the send, or none does
  and the script says when the fullest one frees up.

Cost: a target with no pacing setting and a network that declares no limit costs nothing here
(no SQL, no Redis). A paced target reads the database's clock once (the one delivery clock,
syndicator/clock.py); a network's limits alone cost one Redis call and no SQL (the Lua script
reads Redis's own clock). A delivery that has to wait costs one UPDATE, and its send is not made.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Q
from django.utils import timezone as django_timezone

from syndicator import clock
from syndicator.delivery_states import Event, move
from syndicator.models import Delivery, Target
from syndicator.targets.config import NO_PACING, Pacing, RateLimit, SettingError, parse_span
from syndicator.targets.registry import network as adapter_class

log = logging.getLogger(__name__)

Wait = Delivery.Wait
DAY = 86400.0
LOCK_WAIT = 10.0  # seconds a reservation waits for its target's lock
LOCK_RETRY = 5.0  # seconds before a delivery that found its target's lock taken tries again
EARLY = 0.5  # seconds: a delivery back this close to its slot takes it (clock granularity)

# One call: check every window, then take a place in all of them or in none.
# KEYS: one sorted set per scope; ARGV: now ("" = Redis's clock), member, then count, seconds per key.
# Returns -1 when every window had room, else the epoch seconds when the fullest frees a place.
_WINDOWS_LUA = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local member = ARGV[2]
local free_at = -1
for i, key in ipairs(KEYS) do
  local count = tonumber(ARGV[1 + 2 * i])
  local seconds = tonumber(ARGV[2 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - seconds)
  local n = redis.call('ZCARD', key)
  if n >= count then
    local oldest = redis.call('ZRANGE', key, n - count, n - count, 'WITHSCORES')
    local at = tonumber(oldest[2]) + seconds
    if at > free_at then free_at = at end
  end
end
if free_at >= 0 then return {tostring(free_at), tostring(now)} end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, member)
  redis.call('EXPIRE', key, math.ceil(tonumber(ARGV[2 + 2 * i])) + 60)
end
return {'-1', tostring(now)}
"""

_local = threading.local()


@dataclass(frozen=True)
class Rules:
    """A target's own pacing settings, typed (None: not set)."""

    min_interval: float
    daily_limit: int | None
    quiet: tuple[tuple[int, int], tuple[int, int]] | None
    zone: ZoneInfo
    breaking_categories: frozenset[str]
    max_age: float | None  # None: SYNDICATOR_MAX_AGE

    @property
    def paces(self) -> bool:
        return bool(self.min_interval or self.daily_limit or self.quiet)


def rules(target: Target) -> Rules:
    """The target's pacing settings, parsed by the network's declared ``Setting``s."""
    cls = adapter_class(target.kind)

    def value(name: str) -> Any:
        try:
            return cls.spec(name).parse(target.settings.get(name))
        except (KeyError, SettingError):
            return None

    span = value("quiet_hours")
    return Rules(
        min_interval=float(value("min_interval") or 0),
        daily_limit=value("daily_limit"),
        quiet=parse_span(span) if span else None,
        zone=ZoneInfo(value("timezone") or "UTC"),
        breaking_categories=frozenset(c.casefold() for c in value("breaking_categories") or ()),
        max_age=value("max_age"),
    )


def network_limits(target: Target) -> list[tuple[str, RateLimit]]:
    """The network's hard limits for this target, each with the Redis key of its scope."""
    cls = adapter_class(target.kind)
    declared: Pacing = getattr(cls, "pacing", NO_PACING)
    limits = list(declared.rate_limits)
    daily = declared.daily_limit
    if declared.daily_limit_by_tier:
        tier = target.settings.get("tier") or next(iter(declared.daily_limit_by_tier))
        daily = declared.daily_limit_by_tier.get(tier, daily)
    if daily:
        limits.append(RateLimit("account", daily, DAY, "the network's daily budget"))
    # The account is the credential (its environment variable's name, never the secret itself).
    account = target.secret_env or next(
        (str(v) for k, v in sorted(target.settings.items()) if k.endswith("_env") and v),
        f"target-{target.pk}",
    )
    scopes = {
        "account": f"{target.kind}:account:{account}",
        "chat": f"{target.kind}:account:{account}:chat:{target.settings.get('chat_id', '')}",
        "target": f"{target.kind}:target:{target.pk}",
    }
    return [(f"{_prefix()}net:{scopes[lim.per]}:{lim.count}/{lim.seconds:g}", lim) for lim in limits]


def is_breaking(delivery: Delivery, target_rules: Rules) -> bool:
    """The breaking lane: marked by an editor, or in one of the target's breaking categories."""
    if delivery.breaking or delivery.unpaced:
        return True
    wanted = target_rules.breaking_categories
    return bool(wanted) and any(c.casefold() in wanted for c in delivery.post.categories)


# --- the gate -------------------------------------------------------------------------------------


def held(delivery: Delivery) -> bool:
    """Hold a delivery about to be claimed back (wait or skip) when it may not go now; False to
    send it.

    The delivery is as this worker read it (`queued` or `retrying`, due); a held one is moved on by
    one UPDATE and not claimed. A place taken in a network's window by a delivery whose claim then
    fails (a duplicate message another worker claimed first) is counted as a send: the limit is
    kept on the safe side.
    A limiter that cannot be reached lets the delivery go (logged): a Redis restart must not stop
    every channel, and a network's own 429 still holds it (docs/pacing.md).
    """
    import redis

    try:
        return _held(delivery)
    except redis.exceptions.LockError:
        # The target's lock stayed taken (another worker reserving, or one that died holding it,
        # until its 10 s timeout): try again shortly rather than send past the target's rules.
        return _wait(delivery, clock.current() + timedelta(seconds=LOCK_RETRY), Wait.PACING)
    except redis_errors() as exc:
        log.warning("pacing limiter unreachable, delivery %s sent unpaced: %s", delivery.pk, exc)
        return False


def redis_errors() -> tuple[type[Exception], ...]:
    import redis

    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def _held(delivery: Delivery) -> bool:
    target = delivery.target
    target_rules = rules(target) if _has_own_settings(target) else None
    if stale := _stale(delivery, target_rules):
        return _skip(delivery, stale)
    limits = (
        network_limits(target) if getattr(adapter_class(target.kind), "pacing", NO_PACING).declared else []
    )
    paces = target_rules is not None and target_rules.paces
    if not paces and not limits:
        return False
    client = redis_client()
    if client is None:
        _warn_once("no Redis for the pacing limiter (SYNDICATOR_PACING_REDIS_URL): sending unpaced")
        return False
    now: datetime | None = clock.injected_now()
    if paces and target_rules is not None and not is_breaking(delivery, target_rules):
        now = now or clock.current()
        slot, reason = reserve(client, delivery, target_rules, now)
        if slot > now + timedelta(seconds=EARLY):
            return _wait(delivery, slot, reason)
    if limits:
        free_at, redis_now = _take_windows(client, delivery, limits, now)
        if free_at is not None:
            reason = (
                Wait.DAILY_LIMIT
                if max(lim.seconds for _, lim in limits) >= DAY and _daily_full(client, limits, redis_now)
                else Wait.RATE_LIMIT
            )
            base = now or clock.current()
            return _wait(delivery, base + timedelta(seconds=max(free_at - redis_now, 0.001)), reason)
    return False


def _has_own_settings(target: Target) -> bool:
    from syndicator.targets.config import PACING_NAMES

    return any(target.settings.get(name) not in (None, "", []) for name in PACING_NAMES)


def _stale(delivery: Delivery, target_rules: Rules | None) -> str:
    """Why an automatic delivery is too old to send, or "" (an editor's repost always goes)."""
    if delivery.origin != Delivery.Origin.AUTO or delivery.unpaced:
        return ""
    published = delivery.post.published_at
    if published is None:
        return ""
    max_age = target_rules.max_age if target_rules and target_rules.max_age else settings.SYNDICATOR_MAX_AGE
    if not max_age:
        return ""
    # Host time is close enough for a span of hours (and no query); a test's clock wins.
    now = clock.injected_now() or django_timezone.now()
    age = (now - published).total_seconds()
    if age <= max_age:
        return ""
    return (
        f"stale: published {_span(age)} ago, more than max_age {_span(max_age)}; "
        "an editor can still send it by hand (repost)"
    )


def _span(seconds: float) -> str:
    if seconds >= 2 * DAY:
        return f"{seconds / DAY:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min"


def _skip(delivery: Delivery, why: str) -> bool:
    move(
        delivery.pk,
        Event.TOO_OLD,
        where=Q(attempts=delivery.attempts),
        now=clock.now_expr(),
        last_error=why,
        lease_until=None,
        next_attempt_at=None,
        wait_reason="",
    )
    log.info("delivery %s to %s skipped: %s", delivery.pk, delivery.target.name, why)
    return True


def _wait(delivery: Delivery, until: datetime, reason: str) -> bool:
    # Not claimed, so no attempt is counted: attempt numbers stay those of real sends and look-ups.
    moved = move(
        delivery.pk,
        Event.WAIT,
        where=Q(attempts=delivery.attempts),
        now=clock.now_expr(),
        lease_until=None,
        enqueued_at=None,
        next_attempt_at=until,
        wait_reason=reason,
    )
    log.info(
        "delivery %s to %s waits until %s (%s)", delivery.pk, delivery.target.name, until.isoformat(), reason
    )
    if not moved:
        log.info("delivery %s: changed since it was read (claimed elsewhere); not held", delivery.pk)
    return True


# --- the target's own rules: a reserved slot ------------------------------------------------------


def reserve(client: Any, delivery: Delivery, target_rules: Rules, now: datetime) -> tuple[datetime, str]:
    """The delivery's slot under the target's rules, and why it is later than now ("" if not).

    A delivery that already holds a slot gets it back; otherwise it takes the first time at or
    after ``now`` that is past the last slot plus ``min_interval``, outside quiet hours, and with
    fewer than ``daily_limit`` slots in the 24 h before it.
    """
    base = f"{_prefix()}target:{delivery.target_id}"
    slots_key, next_key = f"{base}:slots", f"{base}:next"
    member = str(delivery.pk)
    with client.lock(f"{base}:lock", timeout=10, blocking_timeout=LOCK_WAIT):
        held_at = client.zscore(slots_key, member)
        if held_at is not None:
            return _at(held_at), delivery.wait_reason or Wait.PACING
        t, reason = now.timestamp(), ""
        following = client.get(next_key)
        if target_rules.min_interval and following is not None and float(following) > t:
            t, reason = float(following), Wait.PACING
        for _ in range(100):  # each turn moves t forward past one rule; a handful suffice
            moved = False
            if target_rules.quiet and (end := quiet_end(_at(t), target_rules)) is not None:
                t, reason, moved = end.timestamp(), Wait.QUIET_HOURS, True
            if target_rules.daily_limit:
                since = client.zrangebyscore(slots_key, t - DAY, "+inf", withscores=True)
                if len(since) >= target_rules.daily_limit:
                    t = since[len(since) - target_rules.daily_limit][1] + DAY
                    reason, moved = Wait.DAILY_LIMIT, True
            if not moved:
                break
        pipe = client.pipeline()
        pipe.zremrangebyscore(slots_key, "-inf", now.timestamp() - 2 * DAY)
        pipe.zadd(slots_key, {member: t})
        pipe.expire(slots_key, int(3 * DAY))
        if target_rules.min_interval:
            pipe.set(next_key, t + target_rules.min_interval, ex=int(3 * DAY))
        pipe.execute()
    return _at(t), reason


def release(delivery_ids: list[int], target_id: int) -> None:
    """Forget the slots of deliveries a person cancelled or rescheduled (their place frees up for
    the daily count; the spacing of later slots stays as reserved)."""
    client = redis_client()
    if client is None or not delivery_ids:
        return
    try:
        client.zrem(f"{_prefix()}target:{target_id}:slots", *[str(pk) for pk in delivery_ids])
    except redis_errors() as exc:  # a slot left behind only counts one send too many for 24 h
        log.warning("pacing limiter unreachable; slots of %s not released: %s", delivery_ids, exc)


def quiet_end(at: datetime, target_rules: Rules) -> datetime | None:
    """When the quiet hours that ``at`` falls in end (aware UTC), or None when it is outside them.

    The span is wall-clock time in the target's zone, so across a daylight-saving change it lasts
    an hour more or less in UTC; one whose end is before its start crosses midnight.
    """
    if target_rules.quiet is None:
        return None
    (h1, m1), (h2, m2) = target_rules.quiet
    local = at.astimezone(target_rules.zone)
    tod, start, end = (local.hour, local.minute, local.second), (h1, m1, 0), (h2, m2, 0)
    crosses = start > end
    inside = (start <= tod or tod < end) if crosses else (start <= tod < end)
    if not inside:
        return None
    day = local.date() + timedelta(days=1 if crosses and tod >= start else 0)
    ends = datetime(day.year, day.month, day.day, h2, m2, tzinfo=target_rules.zone)
    return ends.astimezone(UTC)


# --- a network's hard limits: sliding windows ----------------------------------------------------


def _take_windows(
    client: Any, delivery: Delivery, limits: list[tuple[str, RateLimit]], now: datetime | None
) -> tuple[float | None, float]:
    """Take a place in every window (None), or the epoch time when one frees up; and Redis's now."""
    args: list[Any] = ["" if now is None else now.timestamp(), f"{delivery.pk}:{delivery.attempts}"]
    for _, lim in limits:
        args += [lim.count, lim.seconds]
    script = _script(client)
    free_at, at = script(keys=[key for key, _ in limits], args=args)
    free = float(free_at)
    return (None if free < 0 else free), float(at)


def _daily_full(client: Any, limits: list[tuple[str, RateLimit]], at: float) -> bool:
    return any(
        lim.seconds >= DAY and client.zcount(key, at - lim.seconds, "+inf") >= lim.count
        for key, lim in limits
    )


def _script(client: Any) -> Any:
    cached = getattr(_local, "script", None)
    if cached is None or cached[0] is not client:
        _local.script = (client, client.register_script(_WINDOWS_LUA))
    return _local.script[1]


# --- Redis -----------------------------------------------------------------------------------------


def redis_client() -> Any:
    """The limiter's Redis (one client per process and URL), or None when there is none."""
    url = getattr(settings, "SYNDICATOR_PACING_REDIS_URL", None)
    # "none": no limiter at all (the load tests, which measure exactly-once, not pacing; a
    # deployment content with the networks' own 429s): every delivery goes unpaced, said once.
    if not url or url.strip().lower() == "none":
        return None
    cached = getattr(_local, "client", None)
    if cached is None or cached[0] != url:
        import redis

        _local.client = (url, redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5))
    return _local.client[1]


def _prefix() -> str:
    return f"{getattr(settings, 'SYNDICATOR_PACING_PREFIX', '')}syndicator:pace:"


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(float(epoch), tz=UTC)


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


def seconds_until(when: datetime, now: datetime) -> int:
    return max(math.ceil((when - now).total_seconds()), 0)
