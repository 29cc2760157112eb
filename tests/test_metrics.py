"""/metrics: the Prometheus text computed from the database, and who may read it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from syndicator.models import ApiToken, Delivery, DeliveryAttempt, Feed, Post, Target
from syndicator.tokens import create_token
from tests.accounts import PASSWORD, bearer, make_user, token_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def log() -> None:
    """A small log: a healthy and a failing feed, two targets, deliveries in several states."""
    now = timezone.now()
    ok = Feed.objects.create(url="https://news.example/feed", name="News", last_status="ok")
    Feed.objects.create(
        url="https://broken.example/feed",
        name="Broken",
        last_status="error",
        consecutive_failures=3,
        last_error="HTTP 500",
    )
    x = Target.objects.create(name="x-main", kind="outbox", settings={"format": "twitter"})
    tg = Target.objects.create(name="tg", kind="outbox", settings={"format": "telegram"})

    def post(guid: str, seen_ago: float) -> Post:
        return Post.objects.create(
            feed=ok,
            guid=guid,
            url=f"https://news.example/{guid}",
            first_seen_at=now - timedelta(seconds=seen_ago),
        )

    # Sent 30 s and 400 s after being first seen, within the last day: the latency histogram.
    fast = Delivery.objects.create(
        post=post("1", 100), target=tg, status="sent", sent_at=now - timedelta(seconds=70)
    )
    slow = Delivery.objects.create(
        post=post("2", 1000), target=x, status="sent", sent_at=now - timedelta(seconds=600)
    )
    # Left out of the histogram: a manual repost, and one sent two days ago.
    Delivery.objects.create(post=post("3", 9000), target=tg, origin="manual", status="sent", sent_at=now)
    Delivery.objects.create(
        post=post("4", 3 * 86400), target=tg, status="sent", sent_at=now - timedelta(days=2)
    )
    failed = Delivery.objects.create(post=post("5", 50), target=x, status="failed", attempts=2)
    queued = Delivery.objects.create(post=post("6", 200), target=x, status="queued")
    Delivery.objects.filter(pk=queued.pk).update(created_at=now - timedelta(seconds=120))
    for delivery, number, outcome in (
        (fast, 1, "sent"),
        (slow, 1, "rate_limited"),
        (slow, 2, "sent"),
        (failed, 1, "transient"),
        (failed, 2, "permanent"),
    ):
        DeliveryAttempt.objects.create(delivery=delivery, number=number, outcome=outcome, finished_at=now)
    DeliveryAttempt.objects.create(delivery=queued, number=1)  # in progress: no outcome yet


def scrape(client: Client, **kwargs: object) -> dict[tuple[str, tuple], float]:
    """/metrics as {(sample name, sorted labels): value}."""
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


@pytest.fixture
def staff() -> Client:
    client = Client()
    make_user("ops", "admin")
    client.login(username="ops", password=PASSWORD)
    return client


def test_deliveries_by_target_and_status_with_zeros(staff: Client, log) -> None:
    metrics = scrape(staff)
    assert metrics[("syndicator_deliveries", (("status", "sent"), ("target", "tg")))] == 3
    assert metrics[("syndicator_deliveries", (("status", "failed"), ("target", "x-main")))] == 1
    assert metrics[("syndicator_deliveries", (("status", "queued"), ("target", "x-main")))] == 1
    assert metrics[("syndicator_deliveries", (("status", "uncertain"), ("target", "tg")))] == 0


def test_attempts_by_outcome(staff: Client, log) -> None:
    metrics = scrape(staff)
    attempts = {
        labels: v for (name, labels), v in metrics.items() if name == "syndicator_delivery_attempts_total"
    }
    assert attempts == {
        (("outcome", "sent"), ("target", "tg")): 1,
        (("outcome", "rate_limited"), ("target", "x-main")): 1,
        (("outcome", "sent"), ("target", "x-main")): 1,
        (("outcome", "transient"), ("target", "x-main")): 1,
        (("outcome", "permanent"), ("target", "x-main")): 1,
    }


def test_a_persons_retry_or_cancel_is_not_counted_as_an_attempt(staff: Client, log) -> None:
    from syndicator import decisions

    failed = Delivery.objects.get(status="failed")
    assert decisions.retry([failed], by="ada") == 1
    assert decisions.cancel([failed], by="ada") == 1
    assert failed.attempt_log.filter(kind="verdict").count() == 2
    outcomes = {dict(labels)["outcome"] for (name, labels), _ in scrape(staff).items() if "attempts" in name}
    assert not outcomes & {"retried", "cancelled"}


def test_the_oldest_queued_delivery_and_feed_errors(staff: Client, log) -> None:
    metrics = scrape(staff)
    assert 119 <= metrics[("syndicator_oldest_queued_delivery_age_seconds", ())] < 180
    broken = Feed.objects.get(name="Broken")
    failures = ("syndicator_feed_consecutive_failures", (("feed", "Broken"), ("feed_id", str(broken.pk))))
    assert metrics[failures] == 3
    assert metrics[("syndicator_feeds_in_error", ())] == 1
    assert metrics[("syndicator_feeds", (("state", "failing"),))] == 1
    assert metrics[("syndicator_feeds", (("state", "ok"),))] == 1
    # x-main has a failed delivery waiting on a person: a warning, so not healthy.
    assert metrics[("syndicator_target_healthy", (("state", "warning"), ("target", "x-main")))] == 0
    assert metrics[("syndicator_target_healthy", (("state", "ok"), ("target", "tg")))] == 1


def test_time_from_first_seen_to_sent_is_a_gauge_of_quantiles_of_the_last_day(staff: Client, log) -> None:
    metrics = scrape(staff)

    def quantile(q: str) -> float:
        return metrics[("syndicator_post_to_sent_seconds", (("quantile", q),))]

    assert metrics[("syndicator_post_to_sent_window_deliveries", ())] == 2
    assert quantile("0.5") == pytest.approx(30, abs=2)
    assert quantile("0.9") == quantile("0.99") == quantile("1") == pytest.approx(400, abs=2)
    # Not a histogram: a sliding window's bucket counts fall, and rate() over them would lie.
    exposition = staff.get("/metrics").content.decode()
    assert "# TYPE syndicator_post_to_sent_seconds gauge" in exposition
    assert "syndicator_post_to_sent_seconds_bucket" not in exposition


def test_an_empty_database_scrapes_cleanly(staff: Client) -> None:
    metrics = scrape(staff)
    assert metrics[("syndicator_oldest_queued_delivery_age_seconds", ())] == 0
    assert metrics[("syndicator_post_to_sent_window_deliveries", ())] == 0
    assert not any(name == "syndicator_post_to_sent_seconds" for name, _ in metrics)  # no quantile of nothing


def test_metrics_need_the_admin_role_or_a_metrics_token(client: Client, log) -> None:
    anonymous = client.get("/metrics")
    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", **bearer("synd_wrong")).status_code == 401
    scrape(client, **bearer(token_for(make_user("ops", "admin"))))
    # A token made for metrics works whoever holds it; it opens nothing else (tests/test_auth_limits.py).
    scrape(
        client, **bearer(create_token(make_user("prometheus"), "scraper", scope=ApiToken.Scope.METRICS)[1])
    )
    assert client.get("/metrics", **bearer(token_for(make_user("ed", "editor")))).status_code == 403
    assert client.get("/metrics", **bearer(token_for(make_user("nobody")))).status_code == 403

    for name, role in (("plain", None), ("editor", "editor")):
        session = Client()
        make_user(name, role)
        session.login(username=name, password=PASSWORD)
        assert session.get("/metrics").status_code == 403, name


def test_metrics_can_be_made_public(client: Client, settings, log) -> None:
    settings.SYNDICATOR_METRICS_PUBLIC = True
    assert scrape(client)[("syndicator_feeds_in_error", ())] == 1


def _attempt_counts(metrics: dict[tuple[str, tuple], float]) -> dict[tuple, float]:
    return {
        labels: v for (name, labels), v in metrics.items() if name == "syndicator_delivery_attempts_total"
    }


def test_the_attempt_counter_folds_settled_attempts_and_stays_exact_across_scrapes(
    staff: Client, log
) -> None:
    """The counter is a running tally up to a watermark plus a live count past it: a scrape costs
    what happened since the last one, and every scrape equals a count of the whole history."""
    from syndicator.metrics import TALLY_SETTLE
    from syndicator.models import AttemptTally, TallyMark

    now = timezone.now()
    old = now - TALLY_SETTLE * 2
    # Everything in the fixture finished long ago, but for the one still in flight.
    DeliveryAttempt.objects.exclude(outcome="").update(started_at=old, finished_at=old)
    first = _attempt_counts(scrape(staff))
    in_flight = DeliveryAttempt.objects.get(outcome="")
    mark = TallyMark.objects.get(name="attempts")
    assert mark.upto_id == in_flight.pk - 1  # held back by the attempt that may still change
    assert sum(AttemptTally.objects.values_list("n", flat=True)) == 5

    # The in-flight attempt ends, a newer one ends now (not yet folded), a scrape in between:
    x = Target.objects.get(name="x-main")
    queued = Delivery.objects.get(status="queued")
    DeliveryAttempt.objects.filter(pk=in_flight.pk).update(outcome="transient", finished_at=old)
    DeliveryAttempt.objects.create(delivery=queued, number=2, outcome="sent", started_at=now, finished_at=now)
    second = _attempt_counts(scrape(staff))
    assert second == {
        **first,
        (("outcome", "transient"), ("target", "x-main")): 2,
        (("outcome", "sent"), ("target", "x-main")): 2,
    }
    assert TallyMark.objects.get(name="attempts").upto_id == in_flight.pk  # the newest is not settled yet
    # The same scrape again counts nothing twice.
    assert _attempt_counts(scrape(staff)) == second
    assert AttemptTally.objects.get(target=x, outcome="transient").n == 2


def test_the_delivery_log_search_finds_each_word_in_title_link_or_error(staff: Client, log) -> None:
    post = Post.objects.get(guid="5")
    Post.objects.filter(pk=post.pk).update(title="Referendum results in Tirana")
    Delivery.objects.filter(post__guid="6").update(
        last_error="PermanentError: the referendum page refused it"
    )
    page = staff.get("/admin/syndicator/delivery/", {"q": "referendum"}).content.decode()
    assert "Referendum results in Tirana" in page
    assert page.count('class="action-select"') == 2
    both = staff.get("/admin/syndicator/delivery/", {"q": "referendum tirana"}).content.decode()
    assert both.count('class="action-select"') == 1
    quoted = staff.get("/admin/syndicator/delivery/", {"q": '"results in tirana"'}).content.decode()
    assert quoted.count('class="action-select"') == 1
    assert (
        staff.get("/admin/syndicator/delivery/", {"q": "nowhere-word"})
        .content.decode()
        .count('class="action-select"')
        == 0
    )
