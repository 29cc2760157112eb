"""An editor, in headless Chromium, reposts a post to two networks with edited text.

The whole path is real: the browser drives the Repost page on a live server, a Celery worker on
the real broker sends to the Telegram and X emulators, and the post page shows both deliveries.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium.webdriver.common.by import By

from syndicator.models import Delivery, Feed, Post
from tests.accounts import make_user
from tests.emulators import telegram
from tests.emulators import twitter as x

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

EDITED = "Ashraf 3: a new report on the residents' rights — read it again"


@pytest.fixture
def networks() -> Iterator[dict]:
    with telegram.Harness() as tg, x.Harness() as tw:
        yield {"telegram": tg, "twitter": tw}


def test_an_editor_reposts_to_two_targets_with_edited_text(browser, networks, celery_worker):
    feed = Feed.objects.create(url="https://www.nejatngo.org/en/feed/", name="Nejat EN", language="en")
    post = Post.objects.create(
        feed=feed,
        guid="https://www.nejatngo.org/?p=90006",
        url="https://www.nejatngo.org/en/?p=90006",
        title="Nejat NewsLetter – January 2026",
        summary="The January issue of the Nejat NewsLetter is out.",
        categories=["MEK"],
        language="en",
    )
    tg_target = networks["telegram"].make_target(name="telegram-channel")
    x_target = networks["twitter"].make_target(name="x-account")
    make_user("editor", "editor")

    browser.login("editor")
    browser.open("/admin/syndicator/post/")
    browser.screenshot("posts")
    browser.driver.find_element(By.LINK_TEXT, "Repost").click()
    browser.wait_for(lambda d: d.current_url.endswith(f"/post/{post.pk}/repost/"), "the Repost page")
    cards = {card.get_attribute("data-target"): card for card in browser.find_all(".repost-card")}
    assert set(cards) == {"telegram-channel", "x-account"}
    assert "Nejat NewsLetter" in cards["x-account"].find_element(By.CSS_SELECTOR, ".repost-rendered").text
    browser.screenshot("repost-default")

    for card in cards.values():
        card.find_element(By.CSS_SELECTOR, "input[type=checkbox]").click()
    browser.find("textarea[name=text]").send_keys(EDITED)
    # The live count is the server's: X counts the edited text plus the link at 23.
    expected_x = len(EDITED) + 2 + 23
    browser.wait_for(
        lambda d: cards["x-account"].find_element(By.CSS_SELECTOR, ".length").text == str(expected_x),
        "the X count of the edited text",
    )
    assert cards["x-account"].find_element(By.CSS_SELECTOR, ".limit").text == "280"
    assert EDITED in cards["telegram-channel"].find_element(By.CSS_SELECTOR, ".repost-rendered").text
    assert "chosen" in cards["x-account"].get_attribute("class")
    browser.screenshot("repost-edited")

    browser.find("#repost-submit").click()
    browser.wait_for(lambda d: d.current_url.endswith(f"/post/{post.pk}/change/"), "the post page")
    assert (
        "Reposted to telegram-channel, x-account: 2 deliveries queued." in browser.find(".messagelist").text
    )

    def both_sent(driver) -> bool:
        driver.refresh()
        statuses = {
            el.get_attribute("data-target"): el.text
            for el in driver.find_elements(By.CSS_SELECTOR, ".delivery-status")
        }
        return statuses == {"telegram-channel": "sent", "x-account": "sent"}

    browser.wait_for(both_sent, "both deliveries to show as sent", timeout=40)
    browser.screenshot("post-deliveries", show=".delivery-status")

    made = Delivery.objects.filter(post=post)
    assert {(d.target_id, d.origin, d.requested_by, d.status) for d in made} == {
        (tg_target.pk, "manual", "editor", "sent"),
        (x_target.pk, "manual", "editor", "sent"),
    }
    [tweet] = networks["twitter"].sent()
    [message] = networks["telegram"].sent()
    assert tweet["text"].startswith(EDITED) and post.url in tweet["text"]
    assert message["text"].startswith(EDITED)


def test_a_text_too_long_for_x_is_flagged_live_and_refused(browser, networks):
    feed = Feed.objects.create(url="https://www.nejatngo.org/fa/feed/", name="Nejat FA", language="fa")
    post = Post.objects.create(
        feed=feed, guid="fa-1", url="https://www.nejatngo.org/fa/?p=1", title="گزارش تازه", language="fa"
    )
    networks["telegram"].make_target(name="telegram-channel")
    networks["twitter"].make_target(name="x-account")
    make_user("editor", "editor")

    browser.login("editor")
    browser.open(f"/admin/syndicator/post/{post.pk}/repost/")
    cards = {card.get_attribute("data-target"): card for card in browser.find_all(".repost-card")}
    for card in cards.values():
        card.find_element(By.CSS_SELECTOR, "input[type=checkbox]").click()
    browser.find("textarea[name=text]").send_keys(
        "خبر فوری " * 40
    )  # 360 characters and the link: over 280 on X

    browser.wait_for(
        lambda d: "too-long" in cards["x-account"].get_attribute("class"), "X's card to turn red"
    )
    assert "too-long" not in cards["telegram-channel"].get_attribute("class")
    count = cards["x-account"].find_element(By.CSS_SELECTOR, ".repost-count")
    assert (
        "over" in count.get_attribute("class")
        and int(count.find_element(By.CSS_SELECTOR, ".length").text) > 280
    )
    browser.screenshot("too-long-live")

    browser.find("#repost-submit").click()
    errors = browser.wait_for(lambda d: d.find_elements(By.CSS_SELECTOR, "#text-errors li"), "the refusal")
    assert errors[0].text.startswith("x-account: the text is")
    assert not Delivery.objects.exists()
    # The refused form keeps the editor's choice and text.
    assert browser.find("textarea[name=text]").get_attribute("value").startswith("خبر فوری")
    assert all(c.get_attribute("checked") for c in browser.find_all(".repost-card input[type=checkbox]"))
    browser.screenshot("too-long-refused")
