"""An editor, in headless Chromium, updates a changed article everywhere, then deletes it everywhere.

Dry-run outbox targets imitating Telegram (edits, deletes within 48 hours) and email (neither), so
nothing leaves the machine; ``delivery.attempt_delivery`` (the worker's own code) sends and then
follows up. Screenshots of the confirm pages and the post page go to var/screenshots/ as well as
tests/artifacts/.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from syndicator import delivery as deliveries
from syndicator.dispatch import create_auto_deliveries
from syndicator.models import Delivery, Feed, Post, Target
from tests.accounts import make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def keep(shot: Path) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, SCREENSHOTS / shot.name)


def work(post: Post) -> None:
    for pk in Delivery.objects.filter(post=post).values_list("pk", flat=True):
        deliveries.attempt_delivery(pk)


def lives(browser) -> dict[str, str]:
    """Each delivery's history cell on the post page, by target."""
    cells = {}
    for row in browser.find_all("tr.has_original, .inline-related tbody tr"):
        status = row.find_elements(By.CSS_SELECTOR, ".delivery-status")
        history = row.find_elements(By.CSS_SELECTOR, ".delivery-history")
        if status and history:
            cells[status[0].get_attribute("data-target")] = history[0].text
    return cells


def test_an_editor_updates_then_deletes_an_article_everywhere(browser):
    make_user("edna", "editor")
    for name, fmt in (("telegram-channel", "telegram"), ("newsletter", "email")):
        Target.objects.create(name=name, kind="outbox", settings={"format": fmt})
    feed = Feed.objects.create(url="https://www.nejatngo.org/en/feed/", name="Nejat EN", enabled=False)
    post = Post.objects.create(
        feed=feed,
        guid="https://www.nejatngo.org/?p=90006",
        url="https://www.nejatngo.org/en/?p=90006",
        title="Nejat NewsLetter – January 2026",
        summary="The January issue of the Nejat NewsLetter is out.",
        language="en",
    )
    for delivery in create_auto_deliveries([post]):
        deliveries.attempt_delivery(delivery.pk)
    Post.objects.filter(pk=post.pk).update(title="Nejat NewsLetter – January 2026 (corrected)", version=2)

    browser.login("edna")
    channel = Target.objects.get(name="telegram-channel")
    browser.open(f"/admin/syndicator/target/{channel.pk}/change/")
    line = browser.find("#target-abilities").text
    assert "deletes them within 48 hours" in line and "on_unpublish = flag" in line
    keep(browser.screenshot("target-abilities"))
    browser.open(f"/admin/syndicator/post/{post.pk}/change/")
    assert lives(browser) == {"telegram-channel": "sent", "newsletter": "sent"}
    browser.find("#update-everywhere-link").click()
    browser.wait_for(lambda d: d.current_url.endswith("/update-everywhere/"), "the confirm page")
    plans = {
        row.get_attribute("data-target"): row.find_element(By.CSS_SELECTOR, ".plan-verdict").text
        for row in browser.find_all("tr.plan")
    }
    assert plans == {"telegram-channel": "will edit", "newsletter": "will not edit"}
    reason = browser.find('tr.plan[data-target="newsletter"] .plan-reason').text
    assert "cannot be edited" in reason
    keep(browser.screenshot("update-confirm"))

    browser.find("#everywhere-confirm").click()
    browser.wait_for(lambda d: d.current_url.endswith(f"/post/{post.pk}/change/"), "the post page")
    keep(browser.screenshot("post-update-asked"))
    said = browser.find(".messagelist").text
    assert "edit asked by edna for telegram-channel" in said and "Not edited: newsletter" in said
    work(post)
    browser.driver.refresh()
    assert lives(browser) == {"telegram-channel": "sent, edited 1 time", "newsletter": "sent"}
    keep(browser.screenshot("post-edited", show=".delivery-history"))
    tg = Delivery.objects.get(post=post, target__name="telegram-channel")
    assert "(corrected)" in tg.rendered_text and tg.edits == 1

    browser.find("#delete-everywhere-link").click()
    browser.wait_for(lambda d: d.current_url.endswith("/delete-everywhere/"), "the delete confirm page")
    assert browser.find('tr.plan[data-target="telegram-channel"] .plan-verdict').text == "will delete"
    assert browser.find('tr.plan[data-target="newsletter"] .plan-verdict').text == "will not delete"
    keep(browser.screenshot("delete-confirm"))
    browser.find("#everywhere-confirm").click()
    browser.wait_for(lambda d: d.current_url.endswith(f"/post/{post.pk}/change/"), "the post page")
    assert "delete asked by edna for telegram-channel" in browser.find(".messagelist").text
    work(post)
    browser.driver.refresh()
    assert lives(browser) == {"telegram-channel": "sent, edited 1 time, deleted", "newsletter": "sent"}
    assert any("deleted — by editor edna" in cell.text for cell in browser.find_all("td.field-life"))
    keep(browser.screenshot("post-deleted", show=".delivery-history"))

    browser.find(f'a[href$="/delivery/{tg.pk}/change/"]').click()
    browser.wait_for(lambda d: d.find_elements(By.ID, "attempt-timeline"), "the delivery page")
    kinds = [row.get_attribute("data-kind") for row in browser.find_all("tr.attempt")]
    assert kinds == ["send", "edit", "delete"]
    assert "(corrected)" in browser.find("tr.attempt-texts .text-after").text
    assert "deleted by editor edna" in browser.find("#deleted-by").text
    keep(browser.screenshot("delivery-timeline", show="#attempt-timeline"))


def test_an_unpublished_article_shows_its_banner(browser):
    from django.utils import timezone

    from syndicator import followup

    make_user("edna", "editor")
    Target.objects.create(name="telegram-channel", kind="outbox", settings={"format": "telegram"})
    feed = Feed.objects.create(url="https://news.example/feed", name="News", enabled=False)
    post = Post.objects.create(feed=feed, guid="g1", url="https://news.example/1", title="Pulled story")
    for delivery in create_auto_deliveries([post]):
        deliveries.attempt_delivery(delivery.pk)
    Post.objects.filter(pk=post.pk).update(
        unpublished_at=timezone.now(), unpublished_reason="gone from the feed"
    )
    post.refresh_from_db()
    followup.post_unpublished(post, reason="gone from the feed")

    browser.login("edna")
    browser.open(f"/admin/syndicator/post/{post.pk}/change/")
    banner = browser.find("#unpublished-banner")
    assert "gone from the feed" in banner.text and "telegram-channel" in banner.text
    assert banner.find_element(By.ID, "banner-delete-everywhere").is_displayed()
    keep(browser.screenshot("post-unpublished"))
