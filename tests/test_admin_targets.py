"""Target pages: the settings form from settings_spec, secrets as env-var names, template overrides
with a live preview rendered by the worker's code, pause and resume; feeds' "Poll now" button."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from syndicator.admin.target_form import default_template, template_field
from syndicator.formatting import message_length, render_message
from syndicator.models import Feed, Post, Target
from tests.accounts import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def post() -> Post:
    feed = Feed.objects.create(url="https://news.example/feed", name="News")
    return Post.objects.create(
        feed=feed,
        guid="1",
        url="https://news.example/1",
        title="Rivers rise after a week of rain",
        summary="Towns along the river prepare for floods.",
        categories=["Weather"],
        language="en",
    )


@pytest.fixture
def telegram() -> Target:
    return Target.objects.create(name="channel", kind="telegram", settings={"chat_id": "@news"})


def change_url(target: Target) -> str:
    return reverse("admin:syndicator_target_change", args=[target.pk])


def form_data(target: Target, **changes: str) -> dict[str, str]:
    """The change form as a browser submits it, filled with the target's current values."""
    data = {
        "name": target.name,
        "enabled": "on",
        "secret_env": target.secret_env,
        "languages": "",
        "categories": "",
    }
    data |= {f"setting__{k}": str(v) for k, v in target.settings.items()}
    return data | changes


def test_the_form_has_one_field_per_setting_and_checks_required_and_choices(admin_role_client, telegram):
    page = admin_role_client.get(change_url(telegram)).content.decode()
    for name in ("chat_id", "base_url", "silent", "link_preview", "photo", "timeout", "hashtags", "utm"):
        assert f'name="setting__{name}"' in page

    response = admin_role_client.post(change_url(telegram), form_data(telegram, setting__chat_id=""))
    assert response.status_code == 200
    assert "This field is required." in response.context["adminform"].form.errors["setting__chat_id"]

    email = Target.objects.create(
        name="letters", kind="email", settings={"host": "mx", "from_address": "a@b.c"}
    )
    response = admin_role_client.post(change_url(email), form_data(email, setting__security="rot13"))
    assert "setting__security" in response.context["adminform"].form.errors


def test_setting_values_are_typed_and_a_bad_number_is_refused(admin_role_client, telegram):
    response = admin_role_client.post(
        change_url(telegram), form_data(telegram, setting__silent="true", setting__hashtag_limit="2")
    )
    assert response.status_code == 302
    telegram.refresh_from_db()
    assert telegram.settings == {"chat_id": "@news", "silent": True, "hashtag_limit": 2}

    response = admin_role_client.post(
        change_url(telegram), form_data(telegram, setting__hashtag_limit="many")
    )
    assert response.status_code == 200
    assert "hashtag_limit is a whole number" in str(
        response.context["adminform"].form.errors["setting__hashtag_limit"]
    )


def test_secrets_are_shown_and_edited_only_as_the_name_of_an_env_variable(admin_role_client, monkeypatch):
    monkeypatch.setenv("SYNDICATOR_SECRET_X_KEY", "s3cr3t-value-never-shown")
    x = Target.objects.create(
        name="x",
        kind="twitter",
        secret_env="SYNDICATOR_SECRET_X_MISSING",
        settings={"api_key_env": "SYNDICATOR_SECRET_X_KEY"},
    )
    page = admin_role_client.get(change_url(x)).content.decode()
    assert "s3cr3t-value-never-shown" not in page
    assert (
        'value="SYNDICATOR_SECRET_X_KEY"' in page
        and "SYNDICATOR_SECRET_X_KEY is set in the web process" in page
    )
    assert "SYNDICATOR_SECRET_X_MISSING is NOT set in the web process" in page

    response = admin_role_client.post(change_url(x), form_data(x, setting__api_key_env="abc def=="))
    errors = response.context["adminform"].form.errors
    assert "not an environment variable name" in str(errors["setting__api_key_env"])
    response = admin_role_client.post(change_url(x), form_data(x, secret_env="hunter2!"))
    assert "not an environment variable name" in str(response.context["adminform"].form.errors["secret_env"])
    x.refresh_from_db()
    assert (
        x.secret_env == "SYNDICATOR_SECRET_X_MISSING"
        and x.settings["api_key_env"] == "SYNDICATOR_SECRET_X_KEY"
    )


def test_filters_are_edited_as_lists(admin_role_client, telegram):
    admin_role_client.post(
        change_url(telegram), form_data(telegram, languages="EN, fa", categories="Sport, News")
    )
    telegram.refresh_from_db()
    assert telegram.languages == ["en", "fa"] and telegram.categories == ["Sport", "News"]


def test_each_template_of_the_format_is_a_textarea_with_the_default(admin_role_client):
    email = Target.objects.create(
        name="letters", kind="email", settings={"host": "mx", "from_address": "a@b.c"}
    )
    form = admin_role_client.get(change_url(email)).context["adminform"].form
    for name in ("email.subject.j2", "email.txt.j2", "email.html.j2"):
        assert form.initial[template_field(name)] == default_template(name)
    assert template_field("telegram.html.j2") not in form.fields


