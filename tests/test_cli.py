"""The command line as an admin uses it: feeds, targets, poll, log, repost, retry.

Most tests call the commands in-process with ``call_command``; a few run the real ``syndicator``
executable, on a fresh SQLite database of their own, to see what a user sees on a mistake.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from syndicator import delivery as deliveries
from syndicator import dispatch
from syndicator.models import Delivery, Feed, Post, Target
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db

SYNDICATOR = Path(sys.executable).with_name("syndicator")
NEW_POST_URL = "https://www.nejatngo.org/en/?p=90006"
# fmt: off
LOG_JSON_FIELDS = {
    "id", "post_id", "post_url", "post_title", "target", "target_kind", "status", "origin",
    "requested_by", "attempts", "text", "external_id", "external_url", "last_error",
    "created_at", "sent_at", "next_attempt_at",
}
# fmt: on


def run(command_line: str) -> str:
    """Run a command line (as typed after `syndicator`) in-process; return what it printed."""
    out = StringIO()
    call_command(*shlex.split(command_line), stdout=out, stderr=StringIO())
    return out.getvalue()


def json_lines(text: str) -> list[dict]:
    """Parse one JSON object per line."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def make_post(feed: Feed, n: int, **fields: object) -> Post:
    """A stored post of a feed, like one a poll records."""
    fields = {
        "guid": f"guid-{n}",
        "url": f"https://example.org/?p={n}",
        "title": f"Post number {n}",
        **fields,
    }
    return Post.objects.create(feed=feed, language=feed.language, published_at=timezone.now(), **fields)


@pytest.fixture
def feed(db) -> Feed:
    return Feed.objects.create(url="https://example.org/feed/", name="Example", language="en")


@pytest.fixture
def box(db) -> Target:
    return Target.objects.create(name="box", kind="outbox", settings={"format": "telegram"})


# --- feeds -------------------------------------------------------------------------------------
def test_feeds_add_prints_the_new_feed_id_and_stores_its_options():
    out = run("feeds add https://example.org/fa/feed/ --name Farsi --language fa --interval 60 --backfill 2")

    feed = Feed.objects.get()
    assert out.strip() == str(feed.pk)
    assert (feed.name, feed.language, feed.poll_interval, feed.backfill) == ("Farsi", "fa", 60, 2)
    assert feed.url == "https://example.org/fa/feed/"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("ftp://example.org/feed", "bad feed URL"),
        ("example.org/feed", "bad feed URL"),
        ("http:///feed", "bad feed URL"),
        ("https://", "bad feed URL"),
        ("https://example.org/other/ --interval 0", "bad --interval 0: at least 1 second"),
        ("https://example.org/feed/", "feed https://example.org/feed/ is already watched"),
    ],
)
def test_feeds_add_refuses_bad_urls_intervals_and_duplicates(feed, args, message):
    with pytest.raises(CommandError, match=message):
        run(f"feeds add {args}")
    assert list(Feed.objects.all()) == [feed]


def test_feeds_list_json_has_one_object_per_feed_with_its_poll_state(feed):
    Feed.objects.filter(pk=feed.pk).update(consecutive_failures=2, last_status="error", last_error="HTTP 500")
    second = Feed.objects.create(url="https://example.org/ar/feed/", language="ar", enabled=False)

    rows = json_lines(run("feeds list --json"))

    assert [r["id"] for r in rows] == [feed.pk, second.pk]
    first = rows[0]
    assert set(first) >= {"id", "name", "url", "language", "enabled", "status", "last_polled_at"}
    assert (first["status"], first["consecutive_failures"], first["last_error"]) == ("error", 2, "HTTP 500")
    assert first["last_polled_at"] is None and first["next_poll_at"]
    assert rows[1]["enabled"] is False
    assert feed.url in run("feeds list") and "HTTP 500" in run("feeds list")


def test_feeds_remove_deletes_the_feed_and_its_posts(feed):
    make_post(feed, 1)
    out = run(f"feeds remove {feed.pk}")
    assert f"removed feed {feed.pk} (Example) and its 1 post" in out
    assert not Feed.objects.exists() and not Post.objects.exists()


