"""Roles and credentials (issue 15, item 5): admins manage editors and admins, never superusers or
groups; failed logins and bad tokens are throttled in the cache every web process shares, and
logged; API tokens can expire, or be made for /metrics only."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from io import StringIO

import pytest
import redis
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from syndicator.models import ApiToken
from syndicator.tokens import create_token
from tests.accounts import PASSWORD, bearer, make_user, token_for
from tests.conftest import TEST_BROKER_URL

User = get_user_model()
pytestmark = pytest.mark.django_db


@pytest.fixture
def shared_cache(settings):
    """The Redis cache settings configure, on this machine's Redis (a test process has no private one)."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": TEST_BROKER_URL,
            "KEY_PREFIX": "syndicator-test-auth",
        }
    }
    settings.SYNDICATOR_AUTH_FAILURES = 3
    client = redis.Redis.from_url(TEST_BROKER_URL)
    for key in client.scan_iter("syndicator-test-auth*"):
        client.delete(key)
    yield client
    for key in client.scan_iter("syndicator-test-auth*"):
        client.delete(key)


# --- admins never manage superusers or groups -----------------------------------------------------


@pytest.fixture
def root() -> User:
    return User.objects.create_superuser("root", "root@example.org", PASSWORD)


def test_an_admin_cannot_change_a_superuser_or_reset_their_password(admin_role_client: Client, root) -> None:
    change = reverse("admin:auth_user_change", args=[root.pk])
    password = reverse("admin:auth_user_password_change", args=[root.pk])

    assert admin_role_client.get(password).status_code == 403
    posted = admin_role_client.post(
        password, {"password1": "taken over 123!", "password2": "taken over 123!"}
    )
    assert posted.status_code == 403
    page = admin_role_client.get(change)
    assert page.status_code == 200 and b'name="username"' not in page.content  # shown read-only
    admin_role_client.post(change, {"username": "mine", "email": "x@example.org", "role": "editor"})
    assert (
        admin_role_client.post(reverse("admin:auth_user_delete", args=[root.pk]), {"post": "yes"}).status_code
        == 403
    )
    root.refresh_from_db()
    assert root.username == "root" and root.check_password(PASSWORD) and root.is_superuser


def test_the_bulk_delete_spares_superusers_for_an_admin(admin_role_client: Client, root) -> None:
    editor = make_user("ed", "editor")
    response = admin_role_client.post(
        reverse("admin:auth_user_changelist"),
        {"action": "delete_selected", "_selected_action": [root.pk, editor.pk], "post": "yes"},
    )
    assert response.status_code == 403
    assert User.objects.filter(pk=root.pk).exists()


def test_an_admin_still_manages_editors_and_admins(admin_role_client: Client) -> None:
    editor = make_user("ed", "editor")
    password = reverse("admin:auth_user_password_change", args=[editor.pk])
    admin_role_client.post(password, {"password1": "a new long pass 9", "password2": "a new long pass 9"})
    editor.refresh_from_db()
    assert editor.check_password("a new long pass 9")


