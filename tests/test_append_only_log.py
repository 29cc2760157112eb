"""The delivery log is append-only: no one, a superuser included, edits or deletes it (issue 14)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from syndicator.models import Delivery, DeliveryAttempt, Feed, Post, Target
from tests.accounts import bearer, token_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser_client(client):
    user = get_user_model().objects.create_superuser("root", "root@example.org", "a long password 1")
    client.force_login(user)
    return client


def make_delivery(status: str, *, kind: str = "outbox", fmt: str = "telegram", text: str = "") -> Delivery:
    feed, _ = Feed.objects.get_or_create(url="https://news.example/feed", defaults={"name": "News"})
    target, _ = Target.objects.get_or_create(name=f"t-{kind}-{fmt}", kind=kind, settings={"format": fmt})
    post = Post.objects.create(feed=feed, guid=f"g-{Post.objects.count()}", title="خبر عاجل")
    delivery = Delivery.objects.create(
        post=post, target=target, status=status, rendered_text=text or "the text as sent", attempts=1
    )
    DeliveryAttempt.objects.create(delivery=delivery, number=1, outcome="sent", worker="celery@w1")
    return delivery


@pytest.mark.parametrize("status", ["sent", "failed", "uncertain"])
def test_a_superuser_cannot_change_a_settled_deliverys_text(superuser_client, status):
    delivery = make_delivery(status)
    url = reverse("admin:syndicator_delivery_change", args=[delivery.pk])
    page = superuser_client.get(url).content.decode()
    assert 'name="text_override"' not in page and 'name="_save"' not in page
    response = superuser_client.post(url, {"text_override": "rewritten history", "_save": "Save"})
    assert response.status_code == 403
    delivery.refresh_from_db()
    assert delivery.text_override == "" and delivery.status == status


def test_a_superuser_cannot_delete_a_delivery_or_its_attempts(superuser_client):
    delivery = make_delivery("sent")
    delete = reverse("admin:syndicator_delivery_delete", args=[delivery.pk])
    assert superuser_client.post(delete, {"post": "yes"}).status_code == 403
    changelist = reverse("admin:syndicator_delivery_changelist")
    bulk = {"action": "delete_selected", "_selected_action": [delivery.pk], "post": "yes"}
    superuser_client.post(changelist, bulk)
    assert "delete_selected" not in superuser_client.get(changelist).content.decode()
    assert Delivery.objects.filter(pk=delivery.pk).exists()
    assert DeliveryAttempt.objects.filter(delivery=delivery).count() == 1


def test_deleting_a_post_or_target_with_deliveries_is_refused(superuser_client):
    """A cascade would delete the log by the back door: the admin's delete page refuses it."""
    delivery = make_delivery("sent")
    for name, obj in (("post", delivery.post), ("target", delivery.target), ("feed", delivery.post.feed)):
        url = reverse(f"admin:syndicator_{name}_delete", args=[obj.pk])
        page = superuser_client.get(url).content.decode()
        # Delivery.post and .target are PROTECT: the admin says it cannot, and deletes nothing.
        assert f"<title>Cannot delete {name} |" in page, name
        assert 'name="post" value="yes"' not in page, name  # no confirmation form
        superuser_client.post(url, {"post": "yes"})
        assert type(obj).objects.filter(pk=obj.pk).exists(), name
    assert Delivery.objects.filter(pk=delivery.pk).exists()
    assert DeliveryAttempt.objects.filter(delivery=delivery).exists()


def test_the_api_has_no_way_to_change_or_delete_a_delivery():
    root = get_user_model().objects.create_superuser("root", "root@example.org", "a long password 1")
    delivery = make_delivery("sent")
    from django.test import Client

    client = Client()
    for method in ("put", "patch", "delete"):
        response = getattr(client, method)(
            f"/api/deliveries/{delivery.pk}",
            data={"text_override": "x"},
            content_type="application/json",
            **bearer(token_for(root)),
        )
        assert response.status_code == 405, (method, response.status_code)
    delivery.refresh_from_db()
    assert delivery.text_override == ""


def test_the_timeline_names_the_admin_who_gave_a_verdict(superuser_client):
    delivery = make_delivery("uncertain")
    DeliveryAttempt.objects.create(
        delivery=delivery, number=2, kind="verdict", outcome="marked_sent", actor_name="ada"
    )
    page = superuser_client.get(reverse("admin:syndicator_delivery_change", args=[delivery.pk]))
    html = page.content.decode()
    assert '<td class="attempt-by"><strong>ada</strong></td>' in html
    assert '<td class="attempt-by">celery@w1</td>' in html


def test_a_telegram_message_shows_as_text_and_email_results_only_for_email(superuser_client):
    delivery = make_delivery("sent", text="<b>Bold &amp; bright</b> <a href='https://x.example'>link</a>")
    html = superuser_client.get(reverse("admin:syndicator_delivery_change", args=[delivery.pk])).content
    html = html.decode()
    assert '<div class="message-text" dir="auto">Bold &amp; bright link</div>' in html
    assert "as sent (HTML markup)" in html
    assert "recipient results" not in html.lower()
    email = make_delivery("sent", kind="email", fmt="email")
    html = superuser_client.get(reverse("admin:syndicator_delivery_change", args=[email.pk])).content
    assert "recipient results" in html.decode().lower()
