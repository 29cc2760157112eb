"""The email target over real SMTP on loopback (aiosmtpd): messages, unsubscribe, retries, errors, CLI."""

from __future__ import annotations

import logging
import re
import time
from io import StringIO
from urllib.parse import urlsplit

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.utils import timezone

from syndicator import delivery as deliveries
from syndicator import mailing
from syndicator.errors import (
    DeliveryError,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    TargetBroken,
    TransientError,
)
from syndicator.models import Delivery, DeliveryAttempt, EmailRecipientResult, Post, Subscriber, Target
from syndicator.targets import get_adapter
from tests.emulators import email as smtp_emulator
from tests.emulators.email import Harness, SmtpServer, free_port, self_signed_certificate
from tests.faults.support import database_url
from tests.helpers import demo_post, require_postgresql

pytestmark = pytest.mark.django_db

PUBLIC_URL = "https://news.example.org"


@pytest.fixture(autouse=True)
def public_url(settings):
    settings.SYNDICATOR_PUBLIC_URL = PUBLIC_URL


@pytest.fixture
def smtp():
    with SmtpServer() as server:
        yield server


@pytest.fixture
def harness():
    with Harness() as running:
        yield running


fixture_post = demo_post


def email_target(server: SmtpServer, *addresses: str, name: str = "newsletter", **settings) -> Target:
    """An email target sending to the server in clear (loopback), with these subscribers."""
    target = Target.objects.create(
        kind="email",
        name=name,
        settings={
            "host": server.host,
            "port": server.port,
            "security": "none",
            "from_address": "news@nejat.example",
            "from_name": "Nejat News",
            "timeout": 2,
            **settings,
        },
    )
    for address in addresses:
        Subscriber.objects.create(target=target, email=address)
    return target


def send(target: Target, post: Post) -> object:
    """Render and send one new delivery of the post, straight through the adapter."""
    delivery = Delivery.objects.create(post=post, target=target, origin="manual")
    adapter = get_adapter(target)
    return adapter.send(adapter.render(delivery), delivery)


def attempt(delivery: Delivery) -> DeliveryAttempt:
    """One attempt through the delivery pipeline, due now whatever its backoff said."""
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=None)
    result = deliveries.attempt_delivery(delivery.pk)
    assert result is not None, "the delivery was claimable"
    return result


def results(delivery: Delivery) -> dict[str, str]:
    """Each subscriber's recorded status for a delivery, by address."""
    return dict(
        EmailRecipientResult.objects.filter(delivery=delivery).values_list("subscriber__email", "status")
    )


def unsubscribe_path(header: str) -> str:
    """The path of the HTTPS URI in a List-Unsubscribe header."""
    url = re.search(r"<(https://[^>]+)>", header).group(1)
    assert url.startswith(PUBLIC_URL + "/unsubscribe/")
    return urlsplit(url).path


def run(*args: str) -> tuple[str, str]:
    """A syndicator command in-process; what it printed on stdout and stderr."""
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


# --- the message ---------------------------------------------------------------------------------


def test_each_subscriber_gets_text_and_html_alternatives_of_a_real_post(smtp):
    post = fixture_post("nejat-en-recent.rss")
    target = email_target(smtp, "ann@example.org", "bob@example.org", reply_to="desk@nejat.example")

    result = send(target, post)

    assert result.external_id == "accepted 2"
    assert [m.rcpt for m in smtp.messages] == ["ann@example.org", "bob@example.org"]
    message = smtp.messages[0].message
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    assert post.title in smtp.messages[0].text and post.title in smtp.messages[0].html
    assert message["Subject"] == post.title
    assert message["From"] == "Nejat News <news@nejat.example>"
    assert message["To"] == "ann@example.org"
    assert message["Reply-To"] == "desk@nejat.example"
    assert message["List-Id"] == "<newsletter.syndicator>"
    assert message["Date"]
    assert smtp.messages[0].raw.isascii(), "7-bit transfer encodings only"
    # The server's final 250 reply (its queue id) and the Message-ID are kept per recipient.
    row = EmailRecipientResult.objects.get(subscriber__email="ann@example.org")
    assert (row.status, row.smtp_code) == ("accepted", 250)
    assert row.smtp_reply.startswith("250 2.0.0 Ok: queued as Q")
    assert row.message_id == message["Message-ID"]


def test_an_arabic_post_arrives_intact_and_right_to_left(smtp):
    post = fixture_post("nejat-ar.rss")
    target = email_target(smtp, "reader@example.org")

    send(target, post)

    (received,) = smtp.messages
    assert received.message["Subject"] == post.title
    assert received.message["Content-Language"] == "ar"
    assert post.title in received.text
    assert 'dir="rtl"' in received.html and post.title in received.html
    assert "إلغاء الاشتراك" in received.text  # the unsubscribe footer speaks the post's language


