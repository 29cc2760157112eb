"""The editors' Repost page: choose targets, preview each message, edit with live counts, send."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from syndicator.formatting import render_message
from syndicator.models import Delivery, Feed, Post, Target
from syndicator.targets.twitter.text import twitter_length
from tests.accounts import PASSWORD, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def post() -> Post:
    feed = Feed.objects.create(url="https://news.example/fa/feed", name="News FA", language="fa")
    return Post.objects.create(
        feed=feed,
        guid="p1",
        url="https://news.example/fa/?p=1",
        title="گزارش تازه از اشرف ۳",
        summary="<p>خلاصه‌ای از گزارش</p>",
        categories=["حقوق بشر"],
        language="fa",
    )


@pytest.fixture
def targets() -> dict[str, Target]:
    return {
        "x": Target.objects.create(name="x", kind="outbox", settings={"format": "twitter"}),
        "tg": Target.objects.create(name="tg", kind="outbox", settings={"format": "telegram"}),
        "mail": Target.objects.create(name="mail", kind="outbox", settings={"format": "email"}),
        "off": Target.objects.create(name="off", kind="outbox", enabled=False),
    }


@pytest.fixture
def editor() -> Client:
    client = Client()
    assert client.login(username=make_user("ed", "editor").username, password=PASSWORD)
    return client


def repost_url(post: Post) -> str:
    return reverse("admin:syndicator_post_repost", args=[post.pk])


def preview_url(post: Post) -> str:
    return reverse("admin:syndicator_post_repost_preview", args=[post.pk])


def test_the_page_shows_every_enabled_target_with_the_message_the_worker_would_send(editor, post, targets):
    response = editor.get(repost_url(post))

    assert response.status_code == 200
    page = response.content.decode()
    cards = {target.name: card for target, _chosen, card in response.context["cards"]}
    assert set(cards) == {"x", "tg", "mail"}  # not the disabled one
    assert cards["x"].text == render_message(post, "twitter").text
    assert cards["x"].length == twitter_length(cards["x"].text) and cards["x"].limit == 280
    assert cards["mail"].subject and cards["mail"].limit is None
    assert 'name="targets"' in page and "csrfmiddlewaretoken" in page


def test_the_live_preview_counts_an_edited_text_as_each_network_does(editor, post, targets):
    text = "خبر فوری " * 40  # 360 characters: over X's 280, within Telegram's 4096

    response = editor.post(preview_url(post), json.dumps({"text": text}), content_type="application/json")

    assert response.status_code == 200
    previews = {p["target"]: p for p in response.json()["previews"].values()}
    assert previews["x"]["fits"] is False and previews["x"]["limit"] == 280
    assert previews["x"]["length"] > 280 and "weighted" in previews["x"]["unit"]
    assert previews["tg"]["fits"] is True and previews["tg"]["text"].startswith("خبر فوری")
    assert post.url in previews["tg"]["text"]  # the link is added to an edited text


def test_a_repost_to_two_targets_with_edited_text_creates_two_manual_deliveries(editor, post, targets):
    response = editor.post(
        repost_url(post),
        {"targets": [targets["x"].pk, targets["tg"].pk], "text": "Read this again"},
    )

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:syndicator_post_change", args=[post.pk])
    made = Delivery.objects.filter(post=post).order_by("target__name")
    assert [(d.target.name, d.origin, d.requested_by, d.text_override) for d in made] == [
        ("tg", "manual", "ed", "Read this again"),
        ("x", "manual", "ed", "Read this again"),
    ]


def test_a_text_too_long_for_one_chosen_network_is_refused_naming_it(editor, post, targets):
    response = editor.post(
        repost_url(post), {"targets": [targets["x"].pk, targets["tg"].pk], "text": "a " * 200}
    )

    assert response.status_code == 200
    assert not Delivery.objects.exists()
    errors = response.context["form"].errors["text"]
    assert len(errors) == 1 and errors[0].startswith("x: the text is") and "twitter allows 280" in errors[0]


def test_choosing_no_target_or_a_disabled_one_is_refused(editor, post, targets):
    nothing = editor.post(repost_url(post), {"text": ""})
    disabled = editor.post(repost_url(post), {"targets": [targets["off"].pk]})

    assert "Choose at least one target." in nothing.content.decode()
    assert disabled.status_code == 200 and disabled.context["form"].errors["targets"]
    assert not Delivery.objects.exists()


def test_the_post_page_links_to_repost_for_editors(editor, post, targets):
    page = editor.get(reverse("admin:syndicator_post_change", args=[post.pk])).content.decode()
    listing = editor.get(reverse("admin:syndicator_post_changelist")).content.decode()

    assert 'id="repost-link"' in page and repost_url(post) in page
    assert repost_url(post) in listing


def test_the_post_list_shows_each_targets_latest_status(editor, post, targets):
    Delivery.objects.create(post=post, target=targets["x"], status="failed")
    Delivery.objects.create(post=post, target=targets["x"], status="sent", origin="manual")
    Delivery.objects.create(post=post, target=targets["tg"], status="queued")

    page = editor.get(reverse("admin:syndicator_post_changelist")).content.decode()

    assert "x: sent" in page and "tg: queued" in page and "x: failed" not in page


def test_a_user_without_the_repost_right_gets_403(post, targets):
    client = Client()
    assert client.login(username=make_user("nobody").username, password=PASSWORD)
    viewer = make_user("viewer")
    viewer.is_staff = True
    viewer.save()
    viewer_client = Client()
    assert viewer_client.login(username="viewer", password=PASSWORD)

    assert client.get(repost_url(post)).status_code == 302  # not staff: the admin's login page
    assert viewer_client.get(repost_url(post)).status_code == 403
    assert viewer_client.post(preview_url(post), "{}", content_type="application/json").status_code == 403


def test_anonymous_visitors_are_sent_to_log_in(client, post):
    response = client.get(repost_url(post))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_the_preview_refuses_a_body_that_is_not_json(editor, post, targets):
    response = editor.post(preview_url(post), "not json", content_type="application/json")
    assert response.status_code == 400 and "JSON" in response.json()["detail"]


def test_the_preview_needs_post_and_csrf(post, targets):
    client = Client(enforce_csrf_checks=True)
    assert client.login(username=make_user("ed2", "editor").username, password=PASSWORD)

    assert client.get(preview_url(post)).status_code == 405
    assert client.post(preview_url(post), "{}", content_type="application/json").status_code == 403


def test_a_mastodon_target_is_measured_against_its_instance_limit(editor, post):
    post.url = "https://www.nejatngo.org/fa/?p=1"  # a real top-level domain: the link counts 23
    post.save()
    small = Target.objects.create(
        name="toot", kind="mastodon", settings={"base_url": "https://social.example", "max_characters": 100}
    )

    response = editor.post(preview_url(post), json.dumps({"text": "x" * 90}), content_type="application/json")

    shown = response.json()["previews"][str(small.pk)]
    assert shown["limit"] == 100 and shown["length"] == 90 + 2 + 23 and shown["fits"] is False


def test_the_page_schedules_in_each_targets_zone_and_marks_breaking(editor, post, targets):
    from datetime import UTC, datetime

    targets["x"].settings = {**targets["x"].settings, "timezone": "Asia/Tehran"}
    targets["x"].save()
    page = editor.get(repost_url(post)).content.decode()
    assert 'type="datetime-local"' in page and 'name="breaking"' in page
    response = editor.post(
        repost_url(post),
        {"targets": [targets["x"].pk, targets["tg"].pk], "at": "2026-12-03T08:00", "breaking": "on"},
    )
    assert response.status_code == 302
    made = {d.target.name: d for d in Delivery.objects.filter(post=post)}
    assert made["x"].next_attempt_at == datetime(2026, 12, 3, 4, 30, tzinfo=UTC)  # Tehran, +03:30
    assert made["tg"].wait_reason == "scheduled" and made["tg"].next_attempt_at is not None
    assert made["x"].breaking and made["tg"].breaking