def test_feeds_remove_keeps_the_delivery_log_and_says_what_to_do(feed, box):
    Delivery.objects.create(post=make_post(feed, 1), target=box, status="sent")
    kept = r"has 1 delivery in the delivery log, which is kept: "
    with pytest.raises(CommandError, match=kept + r".*feeds disable"):
        run(f"feeds remove {feed.pk}")
    with pytest.raises(CommandError, match=kept + r".*targets pause box"):
        run("targets remove box")
    assert Delivery.objects.count() == 1 and Feed.objects.exists() and Target.objects.exists()


def test_no_path_deletes_the_delivery_log_by_cascade(feed, box):
    """Not the admin, not the CLI, not a shell: Delivery.post and .target are PROTECT."""
    from django.db.models import ProtectedError

    delivery = Delivery.objects.create(post=make_post(feed, 1), target=box, status="sent")
    for owner in (feed, delivery.post, box):
        with pytest.raises(ProtectedError):
            type(owner).objects.filter(pk=owner.pk).delete()
    assert Delivery.objects.filter(pk=delivery.pk).exists()


# --- targets -----------------------------------------------------------------------------------
def test_targets_add_outbox_stores_format_filters_and_typed_settings(feed):
    other = Feed.objects.create(url="https://example.org/ar/feed/")
    out = run(
        f"targets add outbox --name x-en --format twitter --feeds {feed.pk},{other.pk} --languages 'en, ar'"
        " --categories MEK,Iran --set fail=transient fail_next=2"
    )

    target = Target.objects.get(name="x-en")
    assert out.strip() == str(target.pk)
    assert target.kind == "outbox" and target.message_format == "twitter"
    assert target.settings == {"format": "twitter", "fail": "transient", "fail_next": 2}
    assert sorted(target.feeds.values_list("pk", flat=True)) == [feed.pk, other.pk]
    assert (target.languages, target.categories) == (["en", "ar"], ["MEK", "Iran"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("myspace --name m", "unknown target kind 'myspace'; available kinds: .*outbox"),
        ("telegram --name tg", "telegram targets need --set chat_id="),
        ("outbox --name new --feeds 999", "no feed with id 999"),
        ("outbox --name new --feeds one", "bad feed id"),
        ("outbox --name new --set chat_id=5", "unknown setting 'chat_id' for outbox targets"),
        ("outbox --name new --set fail=sometimes", "one of transient"),
        ("outbox --name new --set fail_next=many", "fail_next is a whole number"),
        ("outbox --name new --set fail_next", "use KEY=VALUE"),
        ("outbox --name box", "a target named 'box' exists already"),
    ],
)
def test_targets_add_refuses_unknown_kinds_feeds_settings_and_names_in_use(box, args, message):
    with pytest.raises(CommandError, match=message):
        run(f"targets add {args}")
    assert list(Target.objects.all()) == [box]


def test_commands_take_options_as_keywords_from_python_too(feed):
    call_command("targets", "add", "outbox", name="kw", feeds=str(feed.pk), set_values=["fail_next=1"])
    call_command("targets", "pause", "kw", reason="from Python")
    target = Target.objects.get(name="kw")
    assert (target.settings, target.paused_reason) == ({"fail_next": 1}, "from Python")


def test_targets_list_json_shows_filters_state_and_deliveries_by_status(feed, box):
    box.feeds.add(feed)
    deliveries.pause_target(box, "token expired")
    post = make_post(feed, 1)
    Delivery.objects.create(post=post, target=box, status="sent")
    Delivery.objects.create(post=post, target=box, status="failed", origin="manual")
    Delivery.objects.create(post=make_post(feed, 2), target=box, status="failed")

    (row,) = json_lines(run("targets list --json"))

    assert (row["name"], row["kind"], row["format"], row["enabled"]) == ("box", "outbox", "telegram", True)
    assert (row["paused"], row["paused_reason"], row["feeds"]) == (True, "token expired", [feed.pk])
    assert row["deliveries"] == {"sent": 1, "failed": 2}
    table = run("targets list")
    assert "paused (token expired)" in table and "failed 2" in table


