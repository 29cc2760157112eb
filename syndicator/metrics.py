"""/metrics in Prometheus's text format, read from the database at scrape time.

A custom collector queries the database on each scrape instead of counting in process memory:
deliveries are made by many worker processes on many machines, and the database is the one
place that sees them all (no multiprocess directory, no shared state). The "counters" here are
therefore counts of rows, exact and restart-proof.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Max, Min, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from syndicator.health import feed_health, target_health
from syndicator.models import ApiToken, AttemptTally, Delivery, DeliveryAttempt, Feed, TallyMark, Target
from syndicator.throttle import Throttled
from syndicator.tokens import bearer_token, token_for

# Deliveries sent within this window feed the first-seen-to-sent quantiles.
LATENCY_WINDOW = timedelta(hours=24)
# Exported as gauges, one per quantile ("1" is the slowest): a sliding window's counts fall as
# deliveries leave it, so as a histogram its buckets and _count would go down and rate() over
# them would be wrong; a gauge may go down. The query reads the window only (delivery_sent_auto).
LATENCY_QUANTILES = (0.5, 0.9, 0.99, 1.0)


NOT_ATTEMPTS = (DeliveryAttempt.Outcome.RETRIED, DeliveryAttempt.Outcome.CANCELLED)


# Attempts newer than this are counted on every scrape, not folded into the tally: one still in
# flight may yet change its outcome. An attempt unfinished for longer was lost with its worker
# (the sweeper finishes those within SYNDICATOR_SEND_LEASE) and does not hold the watermark back.
TALLY_SETTLE = timedelta(hours=1)
TALLY = "attempts"


def _counted_attempts() -> QuerySet[DeliveryAttempt]:
    """The attempts the counter counts: finished, and tries at sending (a person's retry or cancel
    is a row of the log but no try)."""
    return DeliveryAttempt.objects.exclude(outcome="").exclude(
        kind=DeliveryAttempt.Kind.VERDICT, outcome__in=NOT_ATTEMPTS
    )


def _by_target_outcome(attempts: QuerySet[DeliveryAttempt]) -> dict[tuple[int, str], int]:
    rows = attempts.values_list("delivery__target_id", "outcome").annotate(n=Count("id")).order_by()
    return {(target_id, outcome): n for target_id, outcome, n in rows}


def attempt_totals() -> dict[tuple[int, str], int]:
    """Finished attempts per (target id, outcome), over the whole history, at the cost of what
    happened since the last call: settled attempts are folded into AttemptTally up to a watermark
    (their rows are append-only once finished), the newer ones are counted live."""
    with transaction.atomic():
        mark, _ = TallyMark.objects.select_for_update().get_or_create(name=TALLY)
        settled_before = timezone.now() - TALLY_SETTLE
        newer = DeliveryAttempt.objects.filter(pk__gt=mark.upto_id)
        # The watermark stops below the oldest attempt that may still change: one in flight, or
        # one finished so recently that a late answer could still be recorded on it.
        open_ids = newer.filter(Q(finished_at__isnull=True) | Q(finished_at__gte=settled_before)).filter(
            started_at__gte=timezone.now() - TALLY_SETTLE * 24
        )
        limit = open_ids.aggregate(m=Min("pk"))["m"]
        upto = (limit - 1) if limit is not None else (newer.aggregate(m=Max("pk"))["m"] or mark.upto_id)
        if upto > mark.upto_id:
            fold = _by_target_outcome(_counted_attempts().filter(pk__gt=mark.upto_id, pk__lte=upto))
            for (target_id, outcome), n in fold.items():
                tally, _ = AttemptTally.objects.get_or_create(target_id=target_id, outcome=outcome)
                AttemptTally.objects.filter(pk=tally.pk).update(n=F("n") + n)
            TallyMark.objects.filter(pk=mark.pk).update(upto_id=upto)
            mark.upto_id = upto
        totals = {(t, o): n for t, o, n in AttemptTally.objects.values_list("target_id", "outcome", "n")}
    for key, n in _by_target_outcome(_counted_attempts().filter(pk__gt=mark.upto_id)).items():
        totals[key] = totals.get(key, 0) + n
    return totals


class DatabaseCollector(Collector):
    """Every syndicator metric, computed from the database when Prometheus scrapes."""

    def collect(self) -> Iterator[Metric]:
        """Yield the metric families."""
        yield self.deliveries()
        yield self.attempts()
        yield self.oldest_queued()
        yield from self.feeds()
        yield self.targets()
        yield from self.latency()

    def deliveries(self) -> Metric:
        by_target = GaugeMetricFamily(
            "syndicator_deliveries", "Deliveries by target and status.", labels=["target", "status"]
        )
        # By target id, without joining the targets: an index-only scan of delivery_target_status_upd
        # (a year of a newsroom: 28 ms instead of 130 ms with the join).
        rows = Delivery.objects.values_list("target_id", "status").annotate(n=Count("id")).order_by()
        counts = {(target_id, status): n for target_id, status, n in rows}
        # Every status of every target, zeros too: a rate() over a series that comes and goes lies.
        for target_id, name in Target.objects.order_by("name").values_list("pk", "name"):
            for status in Delivery.Status.values:
                by_target.add_metric([name, status], counts.get((target_id, status), 0))
        return by_target

    def attempts(self) -> Metric:
        family = CounterMetricFamily(
            "syndicator_delivery_attempts",
            "Finished delivery attempts by target and outcome.",
            labels=["target", "outcome"],
        )
        names = dict(Target.objects.values_list("pk", "name"))
        totals = attempt_totals()
        for (target_id, outcome), n in sorted(
            totals.items(), key=lambda item: (names.get(item[0][0], ""), item[0][1])
        ):
            if target_id in names:
                family.add_metric([names[target_id], outcome], n)
        return family

    def oldest_queued(self) -> Metric:
        oldest = Delivery.objects.filter(status=Delivery.Status.QUEUED).aggregate(m=Min("created_at"))["m"]
        age = (timezone.now() - oldest).total_seconds() if oldest else 0.0
        return GaugeMetricFamily(
            "syndicator_oldest_queued_delivery_age_seconds",
            "Age of the oldest delivery waiting in queued (0 when none waits).",
            value=max(age, 0.0),
        )

    def feeds(self) -> Iterator[Metric]:
        failures = GaugeMetricFamily(
            "syndicator_feed_consecutive_failures",
            "Polls of a feed that failed in a row.",
            labels=["feed_id", "feed"],
        )
        states = GaugeMetricFamily(
            "syndicator_feeds", "Feeds by health (syndicator.health).", labels=["state"]
        )
        in_error = 0
        by_state: dict[str, int] = dict.fromkeys(("ok", "new", "warning", "failing", "disabled"), 0)
        for feed in Feed.objects.all():
            failures.add_metric([str(feed.pk), str(feed)], feed.consecutive_failures)
            verdict = feed_health(feed)
            by_state[verdict.state] = by_state.get(verdict.state, 0) + 1
            in_error += feed.enabled and feed.last_status == Feed.Status.ERROR
        for state, n in by_state.items():
            states.add_metric([state], n)
        yield failures
        yield states
        yield GaugeMetricFamily(
            "syndicator_feeds_in_error", "Enabled feeds whose last poll failed.", value=in_error
        )

    def targets(self) -> Metric:
        family = GaugeMetricFamily(
            "syndicator_target_healthy",
            "1 when a target is healthy (syndicator.health), else 0.",
            labels=["target", "state"],
        )
        for target in Target.objects.all():
            verdict = target_health(target)
            family.add_metric([target.name, verdict.state], 1 if verdict.ok else 0)
        return family

    def latency(self) -> Iterator[Metric]:
        """Seconds from a post first seen to its automatic delivery sent, over the recent window.

        Manual reposts are left out: they are sent whenever an editor asks, not late.
        """
        since = timezone.now() - LATENCY_WINDOW
        rows = Delivery.objects.filter(
            status=Delivery.Status.SENT, origin=Delivery.Origin.AUTO, sent_at__gte=since
        ).values_list("sent_at", "post__first_seen_at")
        # sent_at__gte leaves out NULLs; the test tells the type checker so.
        seconds = sorted(max((sent - seen).total_seconds(), 0.0) for sent, seen in rows if sent is not None)
        hours = int(LATENCY_WINDOW.total_seconds() // 3600)
        quantiles = GaugeMetricFamily(
            "syndicator_post_to_sent_seconds",
            f"Seconds from a post first seen to its automatic delivery sent: quantiles (nearest rank; "
            f'quantile="1" is the slowest) of the deliveries sent in the last {hours} h.',
            labels=["quantile"],
        )
        for q in LATENCY_QUANTILES if seconds else ():
            quantiles.add_metric([f"{q:g}"], seconds[max(math.ceil(q * len(seconds)) - 1, 0)])
        yield quantiles
        yield GaugeMetricFamily(
            "syndicator_post_to_sent_window_deliveries",
            f"Automatic deliveries sent in the last {hours} h (what the quantiles are over).",
            value=len(seconds),
        )


PERMISSION = "syndicator.view_metrics"  # the Admins role's, not the Editors'


def allowed(request: HttpRequest) -> tuple[bool, int]:
    """Whether this request may read /metrics, and the status to answer when it may not."""
    if settings.SYNDICATOR_METRICS_PUBLIC:
        return True, 200
    if (token := bearer_token(request)) is not None:
        row = token_for(token, request)
        if row is None:
            return False, 401
        return row.scope == ApiToken.Scope.METRICS or row.user.has_perm(PERMISSION), 403
    user = request.user
    if not user.is_authenticated:
        return False, 401
    return user.has_perm(PERMISSION), 403


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The metrics, for an admin's session or token, a metrics token, or anyone when
    SYNDICATOR_METRICS_PUBLIC is set."""
    try:
        ok, status = allowed(request)
    except Throttled as exc:
        response = HttpResponse(f"{exc}\n", status=429, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = str(exc.retry_after)
        return response
    if not ok:
        response = HttpResponse(
            "metrics need the admin role: an admin's login or API token, or a token made with "
            "`syndicator tokens create USER --scope metrics`\n",
            status=status,
            content_type="text/plain; charset=utf-8",
        )
        if status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="syndicator"'
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
