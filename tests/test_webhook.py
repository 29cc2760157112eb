"""The signed publish webhook (Standard Webhooks) through real HTTP on the live test server, and
the WordPress plugin's signature against ours (Debian's php-cli)."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import httpx
import pytest
from django.core.management import call_command
from standardwebhooks.webhooks import Webhook

from syndicator import webhook
from syndicator.models import Delivery, Feed, Post, Target
from tests.conftest import wait_for
from tests.test_websub import rss

pytestmark = pytest.mark.django_db(transaction=True)

PLUGIN = Path(__file__).resolve().parents[1] / "integrations" / "wordpress"
# The Standard Webhooks reference vector (github.com/standard-webhooks/standard-webhooks, the spec).
VECTOR = {
    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
    "timestamp": 1614265330,
    "body": '{"test": 2432232314}',
    "signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
}


@pytest.fixture
def hooked(settings, live_server, feed_server):
    """A polled feed with a webhook; returns (feed, url, secret)."""
    settings.SYNDICATOR_PUSH_ENABLED = True
    settings.SYNDICATOR_PUBLIC_URL = live_server.url
    feed_server.set("/feed", rss(1, 2))
    feed = Feed.objects.create(url=feed_server.url("/feed"), poll_interval=3600)
    from syndicator import watch

    watch.poll_feed(feed.pk)  # the backlog
    out = StringIO()
    call_command("feeds", "webhook", str(feed.pk), stdout=out)
    lines = out.getvalue().splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == ["url", "secret"]
    return Feed.objects.get(pk=feed.pk), lines[0][5:], lines[1][8:]


def signed(secret: str, body: bytes, *, msg_id: str = "msg_1", at: datetime | None = None) -> dict[str, str]:
    at = at or datetime.now(UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body.decode()),
        "Content-Type": "application/json",
    }


def test_signed_call_polls_the_feed_now_and_delivers(hooked, feed_server, celery_worker):
    feed, url, secret = hooked
    Target.objects.create(name="out", kind="outbox")
    assert url.endswith(f"/hooks/feeds/{feed.pk}") and secret.startswith("whsec_")
    feed_server.set("/feed", rss(1, 2, 3))
    body = json.dumps({"type": "post.published", "url": "https://news.example/3"}).encode()
    response = httpx.post(url, content=body, headers=signed(secret, body))
    assert response.status_code == 202
    wait_for(lambda: Delivery.objects.filter(status="sent", post__guid="story-3").exists())


def test_named_article_is_looked_for_until_the_feed_has_it(hooked, feed_server, celery_worker):
    feed, url, secret = hooked
    hits = feed_server.hits("/feed")
    # The feed (a cache in front of it, say) shows the new article only a moment after the call.
    threading.Timer(1.5, lambda: feed_server.set("/feed", rss(1, 2, 3))).start()
    body = json.dumps({"url": "https://news.example/3"}).encode()
    assert httpx.post(url, content=body, headers=signed(secret, body)).status_code == 202
    wait_for(lambda: Post.objects.filter(feed=feed, guid="story-3").exists(), timeout=15)
    assert feed_server.hits("/feed") - hits >= 2


@pytest.mark.parametrize(
    "tamper",
    ["unsigned", "wrong-secret", "changed-body", "old-timestamp", "replayed-id"],
)
def test_refused_calls_get_401_and_poll_nothing(hooked, feed_server, tamper):
    feed, url, secret = hooked
    body = b'{"type": "post.published"}'
    headers = signed(secret, body)
    if tamper == "unsigned":
        headers = {"Content-Type": "application/json"}
    elif tamper == "wrong-secret":
        headers = signed("whsec_" + "A" * 43 + "=", body)
    elif tamper == "changed-body":
        body = b'{"type": "post.deleted"}'
    elif tamper == "old-timestamp":
        headers = signed(secret, body, at=datetime.now(UTC) - timedelta(minutes=6))
    elif tamper == "replayed-id":
        assert httpx.post(url, content=body, headers=headers).status_code == 202
        feed = Feed.objects.get(pk=feed.pk)
    hits = feed_server.hits("/feed")
    response = httpx.post(url, content=body, headers=headers)
    assert response.status_code == 401, response.text
    assert secret not in response.text
    time.sleep(0.3)  # nothing is queued (no worker runs here); a poll would need one anyway
    assert feed_server.hits("/feed") == hits
    assert Feed.objects.get(pk=feed.pk).last_polled_at == feed.last_polled_at


def test_webhook_of_a_removed_feed_is_404(hooked):
    feed, url, secret = hooked
    feed.delete()
    body = b"{}"
    assert httpx.post(url, content=body, headers=signed(secret, body)).status_code == 404


def test_rotate_makes_a_new_secret_and_the_old_one_stops_working(hooked):
    feed, url, old = hooked
    out = StringIO()
    call_command("feeds", "webhook", str(feed.pk), "--rotate", stdout=out)
    new = out.getvalue().splitlines()[1][len("secret: ") :]
    assert new != old and new.startswith("whsec_")
    body = b"{}"
    assert httpx.post(url, content=body, headers=signed(old, body, msg_id="a")).status_code == 401
    assert httpx.post(url, content=body, headers=signed(new, body, msg_id="b")).status_code == 202


def test_a_feed_without_a_webhook_refuses_every_call(settings, live_server, feed_server):
    feed = Feed.objects.create(url=feed_server.url("/feed"))
    body = b"{}"
    headers = signed(webhook.secret(feed) or "whsec_" + "B" * 43 + "=", body)
    response = httpx.post(f"{live_server.url}/hooks/feeds/{feed.pk}", content=body, headers=headers)
    assert response.status_code == 401 and "no webhook" in response.json()["error"]


def test_reference_vector_signs_as_the_spec_says():
    at = datetime.fromtimestamp(VECTOR["timestamp"], UTC)
    assert Webhook(VECTOR["secret"]).sign(VECTOR["id"], at, VECTOR["body"]) == VECTOR["signature"]


def php(code: str) -> str:
    if shutil.which("php") is None:
        pytest.fail("php-cli is not installed (apt-get install -y php-cli); the plugin cannot be checked")
    result = subprocess.run(
        ["php", "-r", f"require '{PLUGIN / 'signature.php'}'; {code}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout


def test_wordpress_plugin_signs_the_reference_vector_as_standard_webhooks():
    args = ", ".join(json.dumps(VECTOR[k]) for k in ("secret", "id")) + f", {VECTOR['timestamp']}"
    out = php(f"echo syndicator_webhook_signature({args}, {json.dumps(VECTOR['body'])});")
    assert out == VECTOR["signature"]


def test_wordpress_plugin_headers_are_accepted_by_our_endpoint(hooked):
    _, url, secret = hooked
    body = json.dumps({"type": "post.published", "url": "https://news.example/2", "id": 2})
    call = f"syndicator_webhook_headers({json.dumps(secret)}, {json.dumps(body)})"
    headers = json.loads(php(f"echo json_encode({call});"))
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature", "content-type"}
    assert httpx.post(url, content=body.encode(), headers=headers).status_code == 202


# --- unpublishing (#12) ----------------------------------------------------------------------------


@pytest.mark.parametrize("event", ["post.unpublished", "post.trashed", "post.deleted"])
def test_a_signed_unpublish_call_unpublishes_the_article_it_names(hooked, monkeypatch, event):
    from syndicator import followup

    reported = []
    monkeypatch.setattr(
        followup,
        "post_unpublished",
        lambda post, *, reason, actor=None: reported.append((post.pk, reason)) or 0,
    )
    feed, url, secret = hooked
    post = Post.objects.get(feed=feed, guid="story-2")
    # A trashed WordPress post's permalink changed ("__trashed"): its guid still names it.
    body = json.dumps(
        {"type": event, "url": "https://news.example/2__trashed/", "guid": "story-2", "id": 2}
    ).encode()
    response = httpx.post(url, content=body, headers=signed(secret, body))
    assert response.status_code == 202, response.text
    assert response.json() == {"status": "unpublished", "feed": feed.pk, "posts": [post.pk]}
    post.refresh_from_db()
    assert post.unpublished_at is not None
    assert post.unpublished_reason == "the publish webhook said it was unpublished"
    assert reported == [(post.pk, "the publish webhook said it was unpublished")]
    assert Post.objects.filter(unpublished_at__isnull=False).count() == 1

    # Said twice: recorded and reported once.
    again = httpx.post(url, content=body, headers=signed(secret, body, msg_id="msg_2"))
    assert again.json()["posts"] == [] and len(reported) == 1


def test_an_unpublish_call_by_permalink_with_tracking_parameters_finds_the_post(hooked, monkeypatch):
    from syndicator import followup

    monkeypatch.setattr(followup, "post_unpublished", lambda post, *, reason, actor=None: 0)
    _, url, secret = hooked
    body = json.dumps({"type": "post.unpublished", "url": "https://NEWS.example/1/?utm_source=wp#x"}).encode()
    assert httpx.post(url, content=body, headers=signed(secret, body)).status_code == 202
    assert list(Post.objects.filter(unpublished_at__isnull=False).values_list("guid", flat=True)) == [
        "story-1"
    ]


def test_an_unpublish_call_for_another_feeds_post_changes_nothing(hooked, feed_server):
    _, url, secret = hooked
    feed_server.set("/other", rss(7))
    other = Feed.objects.create(url=feed_server.url("/other"))
    from syndicator import watch

    watch.poll_feed(other.pk)
    body = json.dumps({"type": "post.deleted", "url": "https://news.example/7"}).encode()
    assert httpx.post(url, content=body, headers=signed(secret, body)).json()["posts"] == []
    assert not Post.objects.filter(unpublished_at__isnull=False).exists()


def test_wordpress_plugin_names_the_event_of_each_status_change():
    cases = {
        ("publish", "draft"): "post.published",
        ("publish", "publish"): "post.updated",
        ("draft", "publish"): "post.unpublished",
        ("private", "publish"): "post.unpublished",
        ("trash", "publish"): "post.trashed",
        ("trash", "draft"): "",
    }
    plugin = PLUGIN / "syndicator-webhook.php"
    # The plugin file needs WordPress to load; its event function is pure: run it on its own.
    source = plugin.read_text()
    start = source.index("function syndicator_webhook_event")
    end = source.index("\n}\n", start) + 3
    code = source[start:end] + "".join(
        f"echo syndicator_webhook_event({json.dumps(new)}, {json.dumps(old)}), '|';" for new, old in cases
    )
    assert php(code).split("|")[:-1] == list(cases.values())
