"""The start page (issue 14): counts per target linking into the log, latest posts, attention, liveness."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from syndicator import desk
from syndicator.admin.filters import PRESETS
from syndicator.models import Delivery, Feed, Heartbeat, Post, Target
from tests.accounts import make_user
from tests.conftest import wait_for
from tests.helpers import require_postgresql

pytestmark = pytest.mark.django_db

INDEX = "admin:index"


@pytest.fixture
def feed() -> Feed:
    return Feed.objects.create(url="https://news.example/feed", name="أخبار", language="ar")


def deliver(feed: Feed, target: Target, status: str, *, days_ago: float = 0, **fields) -> Delivery:
    n = Post.objects.count()
    post = Post.objects.create(feed=feed, guid=str(n), url=f"https://news.example/{n}", title=f"خبر رقم {n}")
    created = timezone.now() - timedelta(days=days_ago)
    return Delivery.objects.create(post=post, target=target, status=status, created_at=created, **fields)


def cell(html: str, target: str, period: str, status: str) -> tuple[int, str]:
    row = html.split(f'<tr data-target="{target}">')[1].split("</tr>")[0]
    found = re.search(
        rf'data-period="{period}" data-status="{status}"[^>]*><a href="([^"]+)"[^>]*>(\d+)</a>', row
    )
    return int(found.group(2)), found.group(1).replace("&amp;", "&")


def test_the_counts_per_target_match_the_database_and_link_to_exactly_those(admin_role_client, feed):
    x = Target.objects.create(name="x", kind="outbox", settings={"format": "twitter"})
    tg = Target.objects.create(name="tg", kind="outbox")
    for status, days in [
        ("sent", 0),
        ("sent", 0),
        ("failed", 0),
        ("sent", 3),
        ("uncertain", 5),
        ("sent", 20),
    ]:
        deliver(feed, x, status, days_ago=days)
    deliver(feed, tg, "failed", days_ago=2)

    html = admin_role_client.get(reverse(INDEX)).content.decode()
    expected = {
        ("x", "today", "sent"): 2,
        ("x", "today", "failed"): 1,
        ("x", "today", "uncertain"): 0,
        ("x", "7d", "sent"): 3,
        ("x", "7d", "uncertain"): 1,
        ("tg", "today", "failed"): 0,
        ("tg", "7d", "failed"): 1,
    }
    for (target, period, status), count in expected.items():
        shown, url = cell(html, target, period, status)
        assert shown == count, (target, period, status)
        listed = admin_role_client.get(url).context["cl"].result_list
        assert len(listed) == count and {d.target.name for d in listed} <= {target}, url
        assert {d.status for d in listed} <= {status}


def test_the_periods_are_the_delivery_logs_presets():
    assert {period: PRESETS[period][1] for period in desk.PERIOD_DAYS} == desk.PERIOD_DAYS


def test_waiting_deliveries_say_why_they_wait(admin_role_client, feed):
    paused = Target.objects.create(
        name="fb", kind="outbox", paused_at=timezone.now(), paused_reason="token expired"
    )
    busy = Target.objects.create(name="toot", kind="outbox")
    deliver(feed, paused, "queued")
    deliver(
        feed, busy, "retrying", next_attempt_at=timezone.now() + timedelta(minutes=5), last_error="HTTP 503"
    )
    deliver(feed, busy, "queued")
    html = admin_role_client.get(reverse(INDEX)).content.decode()
    fb_row = html.split('<tr data-target="fb">')[1].split("</tr>")[0]
    assert ">1</a>" in fb_row and "the target is paused: token expired" in fb_row
    toot_row = html.split('<tr data-target="toot">')[1].split("</tr>")[0]
    assert "1 retrying after an error" in toot_row and "HTTP 503" in toot_row and "1 queued" in toot_row
    url = re.search(r'<a href="([^"]+)" class="count-waiting', toot_row).group(1).replace("&amp;", "&")
    assert len(admin_role_client.get(url).context["cl"].result_list) == 2


def test_a_delivery_waiting_for_weeks_still_counts_as_waiting(admin_role_client, feed):
    stuck = Target.objects.create(name="stuck", kind="outbox", paused_at=timezone.now())
    deliver(feed, stuck, "queued", days_ago=40)  # older than the counts' 7-day window
    deliver(feed, stuck, "sent", days_ago=40)
    html = admin_role_client.get(reverse(INDEX)).content.decode()
    row = html.split('<tr data-target="stuck">')[1].split("</tr>")[0]
    assert re.search(r'class="count-waiting">1</a>', row), row
    assert cell(html, "stuck", "7d", "sent")[0] == 0


def test_the_counts_read_the_past_week_and_what_waits_not_the_whole_log(feed):
    """A year's log is ~160,000 deliveries (bench/history.py): counting every one of them on each
    start page took most of its time. The counting query must bound the deliveries it reads by an
    index: created_at (the week) or status (what waits)."""
    require_postgresql("the query plan is PostgreSQL's")
    target = Target.objects.create(name="x", kind="outbox")
    deliver(feed, target, "sent", days_ago=30)
    with CaptureQueriesContext(connection) as captured:
        rows = desk.target_rows()
    assert [r.target.name for r in rows] == ["x"]
    counting = [q["sql"] for q in captured.captured_queries if "GROUP BY" in q["sql"]]
    assert len(counting) == 1, captured.captured_queries
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a tiny table is cheaper to scan; ask what else
        cursor.execute(f"EXPLAIN {counting[0]}")
        plan = "\n".join(line for (line,) in cursor.fetchall())
    conditions = [line for line in plan.splitlines() if "Index Cond" in line]
    assert any("created_at" in line for line in conditions), plan
    assert any("status" in line for line in conditions), plan


def test_feeds_and_targets_that_need_attention_show_the_reason_and_the_action(admin_role_client, feed):
    Feed.objects.filter(pk=feed.pk).update(consecutive_failures=4, last_status="error", last_error="HTTP 404")
    Target.objects.create(name="fb", kind="outbox", paused_at=timezone.now(), paused_reason="token expired")
    Target.objects.create(name="fine", kind="outbox")
    html = admin_role_client.get(reverse(INDEX)).content.decode()
    section = html.split('id="desk-attention"')[1].split("</section>")[0]
    assert 'data-what="feed" data-name="أخبار" data-state="failing"' in section and "HTTP 404" in section
    assert "then Poll now" in section and reverse("admin:syndicator_feed_change", args=[feed.pk]) in section
    assert 'data-what="target" data-name="fb" data-state="paused"' in section and "then Resume" in section
    assert 'data-name="fine"' not in section


def test_latest_posts_show_each_networks_status_right_to_left_titles_by_direction(editor_client, feed):
    x = Target.objects.create(name="x", kind="outbox")
    tg = Target.objects.create(name="tg", kind="outbox")
    d = deliver(feed, x, "sent")
    Delivery.objects.create(post=d.post, target=tg, status="failed")
    html = editor_client.get(reverse(INDEX)).content.decode()
    post = html.split(f'data-post="{d.post.pk}"')[1].split("</li>")[0]
    assert 'dir="auto">خبر رقم 0</a>' in post
    assert 'data-target="x" data-status="sent"' in post and 'data-target="tg" data-status="failed"' in post
    assert "Repost" in post


def test_only_admins_see_the_oldest_waiting_delivery_and_the_heartbeat(admin_role_client, feed):
    t = Target.objects.create(name="x", kind="outbox")
    old = deliver(feed, t, "queued", days_ago=1)
    deliver(feed, t, "queued")
    html = admin_role_client.get(reverse(INDEX)).content.decode()
    assert "no worker has reported yet" in html and 'data-ok="false"' in html
    assert f"#{old.pk}</a>" in html.split('id="oldest-waiting"')[1].split("</p>")[0]

    desk.record_heartbeat("syndicator@host", timezone.now() - timedelta(minutes=10))
    assert "no heartbeat for 10 min" in admin_role_client.get(reverse(INDEX)).content.decode()
    desk.record_heartbeat("syndicator@host")
    html = admin_role_client.get(reverse(INDEX)).content.decode()
    assert 'data-ok="true"' in html and "running (syndicator@host" in html

    editor = Client()
    editor.force_login(make_user("edna", "editor"))
    html = editor.get(reverse(INDEX)).content.decode()
    assert 'id="desk-counts"' in html and 'id="desk-liveness"' not in html


def test_the_start_page_is_the_first_page_after_login_and_has_no_view_site_loop(client):
    make_user("edna", "editor")
    from tests.accounts import PASSWORD

    response = client.post(
        reverse("admin:login") + "?next=/admin/", {"username": "edna", "password": PASSWORD}, follow=True
    )
    html = response.content.decode()
    assert response.request["PATH_INFO"] == "/admin/" and "Today at the desk" in html
    assert "View site" not in html and "Add post" not in html
    assert Client().get("/").headers["Location"] == "/admin/"


@pytest.mark.django_db(transaction=True)
def test_a_worker_records_its_heartbeat(celery_worker):
    from celeryproject import app
    from tasks.maintenance import heartbeat

    assert app.conf.beat_schedule["heartbeat"]["task"] == "tasks.maintenance.heartbeat"
    heartbeat.delay()
    beat = wait_for(lambda: Heartbeat.objects.filter(name="worker").first(), timeout=20)
    assert timezone.now() - beat.beat_at < timedelta(seconds=20) and beat.hostname


def test_the_queue_is_one_click_from_the_start_page(editor_client, admin_role_client):
    for client in (editor_client, admin_role_client):
        html = client.get(reverse(INDEX)).content.decode()
        links = re.findall(r'<nav class="desk-links".*?</nav>', html, re.S)[0]
        assert f'href="{reverse("admin:queue")}">Queue</a>' in links
        assert client.get(reverse("admin:queue")).status_code == 200
