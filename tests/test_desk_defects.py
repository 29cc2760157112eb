"""Small defects a new user met (issue 14), each with the behaviour that fixes it."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from syndicator.models import Feed, Post, Target
from syndicator.reposting import preview

pytestmark = pytest.mark.django_db


@pytest.fixture
def post() -> Post:
    feed = Feed.objects.create(url="https://news.example/feed", name="News", language="ar")
    return Post.objects.create(
        feed=feed, guid="1", url="https://news.example/1", title="خبر عاجل", language="ar"
    )


def change_page(client, target: Target) -> str:
    return client.get(reverse("admin:syndicator_target_change", args=[target.pk])).content.decode()


def test_the_outbox_test_switches_are_folded_under_testing(admin_role_client):
    box = Target.objects.create(name="box", kind="outbox", settings={"format": "twitter"})
    html = change_page(admin_role_client, box)
    testing = re.search(r'<fieldset class="[^"]*testing-switches[^"]*".*?</fieldset>', html, re.S)
    assert testing, "no folded testing fieldset"
    for name in ("setting__fail", "setting__fail_next", "setting__fail_retry_after"):
        assert f'name="{name}"' in testing.group(0)
        assert html.count(f'name="{name}"') == 1
    assert "<details" in testing.group(0)  # Django's "collapse" fieldset folds in a <details>
    assert 'name="setting__format"' not in testing.group(0)


def test_editors_see_a_test_switch_only_when_it_is_set(editor_client):
    quiet = Target.objects.create(name="quiet", kind="outbox")
    failing = Target.objects.create(name="failing", kind="outbox", settings={"fail": "transient"})
    assert "fail_next" not in change_page(editor_client, quiet)
    html = change_page(editor_client, failing)
    assert "<th>fail</th><td>transient</td>" in html and "fail_next" not in html


def test_the_secret_help_text_is_a_whole_sentence_when_no_variable_is_named(admin_role_client):
    box = Target.objects.create(name="box", kind="outbox")
    html = change_page(admin_role_client, box)
    assert "never the secret itself) — no variable is named yet" in html


def test_the_template_preview_lays_out_right_to_left_text_by_its_direction(admin_role_client, post):
    box = Target.objects.create(name="box", kind="outbox", settings={"format": "email"})
    html = change_page(admin_role_client, box)
    for element in ('<pre id="preview-text" dir="auto">', '<bdi id="preview-subject" dir="auto">'):
        assert element in html
    assert f'<option value="{post.pk}" dir="auto">خبر عاجل</option>' in html


def test_an_over_limit_repost_text_shows_no_shortened_message(editor_client, post):
    x = Target.objects.create(name="x", kind="outbox", settings={"format": "twitter"})
    shown = preview(post, x, "كلمة " * 80)
    assert not shown.fits and shown.text == "" and "refused, not shortened" in shown.error
    assert preview(post, x, "short").text.startswith("short")
    html = editor_client.post(
        reverse("admin:syndicator_post_repost", args=[post.pk]), {"targets": [x.pk], "text": "كلمة " * 80}
    ).content.decode()
    assert "كلمة كلمة" in html.split('class="repost-cards"')[0]  # in the textarea, as typed
    card = html.split('data-target="x"')[1].split("</pre>")[0]
    assert "كلمة" not in card and "refused, not shortened" in card


def test_the_posts_list_shows_the_published_date_and_offers_no_blank_post(editor_client, post):
    from datetime import UTC, datetime

    Post.objects.filter(pk=post.pk).update(published_at=datetime(2026, 1, 5, 9, 30, tzinfo=UTC))
    html = editor_client.get(reverse("admin:syndicator_post_changelist")).content.decode()
    assert '<th scope="col" class="sortable column-published">' in html
    assert ">2026-01-05 09:30</time>" in html
    assert reverse("admin:syndicator_post_add") not in html


def test_feed_text_is_shown_in_its_own_direction_on_every_page(admin_role_client, post):
    from syndicator.models import Delivery

    target = Target.objects.create(name="box", kind="outbox")
    delivery = Delivery.objects.create(post=post, target=target, status="sent", rendered_text="خبر عاجل")
    pages = {
        reverse("admin:syndicator_feed_changelist"): '<span dir="auto">News</span>',
        reverse("admin:syndicator_delivery_changelist"): '<span dir="auto">خبر عاجل</span>',
        reverse("admin:syndicator_delivery_change", args=[delivery.pk]): 'dir="auto">خبر عاجل</a>',
        reverse("admin:syndicator_post_change", args=[post.pk]): 'dir="auto"',
    }
    for url, fragment in pages.items():
        assert fragment in admin_role_client.get(url).content.decode(), url
    form = admin_role_client.get(reverse("admin:syndicator_post_change", args=[post.pk])).content.decode()
    title_input = (
        form.split('name="title"')[0].rsplit("<", 1)[1] + form.split('name="title"')[1].split(">")[0]
    )
    assert 'dir="auto"' in title_input
