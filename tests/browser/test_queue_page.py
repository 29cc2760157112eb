"""The queue page (#13 item 7) in headless Chromium: an editor reschedules one delivery and
cancels another; both are logged in the editor's name (docs/pacing.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from syndicator.dispatch import repost
from syndicator.models import Delivery, DeliveryAttempt, Feed, Post, Target
from tests.accounts import make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def test_an_editor_reschedules_and_cancels_from_the_queue(browser) -> None:
    make_user("edna", "editor")
    target = Target.objects.create(name="channel", kind="outbox", settings={"timezone": "Asia/Tehran"})
    feed = Feed.objects.create(url="https://news.example/feed", enabled=False)
    first, second = (
        Post.objects.create(feed=feed, guid=f"g{n}", url=f"https://news.example/{n}", title=f"Story {n}")
        for n in (1, 2)
    )
    soon = timezone.now() + timedelta(days=1)
    keep = repost(first, [target], requested_by="edna", at=soon)[0]
    drop = repost(second, [target], requested_by="edna", at=soon + timedelta(hours=1))[0]

    browser.login("edna")
    browser.open("/admin/queue/")
    rows = browser.find_all(".queue-row")
    assert [r.get_attribute("data-delivery") for r in rows] == [str(keep.pk), str(drop.pk)]
    assert "scheduled" in rows[0].find_element("css selector", ".queue-reason").text
    browser.screenshot("queue")

    # A new time, typed in the target's zone (Tehran, +03:30).
    row = browser.find(f'.queue-row[data-delivery="{keep.pk}"]')
    field = row.find_element("css selector", ".queue-at-input")
    browser.driver.execute_script("arguments[0].value = '2027-01-05T09:15'", field)
    row.find_element("css selector", ".queue-reschedule").click()
    browser.wait_for(
        lambda d: Delivery.objects.get(pk=keep.pk).next_attempt_at == datetime(2027, 1, 5, 5, 45, tzinfo=UTC),
        "the reschedule",
    )
    browser.screenshot("rescheduled")
    browser.wait_for(
        lambda d: (
            "2027-01-05 09:15"
            in d.find_element("css selector", f'.queue-row[data-delivery="{keep.pk}"] .queue-at').text
        ),
        "the page to show the new time",
    )
    # Rescheduled later than the other, it now comes second.
    order = [r.get_attribute("data-delivery") for r in browser.find_all(".queue-row")]
    assert order == [str(drop.pk), str(keep.pk)]

    browser.find(f'.queue-row[data-delivery="{drop.pk}"] .queue-cancel').click()
    browser.wait_for(lambda d: Delivery.objects.get(pk=drop.pk).status == "cancelled", "the cancel")
    browser.wait_for(
        lambda d: (
            [r.get_attribute("data-delivery") for r in d.find_elements("css selector", ".queue-row")]
            == [str(keep.pk)]
        ),
        "the cancelled delivery to leave the queue",
    )
    browser.screenshot("queue-after")
    verdicts = DeliveryAttempt.objects.filter(kind="verdict").order_by("delivery_id")
    assert [(v.delivery_id, v.outcome, v.actor_name) for v in verdicts] == [
        (keep.pk, "rescheduled", "edna"),
        (drop.pk, "cancelled", "edna"),
    ]


def test_the_queue_page_needs_a_login(client) -> None:
    assert client.get("/admin/queue/").status_code == 302  # to the login page
