"""End to end: a new post in a served feed reaches every network exactly once, through a real worker."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from syndicator.models import Delivery, Feed
from tasks.watch import poll_feed
from tests.conftest import wait_for
from tests.emulators import harness_class, network_kinds

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_new_post_reaches_every_network_once_with_its_url_in_the_log(feed_server, celery_worker, beat):
    harnesses = {kind: harness_class(kind)() for kind in network_kinds()}
    for harness in harnesses.values():
        harness.__enter__()
    try:
        for kind, harness in harnesses.items():
            harness.make_target(name=f"e2e-{kind}")
        feed_server.set_file("/en/feed/", "nejat-en-recent.rss")
        feed = Feed.objects.create(url=feed_server.url("/en/feed/"), language="en")
        poll_feed.delay(feed.pk)
        wait_for(lambda: Feed.objects.get(pk=feed.pk).last_success_at)
        feed_server.set_file("/en/feed/", "nejat-en-recent-next.rss")
        poll_feed.delay(feed.pk)

        wait_for(lambda: Delivery.objects.filter(status="sent").count() == len(harnesses), timeout=30)

        for kind, harness in harnesses.items():
            sent = harness.sent()
            assert len(sent) == 1, f"{kind} received {len(sent)} messages"
            assert "Nejat NewsLetter" in sent[0]["text"], kind
        out = StringIO()
        call_command("log", "--json", stdout=out)
        rows = {row["target"]: row for row in map(json.loads, out.getvalue().splitlines())}
        assert set(rows) == {f"e2e-{kind}" for kind in harnesses}
        for kind, harness in harnesses.items():
            if harness.public_urls:
                assert rows[f"e2e-{kind}"]["external_url"].startswith("https://"), rows[f"e2e-{kind}"]
        assert all(row["status"] == "sent" and row["attempts"] == 1 for row in rows.values())
    finally:
        for harness in harnesses.values():
            harness.__exit__(None, None, None)
