"""The demo mailbox (issue 14): the demo email target really sends, over SMTP on loopback, to the
catch-all server `syndicator run` starts, and the web UI shows each message as a subscriber got it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.urls import reverse

from syndicator import delivery as deliveries
from syndicator.demo import DEMO_MAILBOX_TARGET, repoint_demo_mailbox, seed_demo, seed_demo_mailbox_target
from syndicator.demo_mailbox import DemoMailbox, list_messages, read_message
from syndicator.models import Delivery, Feed, Post, Subscriber, Target
from syndicator.targets.registry import formats
from tests.conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]


@pytest.fixture
def mailbox(tmp_path: Path, settings) -> Iterator[DemoMailbox]:
    settings.DATA_DIR = tmp_path
    box = DemoMailbox(tmp_path / "demo-mailbox")
    box.start()
    yield box
    box.stop()


def test_seeding_makes_an_email_target_with_two_subscribers_pointed_at_the_mailbox():
    assert seed_demo("http://127.0.0.1:8000", mailbox_port=2525)
    target = Target.objects.get(name=DEMO_MAILBOX_TARGET)
    assert (
        target.kind == "email" and target.settings["port"] == 2525 and target.settings["security"] == "none"
    )
    assert Subscriber.objects.filter(target=target).active().count() == 2
    # The demo feeds carry fixed dates: without it the mailbox skipped every post as stale.
    assert target.settings["max_age"] == "36500d"
    assert Target.objects.filter(kind="outbox").count() == len(formats())  # next to the outbox targets
    assert repoint_demo_mailbox(2626) == 1
    assert Target.objects.get(name=DEMO_MAILBOX_TARGET).settings["port"] == 2626
    assert repoint_demo_mailbox(2626) == 0


def test_the_demo_email_target_really_sends_and_the_page_shows_the_message(
    mailbox, celery_worker, admin_role_client
):
    feed = Feed.objects.create(url="https://www.nejatngo.org/ar/feed/", name="Nejat AR", language="ar")
    post = Post.objects.create(
        feed=feed,
        guid="ar-1",
        url="https://www.nejatngo.org/ar/?p=1",
        title="تقرير جديد عن أوضاع السكان",
        summary="ملخص التقرير",
        language="ar",
    )
    target = seed_demo_mailbox_target(mailbox.port)
    (sent,) = deliveries.repost(post, [target], requested_by="ada")
    wait_for(lambda: Delivery.objects.get(pk=sent.pk).status == "sent", timeout=40)

    kept = wait_for(lambda: len(list_messages()) == 2 and list_messages(), timeout=10)
    assert {m.envelope_to for m in kept} == {"reader@newsroom.example", "lecteur@newsroom.example"}
    message = read_message(kept[0].id)
    assert message.parts[0] == "multipart/alternative" and {"text/plain", "text/html"} <= set(message.parts)
    assert 'dir="rtl"' in message.html and "تقرير جديد" in message.subject
    assert message.unsubscribe_url.startswith("http") and "/unsubscribe/" in message.unsubscribe_url

    page = admin_role_client.get(reverse("admin:demo_mailbox")).content.decode()
    assert page.count('class="mailbox-item') == 2
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox" srcdoc="' in page
    assert "&lt;html" in page.split('id="mailbox-html"')[1]  # the HTML part, escaped into srcdoc
    assert f'id="unsubscribe-link" href="{message.unsubscribe_url}"' in page
    assert '<pre id="mailbox-text" class="mailbox-text" dir="auto">' in page
    one = admin_role_client.get(reverse("admin:demo_mailbox_message", args=[kept[1].id]))
    assert f'data-message="{kept[1].id}"' in one.content.decode().split('id="mailbox-message"')[1][:60]

    # The link in the message works: the subscriber is unsubscribed, and gets no more mail.
    path = message.unsubscribe_url.split("://", 1)[1].split("/", 1)[1]
    assert admin_role_client.post("/" + path).status_code == 200
    assert Subscriber.objects.filter(target=target).active().count() == 1


def test_the_mailbox_page_refuses_odd_ids_and_those_without_the_right(mailbox, admin_role_client):
    from django.test import Client

    from tests.accounts import make_user

    for odd in ("..etc", "20260101000000000-1", "x.eml"):
        assert admin_role_client.get(reverse("admin:demo_mailbox_message", args=[odd])).status_code == 404
    assert "No message yet" in admin_role_client.get(reverse("admin:demo_mailbox")).content.decode()
    nobody = Client()
    nobody.force_login(make_user("nora"))  # no role: not staff, the admin sends them to log in
    assert nobody.get(reverse("admin:demo_mailbox")).status_code == 302