def test_an_admin_sees_the_groups_but_cannot_change_them(admin_role_client: Client) -> None:
    admins = Group.objects.get(name="Admins")
    before = set(admins.permissions.values_list("pk", flat=True))

    assert admin_role_client.get(reverse("admin:auth_group_changelist")).status_code == 200
    assert admin_role_client.get(reverse("admin:auth_group_add")).status_code == 403
    admin_role_client.post(reverse("admin:auth_group_change", args=[admins.pk]), {"name": "Admins"})
    assert (
        admin_role_client.post(
            reverse("admin:auth_group_delete", args=[admins.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    assert set(Group.objects.get(name="Admins").permissions.values_list("pk", flat=True)) == before


# --- throttling ----------------------------------------------------------------------------------


def test_failed_logins_are_logged_and_then_refused_even_with_the_right_password(shared_cache, caplog) -> None:
    make_user("ann", "admin")
    client = Client()
    login = reverse("admin:login")
    caplog.set_level(logging.WARNING, logger="syndicator.auth")

    for _ in range(3):
        client.post(login, {"username": "ann", "password": "guess"})
    refused = client.post(login, {"username": "ann", "password": PASSWORD})

    assert "Too many failed logins from your address" in refused.content.decode()
    assert "_auth_user_id" not in client.session
    assert sum("failed login for user 'ann' from 127.0.0.1" in r.getMessage() for r in caplog.records) == 3
    assert not any("guess" in r.getMessage() for r in caplog.records)
    # The count is in Redis, which every gunicorn worker reads, not in this process.
    assert any(b"authfail:login:127.0.0.1" in key for key in shared_cache.scan_iter("syndicator-test-auth*"))


def test_another_address_can_still_log_in(shared_cache) -> None:
    make_user("ann", "admin")
    for _ in range(3):
        Client(REMOTE_ADDR="203.0.113.9").post(
            reverse("admin:login"), {"username": "ann", "password": "guess"}
        )
    other = Client(REMOTE_ADDR="203.0.113.10")
    other.post(reverse("admin:login"), {"username": "ann", "password": PASSWORD})
    assert "_auth_user_id" in other.session


def test_bad_tokens_are_logged_and_then_refused_with_429(shared_cache, caplog) -> None:
    good = token_for(make_user("ann", "admin"))
    client = Client()
    caplog.set_level(logging.WARNING, logger="syndicator.auth")

    assert [client.get("/api/deliveries", **bearer(f"synd_wrong{i}")).status_code for i in range(3)] == [
        401
    ] * 3
    api, metrics = client.get("/api/deliveries", **bearer(good)), client.get("/metrics", **bearer(good))

    assert api.status_code == metrics.status_code == 429
    assert api["Retry-After"] == "900" and "too many failed API tokens" in api.json()["detail"]
    assert sum("failed token from 127.0.0.1" in r.getMessage() for r in caplog.records) == 3
    assert not any("synd_wrong" in r.getMessage() for r in caplog.records)


# --- token expiry and scope ---------------------------------------------------------------------


def test_tokens_create_with_expires_shows_it_in_the_list_and_the_token_stops_working(client: Client) -> None:
    make_user("cms", "editor")
    out = StringIO()
    call_command("tokens", "create", "cms", "--expires", "90d", stdout=out)
    token = out.getvalue().splitlines()[1]
    row = ApiToken.objects.get()
    assert abs(row.expires_at - (timezone.now() + timedelta(days=90))) < timedelta(minutes=1)
    assert "expires" in out.getvalue().splitlines()[0]
    assert client.get("/api/deliveries", **bearer(token)).status_code == 200

    listed = StringIO()
    call_command("tokens", "list", "--json", stdout=listed)
    assert json.loads(listed.getvalue())["expires_at"].startswith(str(row.expires_at.year))
    ApiToken.objects.filter(pk=row.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    table, listed = StringIO(), StringIO()
    call_command("tokens", "list", stdout=table)
    call_command("tokens", "list", "--json", stdout=listed)

    assert "expired" in table.getvalue() and json.loads(listed.getvalue())["state"] == "expired"
    assert client.get("/api/deliveries", **bearer(token)).status_code == 401


def test_a_bad_expiry_is_one_clear_line() -> None:
    make_user("cms", "editor")
    with pytest.raises(CommandError, match="give a span like 90d"):
        call_command("tokens", "create", "cms", "--expires", "soon")


def test_a_metrics_token_reads_metrics_and_nothing_else(client: Client) -> None:
    make_user("prometheus")
    out = StringIO()
    call_command("tokens", "create", "prometheus", "--scope", "metrics", stdout=out)
    token = out.getvalue().splitlines()[1]

    assert client.get("/metrics", **bearer(token)).status_code == 200
    assert client.get("/api/deliveries", **bearer(token)).status_code == 401
    assert create_token(make_user("x", "admin"), scope="")[0].scope == ApiToken.Scope.ALL
