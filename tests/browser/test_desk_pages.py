"""The newsroom desk in headless Chromium (issue 14): the start page against the database, the
append-only log, Poll now returning at once, and every page fitting a 1366 × 768 laptop.

Each test saves screenshots under tests/artifacts/ for review.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone
from selenium.webdriver.common.by import By

from syndicator.models import Delivery, DeliveryAttempt, Feed, Post, Target
from tests.accounts import make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

LAPTOP = (1366, 768)
PHONE = (390, 844)
TITLES = {
    "en": "Nejat NewsLetter – January 2026: residents of Ashraf 3 describe a year of hardship and hope",
    "ar": "تقرير جديد عن أوضاع سكان أشرف 3 بعد عام من الصعوبات والأمل",
    "fa": "گزارش تازه درباره وضعیت ساکنان اشرف ۳ پس از یک سال سختی و امید",
}
STATUSES = ("sent", "failed", "uncertain", "queued", "retrying", "sent")


@pytest.fixture
def viewport(chromium) -> Iterator:
    """Set the page's exact CSS viewport (not the window, whose size headless mode interprets)."""

    def set_to(size: tuple[int, int], *, mobile: bool = False) -> None:
        width, height = size
        chromium.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
        )

    yield set_to
    chromium.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


@pytest.fixture
def newsroom() -> dict:
    """A demo-sized newsroom: three feeds, six targets, posts in three languages, every status."""
    feeds = [
        Feed.objects.create(
            url=f"https://www.nejatngo.org/{lang}/feed/", name=f"Nejat ({lang})", language=lang
        )
        for lang in TITLES
    ]
    targets = [
        Target.objects.create(name=f"demo-{fmt}", kind="outbox", settings={"format": fmt})
        for fmt in ("telegram", "facebook", "twitter", "email", "mastodon", "bluesky")
    ]
    posts = []
    for n in range(12):
        feed = feeds[n % 3]
        posts.append(
            Post.objects.create(
                feed=feed,
                guid=f"p{n}",
                url=f"https://www.nejatngo.org/{feed.language}/?p={9000 + n}",
                title=f"{TITLES[feed.language]} ({n})",
                language=feed.language,
                published_at=timezone.now() - timedelta(days=n),
            )
        )
    deliveries = []
    for n, post in enumerate(posts[:6]):
        for m, target in enumerate(targets):
            status = STATUSES[(n + m) % len(STATUSES)]
            created = timezone.now() - timedelta(days=n)
            deliveries.append(
                Delivery.objects.create(
                    post=post,
                    target=target,
                    status=status,
                    created_at=created,
                    rendered_text=f"{post.title}\n{post.url}",
                    attempts=1,
                    last_error="HTTP 503 from the network" if status in ("failed", "retrying") else "",
                )
            )
    Feed.objects.filter(pk=feeds[2].pk).update(
        consecutive_failures=4, last_status="error", last_error="HTTP 404"
    )
    Target.objects.filter(pk=targets[1].pk).update(
        paused_at=timezone.now(), paused_reason="token expired (190)"
    )
    make_user("admin", "admin")
    make_user("editor", "editor")
    return {"feeds": feeds, "targets": targets, "posts": posts, "deliveries": deliveries}


def no_sideways_scroll(browser) -> None:
    """Neither the page nor a results table scrolls sideways."""
    page = browser.driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert page[0] <= page[1], f"the page is {page[0]} px wide in a {page[1]} px window"
    for results in browser.find_all(".results"):
        inner = browser.driver.execute_script(
            "return [arguments[0].scrollWidth, arguments[0].clientWidth]", results
        )
        assert inner[0] <= inner[1], f"the results table is {inner[0]} px wide in {inner[1]} px"


def visible_in_viewport(browser, element) -> bool:
    return browser.driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return r.width > 0 && r.left >= 0 && r.top >= 0"
        " && r.right <= innerWidth && r.bottom <= innerHeight;",
        element,
    )


def test_the_start_page_counts_match_the_database_on_a_laptop_and_a_phone(browser, newsroom, viewport):
    viewport(LAPTOP)
    browser.login("admin")
    assert browser.driver.current_url.endswith("/admin/")
    assert browser.find("h1").text == "Today at the desk"
    start = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    for row in browser.find_all("#desk-counts tbody tr"):
        name = row.get_attribute("data-target")
        for status in ("sent", "failed", "uncertain"):
            shown = row.find_element(By.CSS_SELECTOR, f'td[data-period="today"][data-status="{status}"]').text
            expected = Delivery.objects.filter(
                target__name=name, status=status, created_at__gte=start
            ).count()
            assert int(shown) == expected, (name, status)
        waiting = Delivery.objects.filter(target__name=name, status__in=("queued", "retrying", "sending"))
        assert int(row.find_element(By.CSS_SELECTOR, ".count-waiting").text) == waiting.count()
    assert (
        browser.find('#desk-attention li[data-name="demo-facebook"]').get_attribute("data-state") == "paused"
    )
    assert browser.find('#desk-attention li[data-what="feed"]').get_attribute("data-state") == "failing"
    assert browser.find("#worker-heartbeat").get_attribute("data-ok") == "false"  # no worker in this test
    rtl = browser.find(".desk-post-title[dir=auto]")
    assert rtl.get_attribute("dir") == "auto"
    no_sideways_scroll(browser)
    browser.screenshot("desk-laptop")
    browser.screenshot("desk-laptop-posts", show="#desk-posts")

    # A count opens the log filtered to exactly those deliveries.
    row = browser.find('#desk-counts tr[data-target="demo-twitter"]')
    link = row.find_element(By.CSS_SELECTOR, 'td[data-period="7d"][data-status="sent"] a')
    count = int(link.text)
    link.click()
    browser.wait_for(lambda d: "/delivery/" in d.current_url, "the filtered log")
    assert len(browser.find_all("#result_list tbody tr")) == count
    browser.screenshot("log-from-desk")

    viewport(PHONE, mobile=True)
    browser.open("/admin/")
    no_sideways_scroll(browser)
    browser.screenshot("desk-phone")
    browser.screenshot("desk-phone-counts", show="#desk-counts")