def test_the_message_id_is_the_same_for_the_same_post_and_recipient_only(smtp):
    post, other_post = fixture_post("nejat-en-recent.rss", 0), fixture_post("nejat-en-recent.rss", 1)
    target = email_target(smtp, "ann@example.org", "bob@example.org")

    send(target, post)
    send(target, post)  # a manual repost of the same post
    send(target, other_post)

    ids = [(m.rcpt, m.message["Message-ID"]) for m in smtp.messages]
    ann_first, bob_first, ann_again, bob_again, ann_other, _ = (mid for _, mid in ids)
    assert ann_first == ann_again and bob_first == bob_again
    assert len({ann_first, bob_first, ann_other}) == 3
    assert re.fullmatch(r"<[0-9a-f]{32}@nejat\.example>", ann_first)


# --- unsubscribe ---------------------------------------------------------------------------------


def test_the_one_click_post_to_the_header_url_unsubscribes_exactly_that_subscriber(smtp):
    target = email_target(
        smtp, "ann@example.org", "bob@example.org", unsubscribe_mailto="leave@nejat.example"
    )
    send(target, fixture_post("nejat-en-recent.rss"))
    headers = smtp.messages[0].message
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "<mailto:leave@nejat.example?subject=unsubscribe>" in headers["List-Unsubscribe"]
    path = unsubscribe_path(headers["List-Unsubscribe"])
    # Raw, not RFC 2047-encoded: providers look for "<https://" in the header as sent.
    assert re.search(
        rb"^List-Unsubscribe: <https://news\.example\.org/unsubscribe/", smtp.messages[0].raw, re.M
    )
    assert PUBLIC_URL + path in smtp.messages[0].text, "the same link is visible in the body"
    client = Client(enforce_csrf_checks=True)

    page = client.get(path)  # a link scanner's GET changes nothing
    assert page.status_code == 200 and b'method="post"' in page.content
    assert Subscriber.objects.active().count() == 2
    # RFC 8058: the mail provider POSTs this form body, without cookies or a CSRF token.
    answer = client.post(path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")

    assert answer.status_code == 200 and b"unsubscribed" in answer.content
    assert list(Subscriber.objects.active().values_list("email", flat=True)) == ["bob@example.org"]
    send(target, fixture_post("nejat-en-recent.rss", 1))
    assert [m.rcpt for m in smtp.messages[2:]] == ["bob@example.org"]


def test_a_token_cannot_unsubscribe_anyone_else():
    target = Target.objects.create(kind="email", name="list", settings={})
    ann = Subscriber.objects.create(target=target, email="ann@example.org")
    bob = Subscriber.objects.create(target=target, email="bob@example.org")
    token = mailing.unsubscribe_token(ann)
    value, _, signature = token.partition(":")
    tampered = f"{bob.pk}{value[len(str(ann.pk)) :]}:{signature}"  # Bob's id under Ann's signature

    assert Client().post(f"/unsubscribe/{tampered}").status_code == 400
    Subscriber.objects.filter(pk=ann.pk).update(email="ann@elsewhere.example")  # the address changed
    assert Client().post(f"/unsubscribe/{token}").status_code == 400
    assert Subscriber.objects.active().count() == 2


def test_an_expired_token_is_refused_with_a_clear_page(monkeypatch):
    target = Target.objects.create(kind="email", name="list", settings={})
    ann = Subscriber.objects.create(target=target, email="ann@example.org")
    long_ago = time.time() - 91 * 86400  # past the default 90 days
    with monkeypatch.context() as patch:
        patch.setattr(time, "time", lambda: long_ago)
        token = mailing.unsubscribe_token(ann)

    answer = Client().post(f"/unsubscribe/{token}")

    assert answer.status_code == 400 and b"expired" in answer.content
    assert Subscriber.objects.get(pk=ann.pk).unsubscribed_at is None


# --- partial refusal and retries -----------------------------------------------------------------


def test_one_bad_address_never_blocks_the_rest_and_the_retry_sends_only_to_the_deferred(smtp):
    smtp.refuse("gone@example.org", "550 5.1.1 no such user")
    smtp.refuse("busy@example.org", "450 4.2.0 mailbox busy, try later")
    target = email_target(smtp, "good@example.org", "gone@example.org", "busy@example.org")
    delivery = Delivery.objects.create(post=fixture_post("nejat-en-recent.rss"), target=target)

    first = attempt(delivery)

    assert (first.outcome, first.error_class) == ("transient", "TransientError")
    assert "450 4.2.0 mailbox busy" in first.message
    assert results(delivery) == {
        "good@example.org": "accepted",
        "gone@example.org": "refused",
        "busy@example.org": "deferred",
    }
    gone = Subscriber.objects.get(email="gone@example.org")
    assert gone.suppressed_at and "550 5.1.1 no such user" in gone.suppressed_reason
    assert Delivery.objects.get(pk=delivery.pk).status == "retrying"

    smtp.refusals.clear()  # the busy mailbox recovers
    second = attempt(delivery)

    assert second.outcome == "sent"
    assert [m.rcpt for m in smtp.messages] == ["good@example.org", "busy@example.org"]
    done = Delivery.objects.get(pk=delivery.pk)
    assert (done.status, done.external_id) == ("sent", "accepted 2, refused 1")


def test_a_full_attempt_through_the_pipeline_ends_sent(smtp):
    target = email_target(smtp, "ann@example.org")
    delivery = Delivery.objects.create(post=fixture_post("nejat-en-recent.rss"), target=target)

    logged = attempt(delivery)

    assert logged.outcome == "sent"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.external_id, delivery.attempts) == ("sent", "accepted 1", 1)
    assert delivery.rendered_text.startswith("Subject: ")