def test_targets_pause_holds_deliveries_and_resume_sends_what_waited(feed, box, monkeypatch):
    waiting = Delivery.objects.create(post=make_post(feed, 1), target=box)
    sent: list[tuple[int, str]] = []
    monkeypatch.setattr(dispatch, "enqueue", lambda pairs: len(sent.extend(pairs) or sent))

    run("targets pause box --reason maintenance")
    box.refresh_from_db()
    assert box.paused_at is not None and box.paused_reason == "maintenance"

    out = run("targets resume box")
    box.refresh_from_db()
    assert box.paused_at is None
    assert sent == [(waiting.pk, "outbox")] and "1 waiting" in out


def test_targets_remove_deletes_a_target_without_deliveries(box):
    assert "removed target 'box' (it had no deliveries)" in run("targets remove box")
    assert not Target.objects.exists()
    with pytest.raises(CommandError, match="unknown target 'box'"):
        run("targets pause box")


# --- poll --------------------------------------------------------------------------------------
def test_poll_records_the_backlog_first_then_delivers_only_the_new_post(feed_server):
    feed_server.set_file("/en/feed/", "nejat-en-recent.rss")
    feed = Feed.objects.create(url=feed_server.url("/en/feed/"), language="en")
    english = Target.objects.create(name="en", kind="outbox", languages=["en"])
    english.feeds.add(feed)
    Target.objects.create(name="everything", kind="outbox", settings={"format": "twitter"})
    Target.objects.create(name="farsi", kind="outbox", languages=["fa"])

    first = run(f"poll {feed.pk}")
    assert Post.objects.filter(feed=feed).count() == 5
    assert not Delivery.objects.exists()
    assert "5 new posts, 0 deliveries queued (first poll: backlog recorded, not delivered)" in first

    feed_server.set_file("/en/feed/", "nejat-en-recent-next.rss")
    second = run("poll")

    assert "1 new post, 2 deliveries queued; a worker will send them" in second
    assert f"Nejat NewsLetter \N{EN DASH} January 2026  {NEW_POST_URL}" in second
    assert sorted(Delivery.objects.values_list("target__name", "post__url", "origin")) == [
        ("en", NEW_POST_URL, "auto"),
        ("everything", NEW_POST_URL, "auto"),
    ]
    assert "not modified" in run(f"poll {feed.pk}")


def test_poll_reports_a_failing_feed_and_exits_non_zero(feed_server):
    feed_server.set("/broken", "oops", status=500)
    feed = Feed.objects.create(url=feed_server.url("/broken"))
    out = StringIO()
    with pytest.raises(CommandError, match="1 of 1 polls failed"):
        call_command("poll", str(feed.pk), stdout=out)
    assert f"feed {feed.pk}" in out.getvalue() and "error" in out.getvalue()
    assert Feed.objects.get(pk=feed.pk).consecutive_failures == 1


# --- log ---------------------------------------------------------------------------------------
def test_log_json_gives_every_field_and_the_text_as_it_would_be_sent(feed, box):
    post = make_post(feed, 1, title="A title for the log")
    sent = Delivery.objects.create(
        post=post, target=box, status="sent", attempts=1, rendered_text="as sent",
        external_id="outbox-1", sent_at=timezone.now(),
    )  # fmt: skip
    queued = Delivery.objects.create(post=post, target=box, origin="manual", requested_by="alice")

    rows = json_lines(run("log --json"))

    assert [r["id"] for r in rows] == [queued.pk, sent.pk], "newest first"
    assert all(set(r) >= LOG_JSON_FIELDS for r in rows)
    assert rows[1]["text"] == "as sent" and rows[1]["sent_at"].startswith(str(timezone.now().year))
    assert rows[0]["text"] and "A title for the log" in rows[0]["text"], "rendered when not sent yet"
    assert (rows[0]["origin"], rows[0]["requested_by"], rows[0]["sent_at"]) == ("manual", "alice", None)
    assert (rows[0]["post_url"], rows[0]["target"], rows[0]["target_kind"]) == (post.url, "box", "outbox")