def preview(client, target: Target, **fields: str) -> dict:
    response = client.post(reverse("admin:syndicator_target_preview", args=[target.pk]), fields)
    assert response.status_code == 200
    return response.json()


def test_the_preview_is_what_the_worker_renders(admin_role_client, telegram, post):
    source = "<b>{{ title|upper }}</b>\n{{ link }}"
    data = preview(admin_role_client, telegram, **{template_field("telegram.html.j2"): source})
    expected = render_message(
        post, "telegram", template_overrides={"telegram.html.j2": source}, options=telegram.settings
    )
    assert data["ok"] and data["text"] == expected.text
    assert "RIVERS RISE" in data["text"]
    assert (data["length"], data["limit"]) == message_length(expected)
    assert data["limit"] == 4096 and data["length"] < len(expected.text)  # the <b> tags do not count


def test_the_preview_renders_the_post_picked(admin_role_client, telegram, post):
    other = Post.objects.create(feed=post.feed, guid="2", url="https://news.example/2", title="Older story")
    Post.objects.filter(pk=other.pk).update(first_seen_at=post.first_seen_at.replace(year=2020))
    newest = preview(admin_role_client, telegram, **{template_field("telegram.html.j2"): "{{ title }}"})
    picked = preview(
        admin_role_client, telegram, post=str(other.pk), **{template_field("telegram.html.j2"): "{{ title }}"}
    )
    assert newest["text"].startswith("Rivers rise") and picked["text"] == "Older story"


def test_the_preview_measures_x_by_its_weighted_count(admin_role_client, post):
    x = Target.objects.create(name="x", kind="outbox", settings={"format": "twitter"})
    Post.objects.filter(pk=post.pk).update(url="https://news.example.org/1")  # twitter-text knows .org
    data = preview(admin_role_client, x, **{template_field("twitter.txt.j2"): "{{ title }} {{ link }}"})
    assert data["text"].startswith(post.title + " https://news.example.org/1?utm_source=twitter")
    assert data["limit"] == 280 and data["length"] == len(post.title) + 1 + 23, data  # any link counts 23


def test_the_preview_shows_a_syntax_error_with_its_line(admin_role_client, telegram, post):
    data = preview(admin_role_client, telegram, **{template_field("telegram.html.j2"): "ok\n{{ title "})
    assert data["ok"] is False
    assert "telegram.html.j2" in data["error"] and "line 2" in data["error"]


def test_the_preview_shows_a_sandbox_violation_as_an_error(admin_role_client, telegram, post):
    source = "{{ title.__class__.__mro__ }}"
    data = preview(admin_role_client, telegram, **{template_field("telegram.html.j2"): source})
    assert data["ok"] is False and "telegram.html.j2" in data["error"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("source", "says"),
    [
        ('{{ "x"|center(300000000) }}', "a centred width of 300,000,000"),
        ('{{ "%0300000000d" % 1 }}', "a % format width of 300,000,000"),
        ('{{ "{:>300000000}".format("x") }}', "a format width of 300,000,000"),
        ("{{ title|indent(300000000) }}", "an indented text of"),
        (
            '{% for i in range(100000) %}{{ ("x" * 300000).upper()|length }}{% endfor %}',
            "took longer than 0.3 s",
        ),
    ],
    ids=["center", "percent", "format", "indent", "slow loop"],
)
def test_the_preview_stops_a_template_at_its_limits_and_says_which(
    admin_role_client, telegram, post, settings, source, says
):
    settings.SYNDICATOR_TEMPLATE_TIMEOUT = 0.3  # the web process has the same time limit as a worker
    data = preview(admin_role_client, telegram, **{template_field("telegram.html.j2"): source})
    assert data["ok"] is False and "telegram.html.j2" in data["error"] and says in data["error"], data


def test_editors_cannot_use_the_preview(editor_client, telegram, post):
    url = reverse("admin:syndicator_target_preview", args=[telegram.pk])
    assert editor_client.post(url, {template_field("telegram.html.j2"): "{{ title }}"}).status_code == 403


def test_saving_stores_only_the_templates_that_differ_from_the_default(admin_role_client, post):
    email = Target.objects.create(
        name="letters", kind="email", settings={"host": "mx", "from_address": "a@b.c"}
    )
    subject = "[News] {{ title }}"
    fields = {
        template_field("email.subject.j2"): subject,
        template_field("email.txt.j2"): default_template("email.txt.j2").replace(
            "\n", "\r\n"
        ),  # as browsers send
        template_field("email.html.j2"): "",  # emptied: the default
    }
    response = admin_role_client.post(change_url(email), form_data(email, **fields))
    assert response.status_code == 302
    email.refresh_from_db()
    assert email.template_overrides == {"email.subject.j2": subject}
    # The page shows the override where there is one, the default elsewhere.
    form = admin_role_client.get(change_url(email)).context["adminform"].form
    assert form.initial[template_field("email.subject.j2")] == subject


