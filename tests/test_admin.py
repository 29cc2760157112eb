"""The admin pages admins use today: every list and the delivery detail render, and actions work."""

from __future__ import annotations

import pytest
from django.urls import reverse

from syndicator.models import Delivery, DeliveryAttempt, Feed, Post, Subscriber, Target

pytestmark = pytest.mark.django_db


@pytest.fixture
def failed_delivery() -> Delivery:
    feed = Feed.objects.create(url="https://news.example/feed", name="News")
    post = Post.objects.create(feed=feed, guid="1", url="https://news.example/1", title="<b>Story</b>")
    target = Target.objects.create(name="letters", kind="email", settings={"host": "127.0.0.1"})
    Subscriber.objects.create(target=target, email="reader@example.org")
    delivery = Delivery.objects.create(
        post=post, target=target, status="failed", attempts=1, last_error="boom"
    )
    DeliveryAttempt.objects.create(delivery=delivery, number=1, outcome="permanent", message="boom")
    return delivery


def test_every_admin_list_and_the_delivery_detail_render(admin_client, failed_delivery):
    for model in ("delivery", "feed", "target", "post", "subscriber"):
        response = admin_client.get(reverse(f"admin:syndicator_{model}_changelist"))
        assert response.status_code == 200, model
    detail = admin_client.get(reverse("admin:syndicator_delivery_change", args=[failed_delivery.pk]))
    assert detail.status_code == 200
    assert b"boom" in detail.content and b"&lt;b&gt;Story" in detail.content  # escaped, not markup


def test_the_retry_action_requeues_a_failed_delivery(admin_client, failed_delivery):
    response = admin_client.post(
        reverse("admin:syndicator_delivery_changelist"),
        {"action": "retry_selected", "_selected_action": [failed_delivery.pk]},
        follow=True,
    )
    assert response.status_code == 200
    failed_delivery.refresh_from_db()
    assert failed_delivery.status == "queued" and failed_delivery.budget_start == 2
    assert failed_delivery.attempt_log.get(number=2).actor_name == "admin"


def test_anonymous_visitors_are_sent_to_the_login_page(client):
    response = client.get(reverse("admin:syndicator_delivery_changelist"))
    assert response.status_code == 302 and "/login/" in response["Location"]
