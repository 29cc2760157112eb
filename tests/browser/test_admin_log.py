"""An admin, in headless Chromium, finds a failed delivery in the log, retries it, sees the new attempt.

The failure is real: the Telegram emulator refused the first send, through a real worker. The
retry goes through the same worker and the emulator accepts it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium.webdriver.common.by import By

from syndicator import delivery as deliveries
from syndicator.models import Delivery, Feed, Post
from tests.accounts import make_user
from tests.conftest import wait_for
from tests.emulators import telegram

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


@pytest.fixture
def channel() -> Iterator[telegram.Harness]:
    with telegram.Harness() as harness:
        yield harness


def test_an_admin_filters_failed_deliveries_retries_one_and_sees_the_new_attempt(
    browser, channel, celery_worker
):
    feed = Feed.objects.create(url="https://www.nejatngo.org/ar/feed/", name="Nejat AR", language="ar")
    posts = [
        Post.objects.create(
            feed=feed,
            guid=f"ar-{n}",
            url=f"https://www.nejatngo.org/ar/?p={n}",
            title=f"تقرير جديد رقم {n}",
            language="ar",
        )
        for n in (1, 2)
    ]
    target = channel.make_target(name="telegram-ar")
    channel.inject("rejected_content")  # the first send is refused for good: a failed delivery
    refused = deliveries.repost(posts[0], [target], requested_by="ed")[0]
    wait_for(lambda: Delivery.objects.get(pk=refused.pk).status == "failed", timeout=30)
    sent = deliveries.repost(posts[1], [target], requested_by="ed")[0]
    wait_for(lambda: Delivery.objects.get(pk=sent.pk).status == "sent", timeout=30)
    make_user("admin", "admin")

    browser.login("admin")
    browser.open("/admin/syndicator/delivery/")
    assert len(browser.find_all("#result_list tbody tr")) == 2
    browser.screenshot("log")

    browser.driver.find_element(By.CSS_SELECTOR, "#changelist-filter a[href*='status__exact=failed']").click()
    browser.wait_for(lambda d: "status__exact=failed" in d.current_url, "the failed filter")
    rows = browser.find_all("#result_list tbody tr")
    assert len(rows) == 1 and "تقرير جديد رقم 1" in rows[0].text
    browser.screenshot("log-failed")

    rows[0].find_element(By.CSS_SELECTOR, "th a, td a").click()
    browser.wait_for(lambda d: f"/delivery/{refused.pk}/change/" in d.current_url, "the delivery page")
    assert len(browser.find_all("#attempt-timeline tr.attempt")) == 1
    assert browser.find(".status-badge").get_attribute("data-status") == "failed"
    browser.screenshot("delivery-failed", show="#attempt-timeline")

    browser.find("#retry-delivery").click()

    def retried_and_sent(driver) -> bool:
        driver.refresh()
        attempts = driver.find_elements(By.CSS_SELECTOR, "#attempt-timeline tr.attempt")
        status = driver.find_element(By.CSS_SELECTOR, ".status-badge").get_attribute("data-status")
        return len(attempts) == 3 and status == "sent"

    browser.wait_for(retried_and_sent, "the admin's retry, its attempt and the sent status", timeout=40)
    first, retried, second = (row.text.lower() for row in browser.find_all("#attempt-timeline tr.attempt"))
    assert first.startswith("1 ") and "permanent" in first and "400" in first
    assert retried.startswith("2 ") and "retried" in retried and "admin" in retried, "credited to the admin"
    assert second.startswith("3 ") and "sent" in second
    browser.screenshot("delivery-retried", show="#attempt-timeline")
    assert len(channel.sent()) == 2  # the refused send never arrived; the retry and the other did