def test_log_filters_by_status_target_and_age(feed, box):
    other = Target.objects.create(name="other", kind="outbox")
    post = make_post(feed, 1)
    failed = Delivery.objects.create(post=post, target=box, status="failed", last_error="boom")
    Delivery.objects.create(post=post, target=other, status="failed", origin="manual")
    old = Delivery.objects.create(post=post, target=box, status="sent", origin="manual")
    Delivery.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))

    def ids(options: str) -> list[int]:
        return [r["id"] for r in json_lines(run(f"log --json {options}"))]

    assert ids("--status failed --target box") == [failed.pk]
    assert ids("--target box --since 1d") == [failed.pk]
    assert ids("--target box --since 1w") == [failed.pk, old.pk]
    assert len(ids("--limit 1")) == 1
    assert "boom" in run("log --status failed")


# --- repost and retry --------------------------------------------------------------------------
def test_repost_by_id_creates_manual_deliveries_for_the_named_targets(feed, box):
    Target.objects.create(name="other", kind="outbox")
    post = make_post(feed, 1)

    out = run(f"repost {post.pk} --to box --user alice --text 'Read this again'")

    (created,) = Delivery.objects.all()
    assert (created.target, created.origin, created.requested_by) == (box, "manual", "alice")
    assert created.text_override == "Read this again" and created.status == "queued"
    assert f"delivery {created.pk} → box" in out and "a worker will send it" in out


def test_repost_by_url_takes_the_newest_post_and_every_enabled_target(feed, box):
    Target.objects.create(name="off", kind="outbox", enabled=False)
    Target.objects.create(name="other", kind="outbox")
    make_post(feed, 1, url=NEW_POST_URL, first_seen_at=timezone.now() - timedelta(hours=1))
    newest = make_post(feed, 2, url=NEW_POST_URL)

    run(f"repost {NEW_POST_URL!r}")

    rows = Delivery.objects.order_by("target__name").values_list("post", "target__name", "origin")
    assert list(rows) == [(newest.pk, "box", "manual"), (newest.pk, "other", "manual")]
    assert all(Delivery.objects.values_list("requested_by", flat=True)), "defaults to the OS user name"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("999", "no post with id 999"),
        ("https://example.org/nothing", "no post with URL"),
        ("{post} --to box,nowhere", "unknown target 'nowhere'"),
    ],
)
def test_repost_refuses_unknown_posts_and_targets(feed, box, args, message):
    post = make_post(feed, 1)
    with pytest.raises(CommandError, match=message):
        run("repost " + args.format(post=post.pk))
    assert not Delivery.objects.exists()


def test_retry_requeues_failed_deliveries_and_reports_the_rest(feed, box):
    post = make_post(feed, 1)
    failed = Delivery.objects.create(post=post, target=box, status="failed", attempts=8)
    sent = Delivery.objects.create(post=post, target=box, status="sent", origin="manual")

    out = run(f"retry {failed.pk} {sent.pk}")

    failed.refresh_from_db()
    assert (failed.status, failed.budget_start) == ("queued", 9)
    verdict = failed.attempt_log.get()
    assert (verdict.number, verdict.kind, verdict.outcome) == (9, "verdict", "retried")
    assert verdict.actor is None and verdict.actor_name.endswith("(command line)")
    assert f"delivery {sent.pk} not retried: it is sent" in out and "1 of 2 deliveries requeued" in out


# --- end to end with a worker ------------------------------------------------------------------
def test_repost_is_sent_by_the_worker_and_shows_as_sent_in_the_log(celery_worker):
    feed = Feed.objects.create(url="https://example.org/feed/", language="en")
    post = make_post(feed, 1, title="Reposted by hand")
    run("targets add outbox --name box --format telegram")

    run(f"repost {post.pk} --to box --user alice")

    def sent_row() -> dict | None:
        rows = json_lines(run("log --json --target box"))
        return rows[0] if rows and rows[0]["status"] == "sent" else None

    row = wait_for(sent_row)
    assert (row["origin"], row["requested_by"], row["attempts"]) == ("manual", "alice", 1)
    assert "Reposted by hand" in row["text"] and row["external_id"].startswith("outbox-")


