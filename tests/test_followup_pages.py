"""The web side of following an article (#12): "Update everywhere" and "Delete everywhere" on the
post page, their confirm pages, the unpublished banner, each delivery's history, the delivery
page's edit and delete attempts, and what a target's network allows on the target page.

Real pages through Django's test client, real PostgreSQL, and dry-run outbox targets that imitate
Telegram (edits at any time, deletes within 48 hours), X (edits within 30 minutes, at most 5) and
email (neither); the deliveries are sent and followed up by ``delivery.attempt_delivery``, the
worker's own code.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from syndicator import delivery as deliveries
from syndicator import followup
from syndicator.dispatch import create_auto_deliveries
from syndicator.models import Delivery, DeliveryAttempt, Feed, Post, Target
from tests.accounts import PASSWORD, make_user

pytestmark = pytest.mark.django_db(transaction=True)

Status = Delivery.Status
HOSTILE = "Story <script>alert(1)</script> & more"


@pytest.fixture
def targets() -> dict[str, Target]:
    return {
        name: Target.objects.create(name=name, kind="outbox", settings={"format": fmt})
        for name, fmt in (("tg", "telegram"), ("x", "twitter"), ("mail", "email"))
    }


@pytest.fixture
def post(targets) -> Post:
    """A post sent to the three targets."""
    feed = Feed.objects.create(url="https://news.example/feed", name="News", enabled=False)
    story = Post.objects.create(
        feed=feed, guid="s1", url="https://news.example/s1", title="Story one", summary="Body", language="en"
    )
    for delivery in create_auto_deliveries([story]):
        deliveries.attempt_delivery(delivery.pk)
    assert set(Delivery.objects.filter(post=story).values_list("status", flat=True)) == {Status.SENT}
    return story


def logged_in(name: str, role: str | None = None, *, staff: bool = False, csrf: bool = False) -> Client:
    user = make_user(name, role)
    if staff:
        user.is_staff = True
        user.save()
    client = Client(enforce_csrf_checks=csrf)
    assert client.login(username=name, password=PASSWORD)
    return client


@pytest.fixture
def editor() -> Client:
    return logged_in("edna", "editor")


def update_url(post: Post) -> str:
    return reverse("admin:syndicator_post_update_everywhere", args=[post.pk])


def delete_url(post: Post) -> str:
    return reverse("admin:syndicator_post_delete_everywhere", args=[post.pk])


def post_url(post: Post) -> str:
    return reverse("admin:syndicator_post_change", args=[post.pk])


def changed(post: Post, title: str = "Story one, corrected") -> None:
    Post.objects.filter(pk=post.pk).update(title=title, version=2)


def plan_rows(response) -> dict[str, dict]:
    return {row.plan.target: row for row in response.context["rows"]}


def asked(post: Post) -> dict[str, tuple[str, str]]:
    return {
        d.target.name: (d.followup, d.followup_by)
        for d in Delivery.objects.filter(post=post).select_related("target")
    }


def work(post: Post) -> None:
    """What a worker does with the tasks the confirmation sent."""
    for pk in Delivery.objects.filter(post=post).values_list("pk", flat=True):
        deliveries.attempt_delivery(pk)


def texts(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_the_post_page_offers_both_buttons_to_editors_and_admins(post):
    for client in (logged_in("edna", "editor"), logged_in("ada", "admin")):
        page = client.get(post_url(post)).content.decode()
        assert f'href="{update_url(post)}"' in page and "Update everywhere" in page
        assert f'href="{delete_url(post)}"' in page and "Delete everywhere" in page


def test_a_user_without_the_role_gets_403_and_changes_nothing(post):
    changed(post)
    no_role = logged_in("viewer", staff=True)
    reader = logged_in("reader", staff=True)  # may read posts, but not ask anything of a network
    get_user_model().objects.get(username="reader").user_permissions.add(
        Permission.objects.get(codename="view_post")
    )
    not_staff = logged_in("nobody")

    for url in (update_url(post), delete_url(post)):
        assert no_role.get(url).status_code == 403
        assert no_role.post(url, {"targets": ["tg", "x"]}).status_code == 403
        assert reader.get(url).status_code == 403
        assert reader.post(url, {"targets": ["tg", "x"]}).status_code == 403
        assert not_staff.get(url).status_code == 302  # the admin's login page
        assert Client().post(url, {"targets": ["tg"]}).status_code == 302
    page = reader.get(post_url(post)).content.decode()
    assert "Update everywhere" not in page and "Delete everywhere" not in page
    assert asked(post) == {"tg": ("", ""), "x": ("", ""), "mail": ("", "")}


def test_the_update_page_lists_what_each_target_will_do_and_changes_nothing(editor, post):
    changed(post)
    # X allows edits for 30 minutes (as its documentation says, declared in its Capabilities).
    Delivery.objects.filter(post=post, target__name="x").update(sent_at=timezone.now() - timedelta(hours=1))

    response = editor.get(update_url(post))

    assert response.status_code == 200
    rows = plan_rows(response)
    assert (rows["tg"].verdict, rows["tg"].plan.asked) == ("will edit", True)
    assert rows["x"].verdict == "will not edit" and "30 minutes" in rows["x"].detail
    assert rows["mail"].verdict == "will not edit" and "cannot be edited" in rows["mail"].detail
    page = response.content.decode()
    assert "csrfmiddlewaretoken" in page and 'id="everywhere-confirm"' in page
    # The "only these" boxes, ticked: one for each target that can do it; the others say why not.
    assert re.findall(r'name="targets" value="(\w+)"[^>]*checked', page) == ["tg"]
    assert asked(post) == {"tg": ("", ""), "x": ("", ""), "mail": ("", "")}, "a preview changes nothing"


def test_the_delete_page_says_what_is_deleted_what_is_cancelled_and_what_cannot_be(editor, post, targets):
    later = Target.objects.create(name="later", kind="outbox", settings={"format": "mastodon"})
    waiting = Delivery.objects.create(post=post, target=later)  # queued, not sent yet

    rows = plan_rows(editor.get(delete_url(post)))

    assert rows["tg"].verdict == rows["x"].verdict == "will delete"
    assert rows["later"].verdict == "will cancel" and "not sent yet" in rows["later"].detail
    assert rows["mail"].verdict == "will not delete" and "cannot be deleted" in rows["mail"].detail
    assert Delivery.objects.get(pk=waiting.pk).status == Status.QUEUED


def test_confirming_an_update_asks_the_edits_in_the_editors_name(editor, post):
    changed(post, HOSTILE)

    response = editor.post(update_url(post), {"targets": ["tg", "x", "mail"]}, follow=True)

    assert response.redirect_chain[-1][0] == post_url(post)
    assert asked(post) == {"tg": ("edit", "edna"), "x": ("edit", "edna"), "mail": ("", "")}
    said = texts(response)
    assert any("edit asked by edna for tg, x" in m for m in said), said
    assert any(m.startswith("Not edited: mail:") and "cannot be edited" in m for m in said), said

    work(post)
    page = editor.get(post_url(post)).content.decode()
    assert page.count("sent, edited 1 time") == 2  # tg and x
    tg = Delivery.objects.get(post=post, target__name="tg")
    assert tg.edits == 1 and tg.status == Status.SENT
    edit = DeliveryAttempt.objects.get(delivery__post=post, delivery__target__name="x", kind="edit")
    assert edit.actor_name == "edna" and "<script>" in edit.text_after


def test_the_delivery_page_shows_an_edit_with_its_texts_escaped(editor, post):
    changed(post, HOSTILE)
    editor.post(update_url(post), {"targets": ["x"]})
    work(post)
    x = Delivery.objects.get(post=post, target__name="x")

    page = editor.get(reverse("admin:syndicator_delivery_change", args=[x.pk])).content.decode()

    edit_row = re.search(r'<tr class="attempt"[^>]*data-kind="edit".*?</tr>', page, re.S)
    assert edit_row and "<td>edit</td>" in edit_row.group(0).lower()  # the "what" column
    texts_row = re.search(r'<tr class="attempt-texts".*?</tr>', page, re.S)
    assert texts_row is not None
    before = re.search(r'class="text-before"[^>]*>(.*?)</pre>', texts_row.group(0), re.S)
    after = re.search(r'class="text-after"[^>]*>(.*?)</pre>', texts_row.group(0), re.S)
    assert before and "Story one" in before.group(1)
    assert after and "Story &lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in after.group(1)
    assert "<script>alert(1)" not in page
    assert "sent, edited 1 time" in page


def test_only_the_ticked_targets_are_asked(editor, post):
    changed(post)

    editor.post(update_url(post), {"targets": ["tg", "mail"]})  # mail cannot: not offered, ignored

    assert asked(post) == {"tg": ("edit", "edna"), "x": ("", ""), "mail": ("", "")}


def test_when_no_target_can_do_it_there_is_nothing_to_confirm(editor, post):
    Delivery.objects.filter(post=post).exclude(target__name="mail").update(status=Status.CANCELLED)
    changed(post)

    page = editor.get(update_url(post)).content.decode()
    assert 'id="everywhere-none-can"' in page and 'id="everywhere-confirm"' not in page
    response = editor.post(update_url(post), {"targets": ["mail"]})
    assert response.status_code == 200 and "No target can edit it now." in response.content.decode()
    assert asked(post)["mail"] == ("", "")


def test_confirming_with_no_target_ticked_asks_nothing(editor, post):
    changed(post)

    response = editor.post(update_url(post), {})

    assert response.status_code == 200 and "Choose at least one target." in response.content.decode()
    assert asked(post) == {"tg": ("", ""), "x": ("", ""), "mail": ("", "")}


def test_delete_everywhere_deletes_in_the_editors_name(post):
    admin = logged_in("ada", "admin")

    response = admin.post(delete_url(post), {"targets": ["tg", "x", "mail"]}, follow=True)

    assert asked(post) == {"tg": ("delete", "ada"), "x": ("delete", "ada"), "mail": ("", "")}
    assert any("delete asked by ada for tg, x" in m for m in texts(response))
    work(post)
    tg = Delivery.objects.get(post=post, target__name="tg")
    assert (tg.status, tg.deleted_by) == (Status.DELETED, "editor ada")
    page = admin.get(post_url(post)).content.decode()
    assert page.count("sent, deleted") == 2 and "— by editor ada" in page
    detail = admin.get(reverse("admin:syndicator_delivery_change", args=[tg.pk])).content.decode()
    assert 'id="deleted-by"' in detail and "deleted by editor ada" in detail
    delete_row = re.search(r'<tr class="attempt"[^>]*data-kind="delete".*?</tr>', detail, re.S)
    assert delete_row and "deleted by editor ada" in delete_row.group(0)
    # Asked again, nothing is left to delete: the page says so per target.
    rows = plan_rows(admin.get(delete_url(post)))
    assert rows["tg"].verdict == "will not delete" and rows["tg"].detail == "already deleted"


def test_confirming_needs_the_csrf_token(post):
    changed(post)
    client = logged_in("edna", "editor", csrf=True)

    assert client.post(update_url(post), {"targets": ["tg"]}).status_code == 403
    assert asked(post)["tg"] == ("", "")

    page = client.get(update_url(post))
    token = page.cookies["csrftoken"].value
    response = client.post(update_url(post), {"targets": ["tg"], "csrfmiddlewaretoken": token})
    assert response.status_code == 302 and asked(post)["tg"] == ("edit", "edna")


def test_an_unpublished_article_shows_a_banner_with_the_flagged_deliveries(editor, post, targets):
    Post.objects.filter(pk=post.pk).update(
        unpublished_at=timezone.now(), unpublished_reason="gone from the feed"
    )
    post.refresh_from_db()
    followup.post_unpublished(post, reason="gone from the feed")  # every target's policy: flag

    page = editor.get(post_url(post)).content.decode()

    banner = re.search(r'<div class="unpublished-banner".*?</div>', page, re.S)
    assert banner, "no banner"
    text = banner.group(0)
    assert "This article was unpublished at its source" in text and "gone from the feed" in text
    flagged = re.findall(r'<li data-delivery="(\d+)"', text)
    # Flagged: what an editor can still delete; an email (never deletable) only says it stays.
    deletable = Delivery.objects.filter(post=post).exclude(target__settings__format="email")
    assert sorted(map(int, flagged)) == sorted(deletable.values_list("pk", flat=True))
    assert "flagged for an editor (on_unpublish is flag)" in text
    assert f'id="banner-delete-everywhere" href="{delete_url(post)}"' in text
    assert page.count("sent, flagged") == deletable.count()


def test_a_post_that_went_nowhere_offers_no_follow_up(editor, targets):
    feed = Feed.objects.create(url="https://news.example/other", enabled=False)
    lonely = Post.objects.create(feed=feed, guid="n1", url="https://news.example/n1", title="Nowhere")

    assert "Update everywhere" not in editor.get(post_url(lonely)).content.decode()
    response = editor.get(update_url(lonely))
    assert response.status_code == 200 and 'id="everywhere-nothing"' in response.content.decode()


def test_the_delivery_log_filters_by_the_follow_up_statuses(editor, post):
    changed(post)
    editor.post(delete_url(post), {"targets": ["tg"]})
    work(post)
    url = reverse("admin:syndicator_delivery_changelist")

    page = editor.get(url).content.decode()
    for status in ("editing", "deleting", "deleted"):
        assert f"?status__exact={status}" in page
    listed = editor.get(url, {"status__exact": "deleted"}).context["cl"].result_list
    assert [d.target.name for d in listed] == ["tg"]


@pytest.mark.parametrize(
    ("name", "note", "edits", "deletes"),
    [
        (
            "tg",
            "edits its own posts at any time; deletes them within 48 hours",
            "at any time",
            "within 48 hours",
        ),
        (
            "x",
            "edits a post within 30 minutes of posting, at most 5 times",
            "within 30 minutes",
            "at any time",
        ),
        ("mail", "a sent email cannot be changed or taken back", "not possible", "not possible"),
    ],
)
def test_the_target_page_says_what_its_network_allows_and_its_policies(targets, name, note, edits, deletes):
    url = reverse("admin:syndicator_target_change", args=[targets[name].pk])
    admin_page = logged_in("ada", "admin").get(url).content.decode()
    editor_page = logged_in("edna", "editor").get(url).content.decode()  # read-only, the same line

    for page in (admin_page, editor_page):
        line = re.search(r'<div class="target-abilities".*?</div>', page, re.S)
        assert line, "no abilities line"
        assert note in line.group(0) and edits in line.group(0) and deletes in line.group(0)
        assert "on_update</code> = <strong" in line.group(0)
    # The form lists both policies with their choices, like every declared setting.
    for setting, choices in (("on_update", ("edit", "ignore")), ("on_unpublish", ("delete", "flag"))):
        select = re.search(rf'<select name="setting__{setting}".*?</select>', admin_page, re.S)
        assert select, setting
        for choice in choices:
            assert f'value="{choice}"' in select.group(0)
