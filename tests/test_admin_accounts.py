"""Subscribers (status, filter, CSV import) and users with their roles, as admins manage them."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from syndicator.models import Subscriber, Target
from syndicator.roles import role_of
from tests.accounts import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def letters() -> Target:
    return Target.objects.create(
        name="letters", kind="email", settings={"host": "mx", "from_address": "a@b.c"}
    )


def test_subscribers_show_their_status_and_filter_by_it(admin_role_client, letters):
    Subscriber.objects.create(target=letters, email="reader@example.org")
    Subscriber.objects.create(target=letters, email="gone@example.org", unsubscribed_at=timezone.now())
    Subscriber.objects.create(target=letters, email="bounced@example.org", suppressed_at=timezone.now())
    url = reverse("admin:syndicator_subscriber_changelist")

    page = admin_role_client.get(url).content.decode()
    for state in ("subscribed", "unsubscribed", "suppressed"):
        assert f'data-status="{state}"' in page

    def listed(state: str) -> list[str]:
        return [s.email for s in admin_role_client.get(url, {"state": state}).context["cl"].result_list]

    assert listed("subscribed") == ["reader@example.org"]
    assert listed("unsubscribed") == ["gone@example.org"]
    assert listed("suppressed") == ["bounced@example.org"]


def test_a_csv_of_subscribers_is_imported_skipping_bad_and_known_addresses(admin_role_client, letters):
    Subscriber.objects.create(target=letters, email="known@example.org", unsubscribed_at=timezone.now())
    upload = SimpleUploadedFile(
        "list.csv", b"email,name\nnew@example.org,New Reader\nnot-an-address\nKNOWN@example.org,Again\n"
    )
    response = admin_role_client.post(
        reverse("admin:syndicator_subscriber_import"), {"target": letters.pk, "file": upload}, follow=True
    )
    html = response.content.decode()
    assert "Imported 1 subscriber" in html and "not a valid email address" in html
    assert set(letters.subscribers.values_list("email", "name")) == {
        ("known@example.org", ""),
        ("new@example.org", "New Reader"),
    }
    assert letters.subscribers.get(email="known@example.org").state == "unsubscribed"  # never re-added


def test_editors_cannot_import_subscribers(editor_client, letters):
    assert editor_client.get(reverse("admin:syndicator_subscriber_import")).status_code == 403


def test_the_user_list_shows_each_role(admin_role_client):
    make_user("edgar", "editor")
    make_user("nobody")
    page = admin_role_client.get(reverse("admin:auth_user_changelist"))
    rows = {u.username: role_of(u) for u in page.context["cl"].result_list}
    assert rows == {"ada": "admin", "edgar": "editor", "nobody": "none"}
    assert "<th" in page.content.decode() and ">role<" in page.content.decode().lower().replace(" ", "")


def user_form(user, **changes: str) -> dict[str, str]:
    data = {
        "username": user.username,
        "email": user.email,
        "first_name": "",
        "last_name": "",
        "is_active": "on",
        "role": "",
        "last_login_0": "",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
    }
    return data | changes


def test_an_admin_changes_a_users_role(admin_role_client):
    edgar = make_user("edgar", "editor")
    url = reverse("admin:auth_user_change", args=[edgar.pk])
    assert admin_role_client.get(url).context["adminform"].form.initial["role"] == "editor"

    response = admin_role_client.post(url, user_form(edgar, role="admin"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    edgar = get_user_model().objects.get(pk=edgar.pk)
    assert role_of(edgar) == "admin" and edgar.is_staff
    assert edgar.has_perm("syndicator.change_target")

    admin_role_client.post(url, user_form(edgar, role=""))
    edgar = get_user_model().objects.get(pk=edgar.pk)
    assert role_of(edgar) == "none" and not edgar.has_perm("syndicator.view_delivery")


def test_a_new_user_gets_the_role_chosen_on_the_add_form(admin_role_client):
    response = admin_role_client.post(
        reverse("admin:auth_user_add"),
        {
            "username": "newbie",
            "usable_password": "true",
            "password1": "a long test password 2",
            "password2": "a long test password 2",
            "role": "editor",
        },
    )
    assert response.status_code == 302
    assert role_of(get_user_model().objects.get(username="newbie")) == "editor"


def test_editors_get_403_on_user_pages(editor_client):
    other = make_user("someone", "editor")
    assert editor_client.get(reverse("admin:auth_user_changelist")).status_code == 403
    assert editor_client.get(reverse("admin:auth_user_change", args=[other.pk])).status_code == 403
    response = editor_client.post(
        reverse("admin:auth_user_change", args=[other.pk]), user_form(other, role="admin")
    )
    assert response.status_code == 403
    assert role_of(get_user_model().objects.get(pk=other.pk)) == "editor"


def test_only_a_superuser_can_make_a_superuser(admin_role_client):
    edgar = make_user("edgar", "editor")
    url = reverse("admin:auth_user_change", args=[edgar.pk])
    response = admin_role_client.post(url, user_form(edgar, role="admin", is_superuser="on"))
    assert response.status_code == 302
    edgar = get_user_model().objects.get(pk=edgar.pk)
    assert role_of(edgar) == "admin" and not edgar.is_superuser