def test_an_unknown_recipient_is_left_to_an_admin_and_an_admin_retry_resends_only_to_it(smtp):
    target = email_target(smtp, "ann@example.org", "bob@example.org", "cat@example.org")
    delivery = Delivery.objects.create(post=fixture_post("nejat-en-recent.rss"), target=target)
    smtp.fail_next_session(drop_after_data=True)  # Ann's message is kept, its 250 never comes

    assert attempt(delivery).outcome == "transient"  # Bob and Cat were never tried: they wait
    assert attempt(delivery).error_class == "OutcomeUnknown"  # they got it; only Ann is in doubt

    assert results(delivery) == {
        "ann@example.org": "unknown",
        "bob@example.org": "accepted",
        "cat@example.org": "accepted",
    }
    assert Delivery.objects.get(pk=delivery.pk).status == "uncertain"
    assert [m.rcpt for m in smtp.messages] == ["ann@example.org", "bob@example.org", "cat@example.org"]

    deliveries.retry([delivery])  # an admin decides to re-send
    assert attempt(delivery).outcome == "sent"
    assert [m.rcpt for m in smtp.messages[3:]] == ["ann@example.org"]


def cut_our_database_session(server_stage: str, monkeypatch, *, nth: int = 1) -> None:
    """At the nth RCPT (before answering it) or DATA (after keeping the message, before the 250),
    the SMTP server ends this test's PostgreSQL session, as a database restart would."""
    require_postgresql("it ends this test's PostgreSQL session")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        [pid] = cursor.fetchone()
    original, seen = getattr(smtp_emulator._Handler, f"handle_{server_stage}"), []

    def cut() -> None:
        with psycopg.connect(database_url(), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
            deadline = time.monotonic() + 5
            while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
                assert time.monotonic() < deadline, "the session outlived pg_terminate_backend"
                time.sleep(0.01)

    async def handle(self, *args):
        seen.append(server_stage)
        if server_stage == "RCPT" and len(seen) == nth:
            cut()
        reply = await original(self, *args)
        if server_stage == "DATA" and len(seen) == nth:
            cut()
        return reply

    monkeypatch.setattr(smtp_emulator._Handler, f"handle_{server_stage}", handle)


@pytest.mark.django_db(transaction=True)
def test_a_database_drop_before_data_is_a_transient_failure_and_the_retry_sends_the_rest(smtp, monkeypatch):
    target = email_target(smtp, "ann@example.org", "bob@example.org", write_ahead=1)
    delivery = Delivery.objects.create(post=fixture_post("nejat-en-recent.rss"), target=target)
    cut_our_database_session("RCPT", monkeypatch, nth=2)  # Ann has her message; Bob's never left

    first = attempt(delivery)

    assert (first.outcome, first.error_class) == ("transient", "TransientError"), first.message
    assert "OperationalError" in first.message and "recorded with its answer" in first.message
    assert Delivery.objects.get(pk=delivery.pk).status == "retrying"
    assert results(delivery) == {"ann@example.org": "accepted"}
    assert attempt(delivery).outcome == "sent"
    assert [m.rcpt for m in smtp.messages] == ["ann@example.org", "bob@example.org"], "each once"


@pytest.mark.django_db(transaction=True)
def test_a_database_drop_after_data_keeps_the_answer_held_in_memory_and_sends_nobody_twice(smtp, monkeypatch):
    # Answers are held and written with the next write-ahead (issue 16); when the database drops,
    # the ones held are written on a fresh connection, so Ann's 250 is not lost to "unknown".
    target = email_target(smtp, "ann@example.org")
    delivery = Delivery.objects.create(post=fixture_post("nejat-en-recent.rss"), target=target)
    cut_our_database_session("DATA", monkeypatch)  # the server keeps Ann's message, then our session dies

    first = attempt(delivery)

    assert (first.outcome, first.error_class) == ("transient", "TransientError"), first.message
    assert "OperationalError" in first.message and "recorded with its answer" in first.message
    assert results(delivery) == {"ann@example.org": "accepted"}
    assert attempt(delivery).outcome == "sent"
    assert [m.rcpt for m in smtp.messages] == ["ann@example.org"], "never twice"


@pytest.mark.django_db(transaction=True)
def test_a_database_drop_after_one_data_of_several_lets_the_others_have_their_retry(smtp, monkeypatch):
    target = email_target(smtp, "ann@example.org", "bob@example.org", write_ahead=1)
    delivery = Delivery.objects.create(post=fixture_post("nejat-en-recent.rss"), target=target)
    cut_our_database_session("DATA", monkeypatch)  # Ann's answer is held when the session dies

    assert attempt(delivery).error_class == "TransientError"
    assert attempt(delivery).outcome == "sent"

    assert results(delivery) == {"ann@example.org": "accepted", "bob@example.org": "accepted"}
    assert [m.rcpt for m in smtp.messages] == ["ann@example.org", "bob@example.org"]


def test_a_long_list_is_sent_in_batches_that_pause_within_the_time_limit(smtp):
    target = email_target(smtp, "ann@example.org", "bob@example.org", batch_seconds=0.000001)
    delivery = Delivery.objects.create(post=fixture_post("nejat-en-recent.rss"), target=target)

    first = attempt(delivery)

    assert (first.outcome, first.retry_after) == ("rate_limited", 1.0)
    assert attempt(delivery).outcome == "sent"
    assert [m.rcpt for m in smtp.messages] == ["ann@example.org", "bob@example.org"]


def test_a_slow_down_waits_the_typed_rate_limit_wait(smtp):
    # A duration written as text ("5m", as the CLI and the admin form take it) is read typed.
    target = email_target(smtp, "ann@example.org", rate_limit_wait="5m")
    smtp.fail_next_session(rcpt="451 4.4.5 slow down")

    with pytest.raises(DeliveryError) as raised:
        send(target, fixture_post("nejat-en-recent.rss"))

    assert type(raised.value) is RateLimited and raised.value.retry_after == 300.0
    assert "4.4.5 slow down" in str(raised.value) and "slow down" in str(raised.value)


@pytest.mark.parametrize(
    ("setting", "value"),
    [("timeout", "soon"), ("port", "submission"), ("allow_insecure", "maybe"), ("batch_seconds", "-1")],
)
def test_a_bad_setting_pauses_the_target_before_any_session(smtp, setting, value):
    # They used to fall back (allow_insecure "maybe" read as false) or fail with words of their own.
    target = email_target(smtp, "ann@example.org", **{setting: value})
    delivery = Delivery.objects.create(post=fixture_post("nejat-en-recent.rss"), target=target)

    logged = attempt(delivery)

    target.refresh_from_db()
    assert logged.error_class == "TargetBroken" and f"setting {setting}=" in logged.message
    assert target.paused_at is not None and f"setting {setting}=" in target.paused_reason
    assert smtp.messages == [] and results(delivery) == {}


def test_no_active_subscribers_is_a_success_with_zero_recipients(smtp):
    target = email_target(smtp, "gone@example.org")
    Subscriber.objects.update(unsubscribed_at=timezone.now())

    result = send(target, fixture_post("nejat-en-recent.rss"))

    assert result.external_id == "accepted 0 (no active subscribers)"
    assert result.details["recipients"] == 0 and "no active subscribers" in result.details["note"]
    assert smtp.messages == []


# --- errors: every row of TARGETS.md §4 "retry vs give up" -----------------------------------------

# (faults of the session, the error send() raises, the subscriber's recorded status, suppressed?)
SESSION_ROWS = [
    pytest.param({"rcpt": "451 4.3.0 try later"}, TransientError, "deferred", False, id="4xx-at-RCPT"),
    pytest.param({"data": "452 4.3.1 no room"}, TransientError, "deferred", False, id="4xx-after-DATA"),
    pytest.param({"greeting": "421 4.3.2 not now"}, TransientError, None, False, id="SMTPConnectError"),
    pytest.param({"auth": "454 4.7.0 auth unavailable"}, TransientError, None, False, id="4xx-at-AUTH"),
    pytest.param({"hang_up": True}, TransientError, None, False, id="SMTPServerDisconnected"),
    pytest.param({"stall": 30}, TransientError, None, False, id="TimeoutError-before-greeting"),
    pytest.param({"rcpt": "451 4.4.5 slow down"}, RateLimited, "deferred", False, id="4xx-slow-down"),
    pytest.param({"rcpt": "550 5.1.1 no such user"}, PermanentError, "refused", True, id="5xx-at-RCPT"),
    pytest.param(
        {"data": "550 5.1.1 unknown user"}, PermanentError, "refused", True, id="5xx-mailbox-after-DATA"
    ),
    pytest.param({"data": "554 5.7.1 spam"}, PermanentError, "refused", False, id="5xx-content-after-DATA"),
    pytest.param(
        {"auth": "535 5.7.8 bad credentials"}, TargetBroken, None, False, id="SMTPAuthenticationError"
    ),
    pytest.param(
        {"drop_after_data": True}, OutcomeUnknown, "unknown", False, id="disconnect-after-final-dot"
    ),
    pytest.param({"data_stall": 30}, OutcomeUnknown, "unknown", False, id="timeout-after-final-dot"),
]


@pytest.mark.parametrize(("faults", "error", "status", "suppressed"), SESSION_ROWS)
def test_each_smtp_failure_maps_to_its_error_class(harness, faults, error, status, suppressed):
    target = harness.make_target()
    delivery = Delivery.objects.create(post=fixture_post("nejat-en-recent.rss"), target=target)
    harness.server.fail_next_session(**faults)
    adapter = get_adapter(target)

    with pytest.raises(DeliveryError) as raised:  # any of them, so a wrong class fails the assert
        adapter.send(adapter.render(delivery), delivery)

    assert type(raised.value) is error, repr(raised.value)
    assert results(delivery).get(Harness.SUBSCRIBER) == status
    assert bool(Subscriber.objects.get(email=Harness.SUBSCRIBER).suppressed_at) is suppressed
    assert Harness.PASSWORD not in str(raised.value)


# (changed settings of the target against a plain server without AUTH, the error, what its message says)
CONNECTION_ROWS = [
    pytest.param({"port": "closed"}, TransientError, "unreachable", id="ConnectionError"),
    pytest.param({"security": "tls"}, TransientError, "TLS failed", id="ssl.SSLError"),
    pytest.param({"security": "starttls"}, TargetBroken, "STARTTLS", id="SMTPNotSupportedError-STARTTLS"),
    pytest.param({"username": "someone"}, TargetBroken, "AUTH", id="SMTPNotSupportedError-AUTH"),
]


@pytest.mark.parametrize(("changes", "error", "says"), CONNECTION_ROWS)
def test_each_connection_failure_maps_to_its_error_class(smtp, monkeypatch, changes, error, says):
    monkeypatch.setenv("SYNDICATOR_TEST_SMTP_PASSWORD_2", "irrelevant")
    if changes.get("port") == "closed":
        changes = {"port": free_port()}  # nothing listens there
    target = email_target(smtp, "ann@example.org", **changes)
    target.secret_env = "SYNDICATOR_TEST_SMTP_PASSWORD_2"

    with pytest.raises(error) as raised:
        send(target, fixture_post("nejat-en-recent.rss"))

    assert says in str(raised.value)
    assert smtp.messages == []


def test_a_sender_the_server_refuses_pauses_the_target(harness):
    target = harness.make_target(username="")  # the server requires AUTH: MAIL gets 530 5.7.0
    delivery = Delivery.objects.create(post=fixture_post("nejat-en-recent.rss"), target=target)

    logged = attempt(delivery)

    assert logged.error_class == "TargetBroken" and "530" in logged.message
    assert Target.objects.get(pk=target.pk).paused_at is not None


def test_a_failed_login_pauses_the_target_and_the_password_appears_nowhere(harness, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(Harness.SECRET_ENV, "wrong-Pa55word-also-secret")
    target = harness.make_target()
    delivery = Delivery.objects.create(post=fixture_post("nejat-en-recent.rss"), target=target)

    logged = attempt(delivery)
    with pytest.raises(TargetBroken) as checked:
        get_adapter(target).check()

    assert logged.error_class == "TargetBroken" and "535" in logged.message
    assert f"${Harness.SECRET_ENV}" in logged.message, "the message names where the password comes from"
    target.refresh_from_db()
    delivery.refresh_from_db()
    assert target.paused_at is not None and delivery.status == "queued"
    texts = [logged.message, delivery.last_error, target.paused_reason, str(checked.value), caplog.text]
    for secret in ("wrong-Pa55word-also-secret", Harness.PASSWORD):
        assert not any(secret in text for text in texts)


def test_clear_text_to_a_remote_host_is_refused_unless_allowed():
    target = Target.objects.create(
        kind="email",
        name="remote",
        settings={"host": "smtp.example.org", "security": "none", "from_address": "news@example.org"},
    )
    with pytest.raises(TargetBroken, match="clear text"):
        get_adapter(target).config()

    target.settings["allow_insecure"] = "true"
    assert get_adapter(target).config().server.port == 587


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_starttls_and_implicit_tls_deliver_to_a_verified_server(tmp_path, security):
    cert, key = self_signed_certificate(tmp_path)
    tls = {"starttls": security == "starttls", "implicit_tls": security == "tls"}
    with SmtpServer(auth=("user", "pw"), certificate=(cert, key), **tls) as server:
        target = email_target(server, "ann@example.org", security=security, username="user")
        target.secret_env = "SYNDICATOR_TEST_SMTP_TLS_PASSWORD"
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SYNDICATOR_TEST_SMTP_TLS_PASSWORD", "pw")
            with pytest.raises(TransientError, match="certificate verify failed"):
                send(target, fixture_post("nejat-en-recent.rss"))  # the system CAs do not know it
            target.settings["ca_file"] = str(cert)
            assert send(target, fixture_post("nejat-en-recent.rss", 1)).external_id == "accepted 1"
    assert [m.rcpt for m in server.messages] == ["ann@example.org"]


# --- check() -------------------------------------------------------------------------------------


def test_check_logs_in_and_says_so(harness, settings):
    target = harness.make_target(name="letters")
    Subscriber.objects.create(target=target, email="second@example.org")

    out, _ = run("targets", "check", "letters")

    where = f"{harness.server.host}:{harness.server.port}"
    verdict = f"SMTP login to {where} as syndicator, none; 2 active subscribers"
    assert re.search(rf"letters\s+email\s+ok\s+{re.escape(verdict)}", out), out
    settings.SYNDICATOR_PUBLIC_URL = "http://127.0.0.1:8000"
    assert "is not https" in get_adapter(target).check()


@pytest.mark.parametrize(
    ("mode", "error"),
    [("bad_token", TargetBroken), ("server_error", TransientError), ("stall_greeting", TransientError)],
)
def test_check_fails_with_the_error_class_of_the_fault(harness, mode, error):
    target = harness.make_target()
    harness.inject(mode)
    with pytest.raises(error):
        get_adapter(target).check()


# --- the subscribers command ---------------------------------------------------------------------


def test_subscribers_add_list_remove(smtp):
    email_target(smtp, name="letters")

    assert run("subscribers", "add", "letters", "Ann@Example.ORG", "--name", "Ann")[0].startswith(
        "Ann@example.org subscribed"
    )
    run("subscribers", "add", "letters", "bob@example.org")
    with pytest.raises(CommandError, match="already subscribed"):
        run("subscribers", "add", "letters", "ann@example.org")
    with pytest.raises(CommandError, match="not a valid email address"):
        run("subscribers", "add", "letters", "not-an-address")

    table, _ = run("subscribers", "list", "letters")
    assert "Ann@example.org" in table and "2 subscribers, 2 active" in table
    rows = [line for line in run("subscribers", "list", "letters", "--json")[0].splitlines() if line]
    assert len(rows) == 2 and '"state": "active"' in rows[0]

    assert "removed bob@example.org" in run("subscribers", "remove", "letters", "BOB@example.org")[0]
    with pytest.raises(CommandError, match="not a subscriber"):
        run("subscribers", "remove", "letters", "bob@example.org")
    assert list(Subscriber.objects.values_list("email", flat=True)) == ["Ann@example.org"]


def test_subscribers_add_brings_back_an_unsubscribed_address_and_refuses_other_kinds(smtp):
    email_target(smtp, "ann@example.org", name="letters")
    Subscriber.objects.update(unsubscribed_at=timezone.now())
    Target.objects.create(kind="outbox", name="dry", settings={"format": "email"})

    assert "again (was unsubscribed)" in run("subscribers", "add", "letters", "ann@example.org")[0]
    assert Subscriber.objects.active().count() == 1
    with pytest.raises(CommandError, match="is a outbox target"):
        run("subscribers", "list", "dry")


def test_subscribers_import_reports_bad_lines_and_skips_duplicates(smtp, tmp_path):
    email_target(smtp, "old@example.org", "left@example.org", name="letters")
    Subscriber.objects.filter(email="left@example.org").update(unsubscribed_at=timezone.now())
    csv_file = tmp_path / "list.csv"
    csv_file.write_text(
        "\ufeffemail,name\n"
        "new@example.org,New Reader\n"
        "nonsense,Nobody\n"
        "\n"
        "old@example.org,Old Reader\n"
        "LEFT@example.org,Left Already\n"
        "new@EXAMPLE.org,Twice in the file\n"
        '"quoted@example.org","Name, With Comma"\n'
        "سلام@example.org,Not ASCII\n",
        encoding="utf-8",
    )

    out, err = run("subscribers", "import", "letters", str(csv_file))

    assert "imported 2 subscribers into 'letters'; 3 already there, 2 invalid" in out
    assert "line 3: 'nonsense' is not a valid email address; skipped" in err
    assert "line 9:" in err
    assert dict(Subscriber.objects.values_list("email", "name")) == {
        "old@example.org": "",
        "left@example.org": "",
        "new@example.org": "New Reader",
        "quoted@example.org": "Name, With Comma",
    }
    assert Subscriber.objects.get(email="left@example.org").unsubscribed_at, "an import never re-subscribes"
    with pytest.raises(CommandError, match="cannot read"):
        run("subscribers", "import", "letters", str(tmp_path / "missing.csv"))


# --- fan-out speed (issue 16): the message built once, results written in batches ---------------


@pytest.mark.parametrize(
    ("feed", "name", "mailto"),
    [("nejat-en-recent.rss", "", ""), ("nejat-ar.rss", "Zoë Ünal", "leave@nejat.example")],
)
def test_the_message_built_once_per_post_parses_like_the_reference_builder(feed, name, mailto, monkeypatch):
    import email as stdlib_email

    post = fixture_post(feed)
    subscriber = Subscriber(pk=41, email="Ann@Example.ORG", name=name)
    sender = mailing.Sender("news@nejat.example", "Nejat News", "desk@nejat.example", "n.s", mailto)
    settings = {"host": "127.0.0.1", "from_address": "a@b.org"}
    target = Target.objects.create(kind="email", name="n", settings=settings)
    message = get_adapter(target).render(Delivery(post=post, target=target))
    monkeypatch.setattr(mailing, "unsubscribe_token", lambda s: f"{s.pk}.same-token-for-both")
    reference = mailing.build_message(sender, message, subscriber, "<id@nejat.example>")
    fast = mailing.PreparedMessage(sender, message).payload(
        subscriber, "<id@nejat.example>", reference["Date"]
    )

    parse = lambda raw: stdlib_email.message_from_bytes(raw, policy=stdlib_email.policy.default)  # noqa: E731
    got, want = parse(fast), parse(reference.as_bytes(policy=mailing.WIRE))
    assert fast.count(b"\n") == fast.count(b"\r\n"), "CRLF line ends only"
    assert max(len(line) for line in fast.split(b"\r\n")) <= 998
    for header in (
        "From", "To", "Reply-To", "Subject", "Date", "Message-ID", "List-Id",
        "List-Unsubscribe", "List-Unsubscribe-Post", "Content-Language", "Content-Type",
    ):  # fmt: skip
        assert str(got[header]).split(";")[0] == str(want[header]).split(";")[0], header
    for kind in ("plain", "html"):
        mine, theirs = got.get_body((kind,)), want.get_body((kind,))
        assert (mine is None) == (theirs is None), kind
        if mine is not None:
            assert mine.get_content().replace("\r\n", "\n") == theirs.get_content().replace("\r\n", "\n")
            assert "41.same-token-for-both" in mine.get_content()


@pytest.mark.django_db(transaction=True)
def test_parallel_connections_send_each_subscriber_once(smtp):
    addresses = [f"reader{n}@example.org" for n in range(40)]
    target = email_target(smtp, *addresses, connections=3)
    delivery = Delivery.objects.create(post=fixture_post("nejat-en-recent.rss"), target=target)

    assert attempt(delivery).outcome == "sent"

    assert sorted(m.rcpt for m in smtp.messages) == sorted(addresses), "each once"
    assert len({m.message["Message-ID"] for m in smtp.messages}) == 40
    assert set(results(delivery).values()) == {"accepted"}


def test_a_subscriber_costs_one_write_of_its_result_not_two_transactions(smtp):
    from django.test.utils import CaptureQueriesContext

    addresses = [f"reader{n}@example.org" for n in range(30)]
    target = email_target(smtp, *addresses, write_ahead=1)
    delivery = Delivery.objects.create(post=fixture_post("nejat-en-recent.rss"), target=target)
    adapter = get_adapter(target)
    message = adapter.render(delivery)

    with CaptureQueriesContext(connection) as queries:
        adapter.send(message, delivery)

    writes = [q["sql"] for q in queries.captured_queries if "syndicator_emailrecipientresult" in q["sql"]]
    inserts = [sql for sql in writes if sql.startswith("INSERT")]
    # One write-ahead per message (each carrying the answers held since the last), one at the end.
    assert len(inserts) == len(addresses) + 1, len(inserts)
    assert not any(sql.startswith(("UPDATE", "SELECT")) and "FOR UPDATE" in sql for sql in writes)
    assert set(results(delivery).values()) == {"accepted"}


SEND_IN_A_CHILD = """
import os, django
django.setup()
from syndicator.models import Delivery
from syndicator.targets import get_adapter
delivery = Delivery.objects.get(pk=int(os.environ["DELIVERY"]))
adapter = get_adapter(delivery.target)
adapter.send(adapter.render(delivery), delivery)
"""


@pytest.mark.django_db(transaction=True)
def test_a_sender_killed_mid_batch_sends_nobody_twice_and_the_retry_sends_the_rest(smtp, monkeypatch):
    import os
    import signal
    import subprocess
    import sys
    import threading

    require_postgresql("a second process shares the test database")
    addresses = [f"reader{n:02d}@example.org" for n in range(12)]
    target = email_target(smtp, *addresses, write_ahead=5, timeout=30)
    delivery = Delivery.objects.create(post=fixture_post("nejat-en-recent.rss"), target=target)
    original, arrived, hold = smtp_emulator._Handler.handle_DATA, threading.Event(), threading.Event()

    async def handle(self, server, session, envelope):
        reply = await original(self, server, session, envelope)
        if len(smtp.messages) == 7:  # the second batch of five, two in: never answer the 7th
            arrived.set()
            while not hold.is_set():
                await __import__("asyncio").sleep(0.05)
        return reply

    monkeypatch.setattr(smtp_emulator._Handler, "handle_DATA", handle)
    env = {**os.environ, "DATABASE_URL": database_url(), "DELIVERY": str(delivery.pk)}
    child = subprocess.Popen([sys.executable, "-c", SEND_IN_A_CHILD], env=env)
    try:
        assert arrived.wait(60), "the child reached the 7th message"
        child.send_signal(signal.SIGKILL)  # kill -9: no finally, no flush
        child.wait(10)
    finally:
        hold.set()
        if child.poll() is None:
            child.kill()
    after_kill = results(delivery)
    # The first batch's answers were written with the second batch's write-ahead; the second
    # batch (two sent, three not) is all "unknown": none of it may be sent again automatically.
    assert sorted(after_kill.items()) == [(a, "accepted") for a in addresses[:5]] + [
        (a, "unknown") for a in addresses[5:10]
    ]

    Delivery.objects.filter(pk=delivery.pk).update(attempts=2)  # an automatic retry, not an admin's
    delivery.refresh_from_db()
    adapter = get_adapter(target)
    with pytest.raises(OutcomeUnknown):  # the five in doubt wait for an admin
        adapter.send(adapter.render(delivery), delivery)

    sent = [m.rcpt for m in smtp.messages]
    assert len(sent) == len(set(sent)), "nobody got two"
    assert sorted(sent) == addresses[:7] + addresses[10:], "the rest were sent"
    assert results(delivery) == {**after_kill, **{a: "accepted" for a in addresses[10:]}}


def test_a_lost_send_with_subscribers_never_tried_is_resumed_for_them_and_only_them(smtp):
    from datetime import timedelta

    from syndicator.recovery import settle_lost_sends

    addresses = [f"reader{n}@example.org" for n in range(4)]
    target = email_target(smtp, *addresses)
    now = timezone.now()
    lost, whole = (
        Delivery.objects.create(
            post=fixture_post("nejat-en-recent.rss", n), target=target, status="sending", attempts=1,
            lease_until=now - timedelta(seconds=1),
        )
        for n in range(2)
    )  # fmt: skip
    for delivery in (lost, whole):
        DeliveryAttempt.objects.create(delivery=delivery, number=1, started_at=now - timedelta(minutes=1))
    subscribers = list(target.subscribers.order_by("pk"))
    for subscriber, status in zip(subscribers, ("accepted", "unknown"), strict=False):
        EmailRecipientResult.objects.create(delivery=lost, subscriber=subscriber, status=status)
    for subscriber in subscribers:  # every subscriber answered or in doubt: nothing left to send
        EmailRecipientResult.objects.create(delivery=whole, subscriber=subscriber, status="unknown")

    settle_lost_sends(now)

    lost.refresh_from_db()
    whole.refresh_from_db()
    assert (lost.status, whole.status) == ("retrying", "uncertain")
    assert "never sent again automatically" in lost.last_error
    assert attempt(lost).outcome == "unknown", "the one in doubt waits for an admin"
    assert sorted(m.rcpt for m in smtp.messages) == addresses[2:], "only the two never tried"
    assert results(lost) == {addresses[0]: "accepted", addresses[1]: "unknown"} | {
        a: "accepted" for a in addresses[2:]
    }
