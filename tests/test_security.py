"""Security: secrets never show anywhere, admin templates run in a sandbox, unsubscribe links are
signed, and only http(s) feeds are fetched.

Private addresses (SSRF) and hostile feed input have their own suite: tests/bad_input/.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import time
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core import signing
from django.core.management import call_command
from django.test import Client
from django.urls import NoReverseMatch, Resolver404, resolve

from syndicator import mailing
from syndicator.delivery import attempt_delivery
from syndicator.errors import FeedFetchError
from syndicator.feeds import fetch
from syndicator.models import (
    Delivery,
    DeliveryAttempt,
    EmailRecipientResult,
    Feed,
    Post,
    Subscriber,
    Target,
)
from tests.emulators import harness_class, network_kinds

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(120)]

# Every logger at DEBUG, those the settings quieten included: a debug log must not leak either.
LOGGERS = ("", "httpx", "httpcore", "urllib3", "requests_oauthlib", "oauthlib", "tweepy", "syndicator")
_numbers = itertools.count(1)


def new_post(feed: Feed) -> Post:
    n = next(_numbers)
    return Post.objects.create(
        feed=feed,
        guid=f"https://news.example/?p={n}",
        url=f"https://news.example/posts/{n}",
        title=f"Secret-free post {n}",
        summary="Nothing to hide here.",
        content="<p>Nothing to hide here.</p>",
        language="en",
    )


def attempt(post: Post, target: Target, corpus: list[str]) -> None:
    """One delivery attempt; the target unpaused first (a failure may pause it: we want them all)."""
    target.refresh_from_db()
    corpus.append(target.paused_reason)
    Target.objects.filter(pk=target.pk).update(paused_at=None, paused_reason="")
    attempt_delivery(Delivery.objects.create(post=post, target=target).pk)


def command(corpus: list[str], *args: str) -> None:
    """Run a CLI command in-process, keeping what it printed and any error it raised."""
    out, err = StringIO(), StringIO()
    try:
        call_command(*args, stdout=out, stderr=err)
    except Exception as exc:  # a failing `targets check` is part of what is searched
        corpus.append(f"{type(exc).__name__}: {exc}")
    corpus += [out.getvalue(), err.getvalue()]


def every_delivery(harnesses: list, corpus: list[str]) -> None:
    """Each network's target: a success, then every failure its emulator can stage, then checks."""
    feed = Feed.objects.create(url="https://news.example/feed/")
    for harness in harnesses:
        target = harness.make_target(f"{harness.kind}-secrets")
        attempt(new_post(feed), target, corpus)
        for mode in harness.expected:  # bad token, 5xx, timeouts, rate limits, refusals…
            harness.inject(mode)
            attempt(new_post(feed), target, corpus)
        Target.objects.filter(pk=target.pk).update(paused_at=None)
        command(corpus, "targets", "check", target.name)
        harness.inject("bad_token")
        command(corpus, "targets", "check", target.name)


def stored_text() -> list[str]:
    """Everything the database keeps that an admin or a script can read back."""
    rows = [
        *DeliveryAttempt.objects.values_list("message", "error_class"),
        *Delivery.objects.values_list("last_error", "rendered_text", "external_id", "external_url"),
        *Target.objects.values_list("paused_reason", "settings", "secret_env"),
        *EmailRecipientResult.objects.values_list("smtp_reply", "message_id"),
    ]
    return [json.dumps(row, default=str) for row in rows]


def web_pages() -> list[str]:
    """The admin's delivery and target lists and every detail page, as a superuser sees them; and
    the JSON API and /metrics where they are installed."""
    user = get_user_model().objects.create_superuser("root", "root@example.org", "a long password 1")
    client = Client()
    client.force_login(user)
    paths = ["/admin/syndicator/delivery/", "/admin/syndicator/target/", "/admin/syndicator/post/"]
    paths += [
        f"/admin/syndicator/delivery/{pk}/change/" for pk in Delivery.objects.values_list("pk", flat=True)
    ]
    paths += [f"/admin/syndicator/target/{pk}/change/" for pk in Target.objects.values_list("pk", flat=True)]
    api = ["/api/deliveries", "/api/health", "/metrics"]
    api += [f"/api/deliveries/{pk}" for pk in Delivery.objects.values_list("pk", flat=True)]
    pages = []
    for path in paths + [path for path in api if routed(path)]:
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.status_code)
        pages.append(answer.content.decode())
    return pages


def routed(path: str) -> bool:
    try:
        resolve(path.split("?")[0])
    except (Resolver404, NoReverseMatch):
        return False
    return True


class Collector(logging.Handler):
    """Every record a logger sees, formatted (exception included), before any other handler."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def log_lines(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """Every logger at DEBUG, each with a collector of its own: a record is seen as it is made,
    not after the console handler's redaction filter got to it."""
    collector = Collector()
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
        logging.getLogger(name).addHandler(collector)
    yield collector.lines
    for name in LOGGERS:
        logging.getLogger(name).removeHandler(collector)


@pytest.fixture
def harnesses() -> Iterator[list]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(harness_class(kind)()) for kind in network_kinds()]


