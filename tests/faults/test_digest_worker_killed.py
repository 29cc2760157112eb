"""kill -9 a worker in the middle of an email digest: each subscriber gets it once, the rest are sent.

A real SMTP server (a thread of this process), real worker processes, the sweeper on its beat: the
digest's time has come, the sweeper makes the period's delivery, a worker sends it and is killed
while the server holds the answer to the 4th message.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta

import pytest

from syndicator.models import Delivery, DeliveryAttempt, Digest, EmailRecipientResult, Target
from tests.conftest import wait_for
from tests.emulators import email as smtp_emulator
from tests.emulators.email import SmtpServer
from tests.helpers import demo_post

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

READERS = [f"reader{n}@example.org" for n in range(8)]
HELD = 4  # the server never answers this message while the first worker lives


def test_a_worker_killed_mid_digest_sends_nobody_two_and_the_retry_sends_the_rest(
    start_worker, sweeper, monkeypatch
):
    arrived, hold = threading.Event(), threading.Event()
    original = smtp_emulator._Handler.handle_DATA

    async def handle(self, server, session, envelope):
        reply = await original(self, server, session, envelope)
        if len(self.server.messages) == HELD and not hold.is_set():
            arrived.set()  # the message is in; its answer never reaches the first worker
            while not hold.is_set():
                await asyncio.sleep(0.05)
        return reply

    monkeypatch.setattr(smtp_emulator._Handler, "handle_DATA", handle)
    with SmtpServer() as smtp:
        now = datetime.now(UTC)
        digest_at = now - timedelta(minutes=10)  # today's digest time has just passed
        target = Target.objects.create(
            kind="email",
            name="morning",
            settings={
                "host": smtp.host,
                "port": smtp.port,
                "security": "none",
                "from_address": "news@nejat.example",
                "timeout": 30,
                "write_ahead": 1,  # one subscriber in doubt at most, the one whose answer was held
                "mode": "digest",
                "digest_at": f"{digest_at:%H:%M}",
            },
        )
        Target.objects.filter(pk=target.pk).update(created_at=now - timedelta(days=2))
        for address in READERS:
            target.subscribers.create(email=address)
        posts = [
            demo_post("nejat-en-recent.rss", n, first_seen_at=now - timedelta(days=1, hours=n))
            for n in range(3)
        ]

        first = start_worker(concurrency=1)
        wait_for(lambda: first.check() or arrived.is_set(), timeout=60)
        first.kill()
        hold.set()
        start_worker(concurrency=1)
        delivery = Delivery.objects.get(target=target)
        wait_for(lambda: Delivery.objects.get(pk=delivery.pk).status == "uncertain", timeout=60)

        received = [m.rcpt for m in smtp.messages]
        assert sorted(received) == READERS, "each subscriber exactly once: nobody got two, nobody none"
        for message in smtp.messages:
            assert all(post.title in message.text for post in posts)
        results = dict(
            EmailRecipientResult.objects.filter(delivery=delivery).values_list("subscriber__email", "status")
        )
        # The held one's message went out and its answer was lost: "unknown", never sent again.
        assert results == {a: "unknown" if a == READERS[HELD - 1] else "accepted" for a in READERS}
        outcomes = list(DeliveryAttempt.objects.filter(delivery=delivery).values_list("outcome", flat=True))
        assert outcomes == ["lost", "unknown"], "the lost send, then the retry that sent the rest"
        delivery.refresh_from_db()
        assert "accepted 7, unknown 1" in delivery.last_error
        # The sweeper kept running all along: still one digest and one delivery for the period.
        assert Digest.objects.filter(target=target).count() == 1
        assert Delivery.objects.filter(target=target).count() == 1
