"""Roles: what editors and admins may do on the admin pages, and the `users` and `tokens` commands."""

from __future__ import annotations

import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from syndicator.models import ApiToken, Delivery, Feed, Post, Target
from syndicator.roles import EDITOR_PERMISSIONS
from tests.accounts import PASSWORD, bearer, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def target() -> Target:
    return Target.objects.create(name="x-main", kind="outbox", settings={"format": "twitter"})


@pytest.fixture
def failed(target: Target) -> Delivery:
    feed = Feed.objects.create(url="https://news.example/feed", name="News")
    post = Post.objects.create(feed=feed, guid="1", url="https://news.example/1", title="Story")
    return Delivery.objects.create(post=post, target=target, status="failed", attempts=1, last_error="boom")


def logged_in(role: str | None) -> Client:
    """A browser logged in as a new user with this role."""
    client = Client()
    user = make_user(f"user-{role}", role)
    assert client.login(username=user.username, password=PASSWORD)
    return client


def target_form(target: Target, **changes: str) -> dict[str, str]:
    """The target change form as the page submits it."""
    form = {
        "name": target.name,
        "kind": target.kind,
        "enabled": "on",
        "secret_env": target.secret_env,
        "languages": "",
        "categories": "",
        **{f"setting__{key}": str(value) for key, value in target.settings.items()},
    }
    return form | changes


def run(*args: str) -> str:
    """Run a syndicator command; return what it printed."""
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


# --- the groups ---------------------------------------------------------------------------------


def test_the_migration_gives_editors_read_and_repost_only() -> None:
    editors = Group.objects.get(name="Editors")
    granted = {
        (p.content_type.app_label, p.codename) for p in editors.permissions.select_related("content_type")
    }
    assert granted == set(EDITOR_PERMISSIONS)


def test_the_migration_gives_admins_every_syndicator_right_and_users() -> None:
    admins = Group.objects.get(name="Admins")
    codes = {
        f"{p.content_type.app_label}.{p.codename}" for p in admins.permissions.select_related("content_type")
    }
    for model in ("feed", "target", "post", "delivery", "subscriber", "apitoken"):
        assert {f"syndicator.{a}_{model}" for a in ("add", "change", "delete", "view")} <= codes
    assert {"auth.add_user", "auth.change_user", "auth.view_group", "syndicator.view_metrics"} <= codes
    # Groups and their permissions are a superuser's: an admin who could edit them could grant anything.
    assert not {"auth.add_group", "auth.change_group", "auth.delete_group"} & codes


# --- admin pages --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["admin:syndicator_delivery_changelist", "admin:syndicator_feed_add", "admin:syndicator_post_changelist"],
)
def test_anonymous_visitors_are_sent_to_the_login_page(client: Client, url: str) -> None:
    response = client.get(reverse(url))
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_an_editor_reads_the_log_and_the_posts(failed: Delivery) -> None:
    editor = logged_in("editor")
    for url in ("admin:syndicator_delivery_changelist", "admin:syndicator_post_changelist"):
        assert editor.get(reverse(url)).status_code == 200
    assert editor.get(reverse("admin:syndicator_delivery_change", args=[failed.pk])).status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        "admin:syndicator_feed_add",
        "admin:syndicator_target_add",
        "admin:auth_user_changelist",
        "admin:auth_group_changelist",
        "admin:syndicator_apitoken_changelist",
        "admin:syndicator_subscriber_changelist",
    ],
)
def test_an_editor_is_refused_admin_only_pages(url: str) -> None:
    assert logged_in("editor").get(reverse(url)).status_code == 403


def test_an_editor_sees_a_target_but_cannot_change_it(target: Target) -> None:
    editor = logged_in("editor")
    url = reverse("admin:syndicator_target_change", args=[target.pk])
    page = editor.get(url)
    assert page.status_code == 200 and b'name="_save"' not in page.content  # read-only view
    response = editor.post(url, target_form(target, secret_env="SYNDICATOR_SECRET_STOLEN"))
    assert response.status_code == 403
    assert Target.objects.get(pk=target.pk).secret_env == ""