# --- the real executable -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def cli_env(tmp_path_factory) -> dict[str, str]:
    """Environment for `syndicator` subprocesses: a fresh, migrated SQLite database of their own."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL")}
    env["SYNDICATOR_DATA_DIR"] = str(tmp_path_factory.mktemp("cli-data"))
    subprocess.run([SYNDICATOR, "migrate", "-v", "0"], env=env, check=True, capture_output=True, timeout=120)
    return env


def syndicator(env: dict[str, str], command_line: str) -> subprocess.CompletedProcess[str]:
    """Run the installed `syndicator` executable with a command line."""
    args = [SYNDICATOR, *shlex.split(command_line)]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("feeds add not-a-url", "bad feed URL 'not-a-url'"),
        ("feeds remove 404", "no feed with id 404"),
        ("targets add myspace --name m", "unknown target kind 'myspace'"),
        ("targets add outbox --name m --set colour=blue", "unknown setting 'colour'"),
        ("targets remove nobody", "unknown target 'nobody'"),
        ("poll 404", "no feed with id 404"),
        ("log --since soon", "bad --since 'soon'"),
        ("log --status lost", "unknown status 'lost'; one of: queued, sending"),
        ("log --target nowhere", "unknown target 'nowhere'"),
        ("repost 404", "no post with id 404"),
        ("retry 404", "no delivery with id 404"),
    ],
)
def test_a_user_mistake_is_one_line_on_stderr_and_a_non_zero_exit(cli_env, args, message):
    result = syndicator(cli_env, args)
    assert result.returncode != 0 and result.stdout == ""
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("CommandError: ") and message in line


def test_the_executable_adds_and_lists_feeds(cli_env):
    added = syndicator(cli_env, "feeds add http://127.0.0.1:9/feed.rss --name Local")
    assert added.returncode == 0, added.stderr
    listed = syndicator(cli_env, "feeds list --json")
    rows = [r for r in json_lines(listed.stdout) if r["id"] == int(added.stdout)]
    assert rows and rows[0]["name"] == "Local"
    duplicate = syndicator(cli_env, "feeds add http://127.0.0.1:9/feed.rss")
    assert duplicate.returncode == 1 and duplicate.stderr.startswith("CommandError: feed ")


def test_help_lists_the_syndicator_commands(cli_env):
    out = syndicator(cli_env, "help").stdout
    section = out[out.index("[syndicator]") :].split()
    assert {"feeds", "targets", "poll", "log", "repost", "retry"} <= set(section)


def test_targets_change_sets_and_unsets_typed_settings_and_filters(box, feed):
    pacing = "--set min_interval=60 quiet_hours=23:00-06:30"
    out = run(f"targets change box {pacing} --languages ar,fa --feeds {feed.pk}")
    assert "changed target 'box': min_interval, quiet_hours, feeds, languages" in out
    box.refresh_from_db()
    assert box.settings["min_interval"] == 60 and box.settings["format"] == "telegram"  # typed; kept
    assert box.languages == ["ar", "fa"] and [f.pk for f in box.feeds.all()] == [feed.pk]
    run("targets change box --set min_interval= --feeds ''")
    box.refresh_from_db()
    assert "min_interval" not in box.settings and not box.feeds.exists()  # back to the defaults


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ("", "nothing to change"),
        ("--set min_interval=soon", "min_interval"),
        ("--set nonsense=1", "unknown setting 'nonsense'"),
        ("--feeds 404", "404"),
        ("--secret-env DATABASE_URL", "DATABASE_URL"),
    ],
)
def test_targets_change_refuses_what_targets_add_refuses(box, arguments, message):
    before = dict(box.settings)
    with pytest.raises(CommandError, match=message):
        run(f"targets change box {arguments}")
    box.refresh_from_db()
    assert box.settings == before and box.secret_env == ""
