"""The demo mailbox page in headless Chromium: a real multipart message, laid out right to left,
with its unsubscribe link (issue 14). The message went over SMTP to the loopback mailbox."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from syndicator import delivery as deliveries
from syndicator.demo import seed_demo_mailbox_target
from syndicator.demo_mailbox import DemoMailbox, list_messages
from syndicator.models import Delivery, Feed, Post
from tests.accounts import make_user
from tests.conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


@pytest.fixture
def mailbox(tmp_path: Path, settings) -> Iterator[DemoMailbox]:
    settings.DATA_DIR = tmp_path
    box = DemoMailbox(tmp_path / "demo-mailbox")
    box.start()
    yield box
    box.stop()


def test_the_demo_mailbox_shows_the_email_right_to_left_with_its_unsubscribe_link(
    browser, mailbox, celery_worker, chromium
):
    feed = Feed.objects.create(url="https://www.nejatngo.org/fa/feed/", name="Nejat FA", language="fa")
    post = Post.objects.create(
        feed=feed,
        guid="fa-1",
        url="https://www.nejatngo.org/fa/?p=1",
        title="گزارش تازه درباره وضعیت ساکنان اشرف ۳",
        summary="خلاصه گزارش درباره زندگی ساکنان پس از یک سال.",
        language="fa",
    )
    (sent,) = deliveries.repost(post, [seed_demo_mailbox_target(mailbox.port)], requested_by="ada")
    wait_for(lambda: Delivery.objects.get(pk=sent.pk).status == "sent", timeout=40)
    wait_for(lambda: len(list_messages()) == 2, timeout=10)
    make_user("admin", "admin")

    chromium.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1366, "height": 768, "deviceScaleFactor": 1, "mobile": False},
    )
    try:
        browser.login("admin")
        browser.find("a[href='/admin/demo-mailbox/']").click()  # linked from the start page
        browser.wait_for(lambda d: "/demo-mailbox/" in d.current_url, "the demo mailbox")
        assert len(browser.find_all(".mailbox-item")) == 2
        assert "multipart/alternative" in browser.find("#mime-parts").text
        link = browser.find("#unsubscribe-link").get_attribute("href")
        assert "/unsubscribe/" in link
        browser.screenshot("mailbox")
        browser.driver.switch_to.frame(browser.find("#mailbox-html"))
        body = browser.driver.find_element(By.TAG_NAME, "body")
        assert body.get_attribute("dir") == "rtl" and "گزارش تازه" in body.text
        direction = browser.driver.execute_script("return getComputedStyle(document.body).direction")
        assert direction == "rtl"
        browser.driver.switch_to.default_content()
        browser.screenshot("mailbox-text", show="#mailbox-text")
        chromium.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True},
        )
        browser.driver.refresh()
        width = browser.driver.execute_script(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert width[0] <= width[1], width
        browser.screenshot("mailbox-phone", show="#mailbox-message")
    finally:
        chromium.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
