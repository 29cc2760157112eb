"""Email digests (syndicator/digest.py): one email per subscriber per period, with every post of it.

A real SMTP server (tests/emulators/email.py), the real claim/send/record path, an injected clock:
a day of posts takes no day.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, transaction

from syndicator import clock, digest, dispatch
from syndicator import delivery as deliveries
from syndicator.models import Delivery, Digest, EmailRecipientResult, Post, Target
from syndicator.targets import get_adapter
from syndicator.targets.config import SettingError
from tests.emulators.email import SmtpServer
from tests.helpers import Tags, demo_post

pytestmark = pytest.mark.django_db

PUBLIC_URL = "https://news.example.org"
READERS = ("ana@example.org", "bob@example.org", "cyrus@example.org")
BERLIN_DAY = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)  # 07:00 in Berlin (CET, UTC+1)


@pytest.fixture(autouse=True)
def public_url(settings):
    settings.SYNDICATOR_PUBLIC_URL = PUBLIC_URL


@pytest.fixture
def smtp():
    with SmtpServer() as server:
        yield server


def digest_target(server: SmtpServer, *addresses: str, created: datetime, **settings) -> Target:
    target = Target.objects.create(
        kind="email",
        name=settings.pop("name", "morning"),
        settings={
            "host": server.host,
            "port": server.port,
            "security": "none",
            "from_address": "news@nejat.example",
            "from_name": "Nejat News",
            "timeout": 2,
            "mode": "digest",
            "digest_at": "07:00",
            "timezone": "Europe/Berlin",
            **settings,
        },
    )
    Target.objects.filter(pk=target.pk).update(created_at=created)
    target.refresh_from_db()
    for address in addresses:
        target.subscribers.create(email=address)
    return target


def seen(filename: str, index: int, at: datetime, **changes) -> Post:
    """A demo post as a poll stores it, first seen at ``at`` (published an hour before)."""
    return demo_post(filename, index, first_seen_at=at, published_at=at - timedelta(hours=1), **changes)


def tick(now: datetime) -> dict[str, int]:
    """One sweeper round at ``now``."""
    with clock.injected(lambda: now):
        return deliveries.sweep(now=now)


def send_digest(now: datetime) -> Delivery:
    """The one digest delivery the sweeper made, sent through the delivery path at ``now``."""
    delivery = Delivery.objects.get(digest__isnull=False, status="queued")
    with clock.injected(lambda: now):
        attempt = deliveries.attempt_delivery(delivery.pk)
    assert attempt is not None
    delivery.refresh_from_db()
    return delivery


def test_a_day_of_posts_is_one_email_per_subscriber_with_all_of_them_in_order(smtp):
    target = digest_target(smtp, *READERS, created=BERLIN_DAY - timedelta(days=1))
    day = [
        seen("nejat-en-recent.rss", n, BERLIN_DAY + timedelta(hours=h)) for n, h in ((2, 9), (0, 2), (1, 5))
    ]
    # Arriving, the posts get no delivery of their own on a digest target.
    assert dispatch.create_auto_deliveries(day) == []
    assert digest.upcoming(target, day[0]) == "in the digest of 2026-12-03, sent 2026-12-03 07:00 CET"

    assert tick(BERLIN_DAY + timedelta(hours=23, minutes=59))["digests"] == 0, "06:59 in Berlin: not yet"
    # 07:00:20: not yet either, while a poll that stored a post at 06:59:59 may still commit.
    assert tick(datetime(2026, 12, 3, 6, 0, 20, tzinfo=UTC))["digests"] == 0
    at_seven = datetime(2026, 12, 3, 6, 0, 31, tzinfo=UTC)
    assert tick(at_seven)["digests"] == 1
    delivery = send_digest(at_seven)

    assert delivery.status == "sent", delivery.last_error
    in_order = sorted(day, key=lambda p: p.published_at)
    assert [m.rcpt for m in smtp.messages] == list(READERS), "one email each"
    for received in smtp.messages:
        text = received.text
        positions = [text.index(post.title) for post in in_order]
        assert positions == sorted(positions), "the day's posts, oldest first"
        for post in in_order:
            assert post.url in text and post.url in received.html
        assert received.message["Subject"] == "Nejat News: 3 posts, 2026-12-03"
        assert received.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert f"<{PUBLIC_URL}/unsubscribe/" in received.message["List-Unsubscribe"]
        assert f"Unsubscribe: {PUBLIC_URL}/unsubscribe/" in text
    assert len({m.message["Message-ID"] for m in smtp.messages}) == 3
    assert set(EmailRecipientResult.objects.filter(delivery=delivery).values_list("status", flat=True)) == {
        "accepted"
    }
    made = Digest.objects.get(target=target, period="2026-12-03")
    assert [entry.post for entry in made.entries.all()] == in_order
    assert delivery.post == in_order[0] and all(p.title in delivery.rendered_text for p in day)

    # Later ticks of the same period make nothing, and send nothing again.
    assert tick(at_seven + timedelta(minutes=5))["digests"] == 0
    assert tick(at_seven + timedelta(hours=20))["digests"] == 0
    assert Delivery.objects.filter(target=target).count() == 1 and len(smtp.messages) == 3


def test_the_database_refuses_a_second_digest_for_one_period(smtp):
    target = digest_target(smtp, *READERS, created=BERLIN_DAY - timedelta(days=1))
    seen("nejat-en-recent.rss", 0, BERLIN_DAY + timedelta(hours=1))
    plan = digest.schedule(target)
    instant = plan.latest(BERLIN_DAY + timedelta(days=1, minutes=1))
    first = digest.make(target, plan, instant, plan.period(instant))
    assert first is not None
    # A second sweeper that decided at the same moment, before it could see the first one's row.
    assert digest.make(target, plan, instant, plan.period(instant)) is None
    with pytest.raises(IntegrityError), transaction.atomic():
        Digest.objects.create(target=target, period="2026-12-03", window_start=instant, window_end=instant)
    assert Delivery.objects.filter(target=target).count() == 1


def test_the_next_digest_carries_only_what_came_since_the_last(smtp):
    digest_target(smtp, READERS[0], created=BERLIN_DAY - timedelta(days=1))
    first = seen("nejat-en-recent.rss", 0, BERLIN_DAY + timedelta(hours=3))
    tick(BERLIN_DAY + timedelta(days=1, seconds=31))
    send_digest(BERLIN_DAY + timedelta(days=1, seconds=32))
    second = seen("nejat-en-recent.rss", 1, BERLIN_DAY + timedelta(days=1, hours=2))
    tick(BERLIN_DAY + timedelta(days=2, seconds=31))
    send_digest(BERLIN_DAY + timedelta(days=2, seconds=32))

    one, two = (m.text for m in smtp.messages)
    assert first.title in one and second.title not in one
    assert second.title in two and first.title not in two


def test_a_weekly_digest_goes_on_its_day_at_its_local_time_across_the_dst_change(smtp):
    # Berlin leaves summer time on Sunday 25 October 2026: 07:00 on Monday 26 is 06:00 UTC, not 05:00.
    created = datetime(2026, 10, 19, 6, 0, tzinfo=UTC)  # Monday 19 October, 08:00 CEST
    target = digest_target(smtp, *READERS, created=created, digest_day="mon")
    week = [seen("nejat-en-recent.rss", n, created + timedelta(days=d)) for n, d in ((0, 1), (1, 5))]

    assert tick(datetime(2026, 10, 25, 6, 1, tzinfo=UTC))["digests"] == 0, "Sunday: not its day"
    assert tick(datetime(2026, 10, 26, 5, 30, tzinfo=UTC))["digests"] == 0, "06:30 CET: not yet"
    assert tick(datetime(2026, 10, 26, 6, 0, 31, tzinfo=UTC))["digests"] == 1
    made = Digest.objects.get(target=target)
    assert made.period == "2026-W44" and made.window_end == datetime(2026, 10, 26, 6, 0, tzinfo=UTC)
    send_digest(datetime(2026, 10, 26, 6, 0, 32, tzinfo=UTC))
    assert len(smtp.messages) == 3
    assert all(post.title in smtp.messages[0].text for post in week)
    assert smtp.messages[0].message["Subject"] == "Nejat News: 2 posts, week 2026-W44"
    assert tick(datetime(2026, 10, 27, 6, 0, 31, tzinfo=UTC))["digests"] == 0, "Tuesday: the week's is out"


def test_the_targets_filters_and_unpublished_and_stale_posts_decide_what_a_digest_carries(smtp):
    target = digest_target(smtp, READERS[0], created=BERLIN_DAY - timedelta(days=1), max_age="48h")
    target.languages = ["en"]
    target.save()
    kept = seen("nejat-en-recent.rss", 0, BERLIN_DAY + timedelta(hours=1))
    arabic = seen("nejat-ar.rss", 0, BERLIN_DAY + timedelta(hours=2))
    pulled = seen("nejat-en-recent.rss", 1, BERLIN_DAY + timedelta(hours=3), unpublished_at=BERLIN_DAY)
    old = demo_post(
        "nejat-en-recent.rss",
        2,
        first_seen_at=BERLIN_DAY + timedelta(hours=4),
        published_at=BERLIN_DAY - timedelta(days=30),
    )
    tick(BERLIN_DAY + timedelta(days=1, seconds=31))
    send_digest(BERLIN_DAY + timedelta(days=1, seconds=32))

    text = smtp.messages[0].text
    assert kept.title in text
    for left_out in (arabic, pulled, old):
        assert left_out.title not in text, left_out
    assert list(Digest.objects.get(target=target).posts.all()) == [kept]


def test_an_arabic_edition_digest_is_right_to_left(smtp):
    target = digest_target(smtp, READERS[0], created=BERLIN_DAY - timedelta(days=1), timezone="Asia/Dubai")
    target.languages = ["ar"]
    target.save()
    posts = [seen("nejat-ar.rss", n, BERLIN_DAY + timedelta(hours=n + 1)) for n in range(2)]
    tick(datetime(2026, 12, 3, 3, 0, 31, tzinfo=UTC))  # 07:00 in Dubai (UTC+4)
    send_digest(datetime(2026, 12, 3, 3, 0, 32, tzinfo=UTC))

    received = smtp.messages[0]
    html_tag = next(attrs for tag, attrs in Tags(received.html).found if tag == "html")
    assert html_tag == {"lang": "ar", "dir": "rtl"}
    assert {"lang": "ar", "dir": "rtl", "style": "text-align: right;"} in [
        attrs for tag, attrs in Tags(received.html).found if tag == "section"
    ]
    assert received.message["Content-Language"] == "ar"
    assert "إلغاء الاشتراك" in received.text, "the unsubscribe link in the edition's language"
    for post in posts:
        assert post.title in received.html and post.title in received.text


def test_a_period_without_posts_sends_nothing_and_says_so(smtp):
    target = digest_target(smtp, *READERS, created=BERLIN_DAY - timedelta(days=1))
    assert tick(BERLIN_DAY + timedelta(days=1, seconds=31))["digests"] == 0
    made = Digest.objects.get(target=target, period="2026-12-03")
    assert made.delivery is None and made.note.startswith("no posts since 2026-12-01 06:00 UTC")
    assert smtp.messages == [] and not Delivery.objects.filter(target=target).exists()
    assert tick(BERLIN_DAY + timedelta(days=1, minutes=2))["digests"] == 0
    assert Digest.objects.filter(target=target).count() == 1


def test_a_per_post_email_target_is_unchanged(smtp):
    target = digest_target(smtp, *READERS, created=BERLIN_DAY - timedelta(days=1), mode="per_post")
    post = seen("nejat-en-recent.rss", 0, BERLIN_DAY + timedelta(hours=1))
    assert [d.target for d in dispatch.create_auto_deliveries([post])] == [target]
    assert tick(BERLIN_DAY + timedelta(days=1, seconds=31))["digests"] == 0
    assert not Digest.objects.exists() and digest.upcoming(target, post) == ""


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("digest_at=25:00", "digest_at='25:00': a time of day, HH:MM on a 24-hour clock"),
        ("digest_at=7am", "digest_at='7am': a time of day"),
        ("digest_day=monday", "digest_day='monday': one of mon, tue, wed, thu, fri, sat, sun"),
        ("mode=weekly", "mode='weekly': one of per_post, digest"),
    ],
)
def test_bad_digest_settings_are_refused_with_a_clear_error(pair, message):
    spec = get_adapter(Target(kind="email", name="x")).spec(pair.partition("=")[0])
    with pytest.raises(SettingError, match=message):
        spec.parse(pair.partition("=")[2])
    with pytest.raises(CommandError, match=message):
        call_command(
            "targets", "add", "email", "--name", "list",
            "--set", "host=smtp.example.org", "from_address=news@example.org", pair, stdout=StringIO(),
        )  # fmt: skip
    assert not Target.objects.exists()


def test_good_digest_settings_are_stored_typed():
    call_command(
        "targets", "add", "email", "--name", "list",
        "--set", "host=smtp.example.org", "from_address=news@example.org", "mode=digest",
        "digest_at=06:30", "digest_day=fri", "timezone=Asia/Tehran", stdout=StringIO(),
    )  # fmt: skip
    target = Target.objects.get(name="list")
    plan = digest.schedule(target)
    assert plan is not None and plan.at == (6, 30) and plan.weekday == 4 and str(plan.zone) == "Asia/Tehran"


def test_the_post_page_says_which_digest_will_carry_the_post_and_then_which_did(smtp, admin_client):
    from django.urls import reverse

    target = digest_target(smtp, READERS[0], created=BERLIN_DAY - timedelta(days=1))
    post = seen("nejat-en-recent.rss", 0, BERLIN_DAY + timedelta(hours=2))
    page = reverse("admin:syndicator_post_change", args=[post.pk])

    before = admin_client.get(page).content.decode()
    assert "in the digest of 2026-12-03, sent 2026-12-03 07:00 CET" in before
    tick(BERLIN_DAY + timedelta(days=1, seconds=31))
    delivery = send_digest(BERLIN_DAY + timedelta(days=1, seconds=32))

    after = admin_client.get(page).content.decode()
    assert f"<strong>{target.name}</strong> (email digest): in the digest of 2026-12-03 — " in after
    assert f"delivery #{delivery.pk}</a>, sent" in after


def test_the_admin_form_refuses_a_bad_digest_time_and_stores_a_good_one(admin_role_client):
    from django.urls import reverse

    target = Target.objects.create(
        name="letters", kind="email", settings={"host": "mx.example.org", "from_address": "a@example.org"}
    )
    url = reverse("admin:syndicator_target_change", args=[target.pk])
    form = {
        "name": target.name,
        "enabled": "on",
        "secret_env": "",
        "languages": "",
        "categories": "",
        "setting__host": "mx.example.org",
        "setting__from_address": "a@example.org",
        "setting__mode": "digest",
    }
    page = admin_role_client.get(url).content.decode()
    for name in ("mode", "digest_at", "digest_day"):
        assert f'name="setting__{name}"' in page

    response = admin_role_client.post(url, form | {"setting__digest_at": "7.30"})
    assert response.status_code == 200
    assert "a time of day, HH:MM on a 24-hour clock" in str(
        response.context["adminform"].form.errors["setting__digest_at"]
    )
    response = admin_role_client.post(
        url, form | {"setting__digest_at": "07:30", "setting__digest_day": "sun"}
    )
    assert response.status_code == 302
    target.refresh_from_db()
    assert (target.settings["mode"], target.settings["digest_at"], target.settings["digest_day"]) == (
        "digest",
        "07:30",
        "sun",
    )


def test_the_delivery_log_shows_a_digest_and_the_posts_it_carried(smtp, admin_client):
    from django.urls import reverse

    digest_target(smtp, READERS[0], created=BERLIN_DAY - timedelta(days=1))
    posts = [seen("nejat-en-recent.rss", n, BERLIN_DAY + timedelta(hours=n + 1)) for n in range(2)]
    tick(BERLIN_DAY + timedelta(days=1, seconds=31))
    delivery = send_digest(BERLIN_DAY + timedelta(days=1, seconds=32))

    listing = admin_client.get(reverse("admin:syndicator_delivery_changelist")).content.decode()
    assert "<strong>digest 2026-12-03</strong>:" in listing
    detail = admin_client.get(
        reverse("admin:syndicator_delivery_change", args=[delivery.pk])
    ).content.decode()
    assert "email digest 2026-12-03, 2 posts:" in detail
    for post in posts:
        assert reverse("admin:syndicator_post_change", args=[post.pk]) in detail
    out = StringIO()
    call_command("log", stdout=out)
    assert "digest 2026-12-03:" in out.getvalue()