def test_a_sent_delivery_has_no_edit_control_even_for_a_superuser(browser, newsroom, viewport):
    from django.contrib.auth import get_user_model

    from tests.accounts import PASSWORD

    get_user_model().objects.create_superuser("root", "root@example.org", PASSWORD)
    viewport(LAPTOP)
    sent = next(d for d in newsroom["deliveries"] if d.status == "sent")
    DeliveryAttempt.objects.create(delivery=sent, number=1, outcome="sent", worker="celery@w1")
    browser.login("root")
    browser.open(f"/admin/syndicator/delivery/{sent.pk}/change/")
    assert browser.find(".status-badge").get_attribute("data-status") == "sent"
    assert not browser.find_all("textarea, input[name=text_override], input[name=_save], .deletelink")
    assert browser.find(".message-text").get_attribute("dir") == "auto"
    no_sideways_scroll(browser)
    browser.screenshot("delivery-sent")
    browser.open("/admin/syndicator/delivery/")
    options = [o.get_attribute("value") for o in browser.find_all("select[name=action] option")]
    assert "delete_selected" not in options
    browser.screenshot("deliveries")
    no_sideways_scroll(browser)


def test_poll_now_returns_at_once_and_the_page_shows_the_result(
    browser, feed_server, celery_worker, viewport
):
    viewport(LAPTOP)
    rss = (
        "<rss version='2.0'><channel><title>Slow</title><item><guid>s1</guid>"
        "<title>Arrived after a wait</title><link>https://news.example/s1</link></item></channel></rss>"
    )
    feed_server.set("/slow.xml", rss, delay=4)
    feed = Feed.objects.create(url=feed_server.url("/slow.xml"), name="A slow feed", backfill=1)
    make_user("admin", "admin")
    browser.login("admin")
    browser.open(f"/admin/syndicator/feed/{feed.pk}/change/")
    started = time.monotonic()
    browser.find("#poll-feed").click()
    browser.wait_for(lambda d: "poll_queued=" in d.current_url, "the page after Poll now", timeout=10)
    took = time.monotonic() - started
    assert took < 3, f"Poll now took {took:.1f} s"
    assert browser.find("#poll-result").get_attribute("data-state") == "waiting"
    browser.screenshot("poll-queued", show="#poll-result")
    browser.wait_for(
        lambda d: d.find_element(By.ID, "poll-result").get_attribute("data-state") == "done",
        "the poll's result",
        30,
    )
    assert "1 new posts" in browser.find("#poll-result").text
    assert Post.objects.filter(feed=feed).count() == 1
    browser.screenshot("poll-done", show="#poll-result")


def test_every_list_fits_a_laptop_and_the_repost_button_shows_without_scrolling(browser, newsroom, viewport):
    viewport(LAPTOP)
    browser.login("admin")
    browser.open("/admin/syndicator/post/")
    assert browser.driver.execute_script("return innerWidth") == LAPTOP[0]
    headers = [th.text.lower() for th in browser.find_all("#result_list thead th")]
    assert "published" in headers and "add post" not in browser.find("#content").text.lower()
    first_repost = browser.find("#result_list tbody tr td.field-repost_link a.button")
    assert visible_in_viewport(browser, first_repost)
    no_sideways_scroll(browser)
    browser.screenshot("posts")
    for path, name in [
        ("/admin/syndicator/delivery/", "deliveries"),
        ("/admin/syndicator/feed/", "feeds"),
        ("/admin/syndicator/target/", "targets"),
        ("/admin/auth/user/", "users"),
        (f"/admin/syndicator/post/{newsroom['posts'][1].pk}/change/", "post"),
        (f"/admin/syndicator/post/{newsroom['posts'][1].pk}/repost/", "repost"),
        (f"/admin/syndicator/target/{newsroom['targets'][0].pk}/change/", "target"),
        (f"/admin/syndicator/feed/{newsroom['feeds'][2].pk}/change/", "feed"),
        (f"/admin/syndicator/delivery/{newsroom['deliveries'][1].pk}/change/", "delivery"),
    ]:
        browser.open(path)
        browser.screenshot(name)  # first, so a page that does not fit is there to look at
        no_sideways_scroll(browser)
