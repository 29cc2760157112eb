"""The delivery log pages: date range, CSV export, the attempt timeline and its buttons."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from syndicator.models import Delivery, DeliveryAttempt, Feed, Post, Target

pytestmark = pytest.mark.django_db

LIST = "admin:syndicator_delivery_changelist"


@pytest.fixture
def target() -> Target:
    return Target.objects.create(name="channel", kind="outbox")


def make_delivery(target: Target, title: str, *, age_days: float = 0, **fields) -> Delivery:
    feed, _ = Feed.objects.get_or_create(url="https://news.example/feed", defaults={"name": "News"})
    post = Post.objects.create(feed=feed, guid=title, url=f"https://news.example/{len(title)}", title=title)
    return Delivery.objects.create(
        post=post, target=target, created_at=timezone.now() - timedelta(days=age_days), **fields
    )


def listed_ids(response) -> set[int]:
    return {d.pk for d in response.context["cl"].result_list}


def test_the_date_range_filter_keeps_presets_and_custom_dates(admin_client, target):
    today = make_delivery(target, "today")
    last_week = make_delivery(target, "five days ago", age_days=5)
    old = make_delivery(target, "forty days ago", age_days=40)

    assert listed_ids(admin_client.get(reverse(LIST), {"period": "today"})) == {today.pk}
    assert listed_ids(admin_client.get(reverse(LIST), {"period": "7d"})) == {today.pk, last_week.pk}
    assert listed_ids(admin_client.get(reverse(LIST), {"period": "30d"})) == {today.pk, last_week.pk}

    day = lambda d: timezone.localtime(d.created_at).date().isoformat()  # noqa: E731
    custom = admin_client.get(reverse(LIST), {"created_from": day(old), "created_to": day(last_week)})
    assert listed_ids(custom) == {old.pk, last_week.pk}
    # The custom dates survive in the page (the form's inputs and the links of other filters).
    html = custom.content.decode()
    assert f'name="created_from" value="{day(old)}"' in html
    assert f"created_to={day(last_week)}" in html


def test_the_list_is_newest_first_with_readable_origin(admin_client, target):
    make_delivery(target, "older", age_days=1)
    manual = make_delivery(target, "newer", origin="manual", requested_by="edna")
    response = admin_client.get(reverse(LIST))
    assert response.context["cl"].result_list[0].pk == manual.pk
    assert '<td class="field-origin_short">by edna</td>' in response.content.decode()
    assert 'class="status-badge" data-status="queued"' in response.content.decode()


def export(client, **query):
    response = client.get(reverse("admin:syndicator_delivery_export"), query)
    assert response.status_code == 200
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def test_csv_export_holds_exactly_the_filtered_and_searched_list_across_pages(admin_client, target):
    failed = [
        make_delivery(target, f"Failed story {i}", status="failed", last_error="boom") for i in range(60)
    ]
    make_delivery(target, "Failed but other words", status="sent")
    make_delivery(target, "Failed story queued", status="queued")

    rows = export(admin_client, status__exact="failed", q="Failed story")
    assert sorted(int(r["id"]) for r in rows) == sorted(d.pk for d in failed)  # 60 rows: past page one
    assert {r["status"] for r in rows} == {"failed"}


def test_csv_export_defuses_spreadsheet_formulas(admin_client, target):
    make_delivery(target, '=HYPERLINK("http://evil.example","click")', last_error="-2+3", status="failed")
    (row,) = export(admin_client)
    assert row["post_title"] == '\'=HYPERLINK("http://evil.example","click")'
    assert row["last_error"] == "'-2+3"


def test_editors_see_no_export_link_and_get_403_from_it(editor_client, target):
    make_delivery(target, "story")
    page = editor_client.get(reverse(LIST))
    assert page.status_code == 200 and b'id="export-csv"' not in page.content
    assert editor_client.get(reverse("admin:syndicator_delivery_export")).status_code == 403


def test_admins_get_the_export_link_with_the_current_filters(admin_role_client, target):
    page = admin_role_client.get(reverse(LIST), {"status__exact": "failed", "period": "7d"})
    html = page.content.decode()
    assert 'id="export-csv"' in html
    assert "/export/?" in html and "status__exact=failed" in html and "period=7d" in html


def test_the_detail_page_shows_every_attempt_in_the_timeline(admin_client, target):
    delivery = make_delivery(target, "story", status="failed", attempts=3)
    for number, outcome, status in ((1, "transient", 503), (2, "rate_limited", 429), (3, "permanent", 400)):
        DeliveryAttempt.objects.create(
            delivery=delivery,
            number=number,
            outcome=outcome,
            http_status=status,
            error_class="PermanentError" if number == 3 else "TransientError",
            message=f"answer {number}",
            retry_after=30 if number == 2 else None,
            duration_ms=120,
            worker="celery@w1",
        )
    html = admin_client.get(reverse("admin:syndicator_delivery_change", args=[delivery.pk])).content.decode()
    assert 'id="attempt-timeline"' in html
    assert html.count('<tr class="attempt"') == 3
    for text in ("answer 1", "answer 2", "answer 3", "429", "30 s", "120 ms", "celery@w1", "rate limited"):
        assert text in html
    assert 'class="status-badge" data-status="failed"' in html
    assert 'id="retry-delivery"' in html


def detail(delivery: Delivery) -> str:
    return reverse("admin:syndicator_delivery_change", args=[delivery.pk])


def test_the_retry_button_requeues_a_failed_delivery(admin_role_client, target):
    delivery = make_delivery(target, "story", status="failed", attempts=2)
    response = admin_role_client.post(reverse("admin:syndicator_delivery_retry", args=[delivery.pk]))
    assert response.status_code == 302 and response["Location"] == detail(delivery)
    delivery.refresh_from_db()
    # The retry is attempt 3, naming the admin; the fresh budget counts from it.
    assert delivery.status == "queued" and delivery.budget_start == 3
    verdict = delivery.attempt_log.get(number=3)
    assert (verdict.kind, verdict.outcome, verdict.actor_name) == ("verdict", "retried", "ada")
    assert verdict.actor.get_username() == "ada" and "retried (was failed) by ada" in verdict.message


def test_the_cancel_button_cancels_a_queued_delivery(admin_role_client, target):
    delivery = make_delivery(target, "story")
    page = admin_role_client.get(detail(delivery)).content.decode()
    assert 'id="cancel-delivery"' in page and 'id="retry-delivery"' not in page
    admin_role_client.post(reverse("admin:syndicator_delivery_cancel", args=[delivery.pk]))
    delivery.refresh_from_db()
    assert delivery.status == "cancelled"
    # Credited in the timeline: an attempt row of kind verdict naming the admin.
    verdict = delivery.attempt_log.get()
    assert (verdict.number, verdict.kind, verdict.outcome) == (1, "verdict", "cancelled")
    assert verdict.actor.get_username() == "ada" and verdict.actor_name == "ada"
    page = admin_role_client.get(detail(delivery)).content.decode()
    assert 'data-kind="verdict"' in page and '<td class="attempt-by"><strong>ada</strong></td>' in page


def test_a_verdict_keeps_the_name_of_a_user_deleted_since(admin_role_client, target):
    from django.contrib.auth import get_user_model

    delivery = make_delivery(target, "story", status="failed", attempts=1)
    admin_role_client.post(reverse("admin:syndicator_delivery_retry", args=[delivery.pk]))
    get_user_model().objects.filter(username="ada").delete()
    verdict = delivery.attempt_log.get(number=2)
    assert verdict.actor is None and verdict.actor_name == "ada"


def test_buttons_are_hidden_from_editors_and_refused_to_them(editor_client, target):
    failed = make_delivery(target, "failed", status="failed")
    uncertain = make_delivery(target, "uncertain", status="uncertain", attempts=1)
    page = editor_client.get(detail(failed))
    assert page.status_code == 200 and b"retry-delivery" not in page.content
    assert b"mark-sent" not in editor_client.get(detail(uncertain)).content
    assert editor_client.post(reverse("admin:syndicator_delivery_retry", args=[failed.pk])).status_code == 403
    assert (
        editor_client.post(reverse("admin:syndicator_delivery_cancel", args=[failed.pk])).status_code == 403
    )
    mark = reverse("admin:syndicator_delivery_mark", args=[uncertain.pk])
    assert editor_client.post(mark, {"verdict": "sent"}).status_code == 403
    failed.refresh_from_db(), uncertain.refresh_from_db()
    assert (failed.status, uncertain.status) == ("failed", "uncertain")
    assert not DeliveryAttempt.objects.exists()


def test_buttons_take_only_post(admin_role_client, target):
    delivery = make_delivery(target, "story", status="failed")
    assert (
        admin_role_client.get(reverse("admin:syndicator_delivery_retry", args=[delivery.pk])).status_code
        == 405
    )


def test_mark_as_sent_settles_an_uncertain_delivery_and_logs_who_decided(admin_role_client, target):
    delivery = make_delivery(target, "story", status="uncertain", attempts=1, last_error="timeout")
    DeliveryAttempt.objects.create(delivery=delivery, number=1, outcome="unknown", message="read timeout")
    page = admin_role_client.get(detail(delivery)).content.decode()
    assert 'id="mark-sent"' in page and 'id="mark-not-sent"' in page

    admin_role_client.post(
        reverse("admin:syndicator_delivery_mark", args=[delivery.pk]),
        {"verdict": "sent", "external_url": "https://t.me/channel/42"},
    )
    delivery.refresh_from_db()
    assert delivery.status == "sent" and delivery.external_url == "https://t.me/channel/42"
    assert delivery.sent_at is not None and delivery.attempts == 2
    mark = delivery.attempt_log.get(number=2)
    assert mark.outcome == "marked_sent" and "ada" in mark.message
    html = admin_role_client.get(detail(delivery)).content.decode()
    assert html.count('<tr class="attempt"') == 2 and "marked as sent by ada" in html


def test_mark_as_sent_refuses_a_url_that_is_not_http(admin_role_client, target):
    delivery = make_delivery(target, "story", status="uncertain", attempts=1)
    response = admin_role_client.post(
        reverse("admin:syndicator_delivery_mark", args=[delivery.pk]),
        {"verdict": "sent", "external_url": "javascript:alert(1)"},
        follow=True,
    )
    assert "not an http(s) URL" in response.content.decode()
    delivery.refresh_from_db()
    assert delivery.status == "uncertain" and not delivery.attempt_log.exists()


def test_mark_as_not_sent_fails_the_delivery_and_retry_can_send_it_again(admin_role_client, target):
    delivery = make_delivery(target, "story", status="uncertain", attempts=1)
    DeliveryAttempt.objects.create(delivery=delivery, number=1, outcome="unknown")
    admin_role_client.post(
        reverse("admin:syndicator_delivery_mark", args=[delivery.pk]), {"verdict": "not_sent"}
    )
    delivery.refresh_from_db()
    assert delivery.status == "failed" and "marked as not sent by ada" in delivery.last_error
    assert delivery.attempt_log.get(number=2).outcome == "marked_not_sent"

    admin_role_client.post(reverse("admin:syndicator_delivery_retry", args=[delivery.pk]))
    delivery.refresh_from_db()
    assert delivery.status == "queued" and delivery.budget_start == 3
    assert [(a.kind, a.outcome, a.actor_name) for a in delivery.attempt_log.all()] == [
        ("send", "unknown", ""),
        ("verdict", "marked_not_sent", "ada"),
        ("verdict", "retried", "ada"),
    ]


def test_marking_a_delivery_that_is_no_longer_uncertain_changes_nothing(admin_role_client, target):
    delivery = make_delivery(target, "story", status="sent", attempts=1)
    admin_role_client.post(
        reverse("admin:syndicator_delivery_mark", args=[delivery.pk]), {"verdict": "not_sent"}
    )
    delivery.refresh_from_db()
    assert delivery.status == "sent" and not delivery.attempt_log.exists()


def test_a_send_an_admin_marked_as_sent_counts_for_the_targets_health(admin_role_client, target):
    from syndicator.health import target_health

    for i in range(4):
        failed = make_delivery(target, f"failed {i}", status="failed", attempts=1)
        DeliveryAttempt.objects.create(
            delivery=failed, number=1, outcome="permanent", finished_at=timezone.now()
        )
    delivery = make_delivery(target, "story", status="uncertain", attempts=1)
    DeliveryAttempt.objects.create(delivery=delivery, number=1, outcome="unknown", finished_at=timezone.now())
    assert target_health(target).state == "failing"  # five attempts, none sent
    admin_role_client.post(reverse("admin:syndicator_delivery_mark", args=[delivery.pk]), {"verdict": "sent"})
    assert target_health(target).state != "failing"