def test_an_invalid_template_cannot_be_saved(admin_role_client, telegram, post):
    broken = form_data(telegram, **{template_field("telegram.html.j2"): "{% if title %}unclosed"})
    response = admin_role_client.post(change_url(telegram), broken)
    assert response.status_code == 200
    assert "syntax error" in str(
        response.context["adminform"].form.errors[template_field("telegram.html.j2")]
    )

    unsafe = form_data(telegram, **{template_field("telegram.html.j2"): "{{ title.__class__.__mro__ }}"})
    response = admin_role_client.post(change_url(telegram), unsafe)
    assert (
        response.status_code == 200
        and template_field("telegram.html.j2") in response.context["adminform"].form.errors
    )
    telegram.refresh_from_db()
    assert telegram.template_overrides == {}


def test_pause_and_resume_buttons(admin_role_client, telegram):
    page = admin_role_client.get(change_url(telegram)).content.decode()
    assert 'id="pause-target"' in page
    admin_role_client.post(reverse("admin:syndicator_target_pause", args=[telegram.pk]))
    telegram.refresh_from_db()
    assert telegram.paused_at is not None and telegram.paused_reason == "paused by ada"
    assert 'id="resume-target"' in admin_role_client.get(change_url(telegram)).content.decode()
    admin_role_client.post(reverse("admin:syndicator_target_resume", args=[telegram.pk]))
    telegram.refresh_from_db()
    assert telegram.paused_at is None


def test_editors_see_targets_read_only_and_get_403_on_changes(editor_client, telegram):
    page = editor_client.get(change_url(telegram))
    assert "<td>@news</td>" in page.content.decode()  # the settings, read-only
    assert (
        page.status_code == 200
        and b"pause-target" not in page.content
        and b'id="template-preview"' not in page.content
    )
    assert (
        editor_client.post(change_url(telegram), form_data(telegram, setting__chat_id="@stolen")).status_code
        == 403
    )
    assert editor_client.post(reverse("admin:syndicator_target_pause", args=[telegram.pk])).status_code == 403
    telegram.refresh_from_db()
    assert telegram.settings["chat_id"] == "@news" and telegram.paused_at is None


def test_a_new_target_gets_the_settings_of_its_kind(admin_role_client):
    url = reverse("admin:syndicator_target_add")
    response = admin_role_client.post(
        url, {"name": "fb", "kind": "facebook", "enabled": "on", "languages": ""}
    )
    assert response.status_code == 200
    assert "setting__page_id" in response.context["adminform"].form.errors
    response = admin_role_client.post(
        url,
        {
            "name": "fb",
            "kind": "facebook",
            "enabled": "on",
            "setting__page_id": "12345",
            "secret_env": "SYNDICATOR_SECRET_FB",
        },
    )
    assert response.status_code == 302
    # An id is text, as `targets add --set` stores it.
    assert Target.objects.get(name="fb").settings == {"page_id": "12345"}


def test_the_feed_page_has_a_poll_now_button_that_editors_cannot_use(admin_role_client):
    editor_client = Client()
    editor_client.force_login(make_user("edgar", "editor"))
    feed = Feed.objects.create(url="http://127.0.0.1:9/feed", name="Nowhere")
    url = reverse("admin:syndicator_feed_change", args=[feed.pk])
    assert 'id="poll-feed"' in admin_role_client.get(url).content.decode()
    assert b"poll-feed" not in editor_client.get(url).content
    assert editor_client.post(reverse("admin:syndicator_feed_poll", args=[feed.pk])).status_code == 403
    response = admin_role_client.post(reverse("admin:syndicator_feed_poll", args=[feed.pk]), follow=True)
    # Queued for a worker (tests/test_poll_now.py runs one); the page waits for the result.
    assert 'id="poll-result"' in response.content.decode()


def test_the_preview_of_a_mastodon_target_uses_its_instances_limit(admin_role_client, post):
    toot = Target.objects.create(
        name="toot",
        kind="mastodon",
        settings={
            "base_url": "https://social.example.org",
            "max_characters": 1000,
            "characters_reserved_per_url": 30,
        },
    )
    Post.objects.filter(pk=post.pk).update(url="https://news.example.org/1")  # a TLD twitter-text knows
    data = preview(admin_role_client, toot, **{template_field("mastodon.txt.j2"): "{{ title }} {{ link }}"})
    assert data["ok"] and data["limit"] == 1000
    assert data["length"] == len(post.title) + 1 + 30


def test_the_preview_of_an_email_counts_its_subject(admin_role_client, post):
    email = Target.objects.create(
        name="letters", kind="email", settings={"host": "mx", "from_address": "a@b.c"}
    )
    data = preview(admin_role_client, email, **{template_field("email.subject.j2"): "News: {{ title }}"})
    assert data["subject"] == "News: " + post.title
    assert (data["length"], data["limit"]) == (len(data["subject"]), 200)
    assert "<html" in data["html"]