def test_no_secret_appears_in_logs_the_delivery_log_the_cli_the_admin_or_the_api(
    harnesses: list, log_lines: list[str], capfd: pytest.CaptureFixture[str]
):
    corpus: list[str] = []

    every_delivery(harnesses, corpus)
    command(corpus, "log", "--json", "--limit", "0")
    command(corpus, "targets", "list", "--json")
    command(corpus, "targets", "list")
    corpus += stored_text() + web_pages()

    corpus += log_lines + list(capfd.readouterr())
    assert Delivery.objects.filter(status=Delivery.Status.SENT).count() >= len(harnesses)
    assert DeliveryAttempt.objects.exclude(error_class="").count() >= 20, "the failures happened"
    assert any("HTTP Request: POST" in line for line in log_lines), "httpx logged its requests"
    everything = "\n".join(corpus)
    issued = [secret for harness in harnesses for secret in harness.issued_secrets()]
    assert issued, "the session tokens handed out are searched for too"
    configured = [secret for harness in harnesses for secret in harness.secrets()]
    assert all(configured), "every harness names its secrets"
    leaks = {secret for secret in (*configured, *issued) if secret in everything}
    assert not leaks, [line[:300] for line in corpus if any(s in line for s in leaks)][:5]


# --- templates admins edit run in Jinja2's sandbox -------------------------------------------------

PWNED = Path("/tmp/syndicator-sandbox-escaped")
SANDBOX_ESCAPES = {
    "mro": ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "unsafe"),
    "globals": ("{{ title.__init__.__globals__ }}", "unsafe"),
    "os.system": (
        "{{ cycler.__init__.__globals__.os.system('touch /tmp/syndicator-sandbox-escaped') }}",
        "unsafe",
    ),
    "format string": ("{{ '{0.__class__.__mro__}'.format(title) }}", "unsafe"),
    # Templates get plain values, never the Post: there is no post to climb from.
    "the post object": ("{{ post.__init__.__globals__ }}", "of 'StrictUndefined' object is unsafe"),
    "range bomb": ("{% for i in range(10**9) %}{% endfor %}", "MAX_RANGE"),
    # Bounded by syndicator/sandbox.py: Jinja2's own sandbox would let these take all memory or CPU.
    "string bomb": ("{{ title * 10**10 }}", "a repetition of"),
    "power bomb": ("{{ 10 ** (10 ** 10) }}", "a power's bit count of"),
    "padding bomb": ('{{ "x"|center(300000000) }}', "a centred width of 300,000,000"),
}


@pytest.mark.parametrize(("template", "says"), SANDBOX_ESCAPES.values(), ids=SANDBOX_ESCAPES.keys())
def test_a_template_reaching_outside_the_sandbox_fails_the_delivery_clearly_and_runs_nothing(template, says):
    PWNED.unlink(missing_ok=True)
    target = Target.objects.create(
        kind="outbox",
        name="sandboxed",
        settings={"format": "telegram"},
        template_overrides={"telegram.html.j2": template},
    )
    delivery = Delivery.objects.create(
        post=new_post(Feed.objects.create(url="https://news.example/f")), target=target
    )

    attempt_delivery(delivery.pk)

    delivery.refresh_from_db()
    (logged,) = DeliveryAttempt.objects.filter(delivery=delivery)
    assert (delivery.status, logged.error_class) == (Delivery.Status.FAILED, "PermanentError")
    assert "telegram.html.j2 (this target's override)" in logged.message and says in logged.message
    assert not PWNED.exists()


# --- one-click unsubscribe (the rest is in tests/test_target_email.py) ------------------------------
# Signed and naming one subscriber, so it cannot unsubscribe anyone else: test_a_token_cannot_
# unsubscribe_anyone_else. Expiring: test_an_expired_token_is_refused_with_a_clear_page.


@pytest.fixture
def subscriber() -> Subscriber:
    target = Target.objects.create(kind="email", name="list", settings={})
    return Subscriber.objects.create(target=target, email="ann@example.org")


def test_a_tampered_unsubscribe_token_is_refused(subscriber: Subscriber):
    token = mailing.unsubscribe_token(subscriber)
    value, _, signature = token.rpartition(":")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")

    for bad in (f"{value}:{flipped}", value, f"{value}:", token[::-1]):
        assert Client().post(f"/unsubscribe/{bad}").status_code == 400, bad
    assert Subscriber.objects.active().count() == 1


def test_a_token_signed_for_something_else_is_refused(subscriber: Subscriber):
    # Same SECRET_KEY, another purpose (no salt): the salt keeps signatures from being reused.
    other = signing.TimestampSigner().sign(f"{subscriber.pk}.{mailing._email_digest(subscriber.email)}")

    assert Client().post(f"/unsubscribe/{other}").status_code == 400
    assert Subscriber.objects.active().count() == 1


def signed_ago(subscriber: Subscriber, seconds: float, monkeypatch: pytest.MonkeyPatch) -> str:
    signed_at = time.time() - seconds
    with monkeypatch.context() as patch:
        patch.setattr(time, "time", lambda: signed_at)
        return mailing.unsubscribe_token(subscriber)


def test_a_token_expires_after_the_configured_age(subscriber: Subscriber, settings, monkeypatch):
    settings.SYNDICATOR_UNSUBSCRIBE_MAX_AGE = 3600
    old, recent = signed_ago(subscriber, 3700, monkeypatch), signed_ago(subscriber, 1800, monkeypatch)

    assert Client().post(f"/unsubscribe/{old}").status_code == 400
    assert Subscriber.objects.active().count() == 1
    assert Client().post(f"/unsubscribe/{recent}").status_code == 200
    assert Subscriber.objects.active().count() == 0


# --- feeds: http(s) only ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.org/feed.rss", "gopher://example.org/1/"]
)
def test_feed_urls_other_than_http_are_refused_when_added_and_when_fetched(url: str):
    with pytest.raises(Exception, match="bad feed URL"):
        call_command("feeds", "add", url, stdout=StringIO(), stderr=StringIO())
    with pytest.raises(FeedFetchError, match="unsupported URL scheme"):
        fetch(url)
    assert not Feed.objects.exists()
