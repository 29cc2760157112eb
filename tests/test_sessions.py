"""Web sessions: they expire, an expired one sends the user back to log in, and CSRF stays on."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from tests.accounts import PASSWORD, make_user

pytestmark = pytest.mark.django_db

LOG = "/admin/syndicator/delivery/"


def log_in(client: Client, username: str) -> None:
    page = client.get("/admin/login/")
    token = page.cookies[settings.CSRF_COOKIE_NAME].value
    response = client.post(
        "/admin/login/?next=" + LOG,
        {"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token, "next": LOG},
    )
    assert response.status_code == 302 and response["Location"] == LOG


def test_a_login_lasts_eight_hours_by_default_and_then_asks_again() -> None:
    make_user("ed", "editor")
    client = Client(enforce_csrf_checks=True)
    log_in(client, "ed")

    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    assert int(cookie["max-age"]) == settings.SESSION_COOKIE_AGE == 8 * 3600
    session = Session.objects.get(session_key=cookie.value)
    assert abs(session.expire_date - (timezone.now() + timedelta(hours=8))) < timedelta(minutes=1)
    assert client.get(LOG).status_code == 200

    Session.objects.filter(pk=session.pk).update(expire_date=timezone.now() - timedelta(seconds=1))
    response = client.get(LOG)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_a_login_without_the_csrf_token_is_refused() -> None:
    make_user("ed", "editor")
    client = Client(enforce_csrf_checks=True)
    response = client.post("/admin/login/", {"username": "ed", "password": PASSWORD})
    assert response.status_code == 403
    assert settings.SESSION_COOKIE_NAME not in client.cookies