def test_an_editor_cannot_retry_from_the_log(failed: Delivery) -> None:
    editor = logged_in("editor")
    url = reverse("admin:syndicator_delivery_changelist")
    assert b"retry_selected" not in editor.get(url).content
    editor.post(url, {"action": "retry_selected", "_selected_action": [failed.pk]})
    assert Delivery.objects.get(pk=failed.pk).status == "failed"


def test_a_user_without_a_role_sees_nothing() -> None:
    nobody = logged_in(None)
    response = nobody.get(reverse("admin:syndicator_delivery_changelist"))
    assert response.status_code == 302  # not staff: back to the login page


def test_an_admin_changes_targets_adds_feeds_manages_users_and_retries(
    target: Target, failed: Delivery
) -> None:
    admin = logged_in("admin")
    for url in (
        "admin:syndicator_feed_add",
        "admin:auth_user_changelist",
        "admin:syndicator_apitoken_changelist",
    ):
        assert admin.get(reverse(url)).status_code == 200
    response = admin.post(
        reverse("admin:syndicator_target_change", args=[target.pk]),
        target_form(target, secret_env="SYNDICATOR_SECRET_X"),
    )
    assert response.status_code == 302, response.content[:2000]
    assert Target.objects.get(pk=target.pk).secret_env == "SYNDICATOR_SECRET_X"
    admin.post(
        reverse("admin:syndicator_delivery_changelist"),
        {"action": "retry_selected", "_selected_action": [failed.pk]},
    )
    assert Delivery.objects.get(pk=failed.pk).status == "queued"


# --- syndicator users ---------------------------------------------------------------------------


def test_users_add_prints_a_generated_password_that_logs_in() -> None:
    out = run("users", "add", "ed", "--role", "editor", "--email", "ed@example.org")
    password = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("password: "))
    user = get_user_model().objects.get(username="ed")
    assert user.is_staff and not user.is_superuser and user.email == "ed@example.org"
    assert [g.name for g in user.groups.all()] == ["Editors"]
    assert Client().login(username="ed", password=password)


def test_users_add_reads_a_password_from_stdin_and_checks_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a perfectly long secret 42\n"))
    out = run("users", "add", "ad", "--role", "admin", "--password-stdin")
    assert "password:" not in out
    assert Client().login(username="ad", password="a perfectly long secret 42")
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    with pytest.raises(CommandError, match="too short"):
        run("users", "add", "weak", "--role", "admin", "--password-stdin")
    assert not get_user_model().objects.filter(username="weak").exists()


def test_users_role_and_list() -> None:
    make_user("ed", "editor")
    with pytest.raises(CommandError, match="exists"):
        run("users", "add", "ed", "--role", "admin")
    run("users", "role", "ed", "admin")
    rows = [json.loads(line) for line in run("users", "list", "--json").splitlines()]
    assert [(r["username"], r["role"]) for r in rows] == [("ed", "admin")]
    assert "admin" in run("users", "list")


# --- syndicator tokens --------------------------------------------------------------------------


def test_a_token_from_the_cli_works_until_revoked(client: Client) -> None:
    make_user("cms", "editor")
    out = run("tokens", "create", "cms", "--name", "cms-hook")
    token = next(line for line in out.splitlines() if line.startswith("synd_"))
    assert client.get("/api/deliveries", **bearer(token)).status_code == 200

    row = ApiToken.objects.get()
    assert row.name == "cms-hook" and row.last_used_at is not None
    listed = json.loads(run("tokens", "list", "--json"))
    assert listed["user"] == "cms" and token not in json.dumps(listed)

    assert "revoked" in run("tokens", "revoke", str(row.pk))
    assert client.get("/api/deliveries", **bearer(token)).status_code == 401
    with pytest.raises(CommandError, match="no token with id 999"):
        run("tokens", "revoke", "999")
