"""Edit and delete everywhere (#12) from the command line and the JSON API, and the log's history.

`syndicator edit` / `syndicator delete` and `POST /api/posts/{id}/edit|delete` ask the machinery
of syndicator/followup.py; the worker's side (delivery.attempt_delivery, run here in-process) then
edits or deletes. The targets are dry-run outboxes imitating Telegram (edits, deletes within 48 h)
and email (neither). A few tests run the real `syndicator` executable on the test database (it
must see committed rows: those tests are transactional), one of them at a pseudo-terminal.
"""

from __future__ import annotations

import io
import json
import os
import pty
import select
import shlex
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone

from syndicator import decisions, followup
from syndicator import delivery as deliveries
from syndicator.models import Delivery, DeliveryAttempt, Feed, Post, Target
from tests.accounts import bearer, make_user, token_for
from tests.conftest import TEST_BROKER_URL
from tests.helpers import require_postgresql

pytestmark = pytest.mark.django_db

Status = Delivery.Status
SYNDICATOR = Path(sys.executable).with_name("syndicator")
FIXED = "Story 1, corrected"


def run(command_line: str) -> str:
    """Run a command line (as typed after `syndicator`) in-process; return what it printed."""
    out = io.StringIO()
    call_command(*shlex.split(command_line), stdout=out, stderr=io.StringIO())
    return out.getvalue()


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def sent(db) -> dict[str, Delivery]:
    """A post sent to a Telegram-like and an email-like outbox, then changed at its source (version 2);
    a third target it never went to."""
    feed = Feed.objects.create(url="https://site.example/feed", name="Site", language="en")
    post = Post.objects.create(
        feed=feed,
        guid="story-1",
        url="https://site.example/story-1/",
        title="Story 1",
        language="en",
        published_at=timezone.now(),
    )
    out = {}
    for name, fmt in (("tg", "telegram"), ("mail", "email")):
        target = Target.objects.create(
            name=name, kind="outbox", settings={"format": fmt, "max_age": "36500d"}
        )
        delivery = Delivery.objects.create(post=post, target=target)
        deliveries.attempt_delivery(delivery.pk)
        delivery.refresh_from_db()
        assert delivery.status == Status.SENT and "Story 1" in delivery.rendered_text
        out[name] = delivery
    Target.objects.create(name="elsewhere", kind="outbox", settings={"format": "telegram"})
    Post.objects.filter(pk=post.pk).update(title=FIXED, version=2)
    return out


def work(*rows: Delivery) -> dict[str, Delivery]:
    """What a worker does with each delivery's task message; the deliveries afterwards, by target."""
    for row in rows:
        deliveries.attempt_delivery(row.pk)
    return {
        d.target.name: d
        for d in Delivery.objects.filter(pk__in=[r.pk for r in rows]).select_related("target")
    }


def post_of(sent: dict[str, Delivery]) -> Post:
    return sent["tg"].post


# --- syndicator edit ---------------------------------------------------------------------------


def test_edit_asks_the_targets_that_can_and_the_worker_edits_them(sent):
    post = post_of(sent)
    out = run(f"edit {post.pk} --user alice")

    assert f"post {post.pk}: {FIXED}" in out
    assert f"delivery {sent['tg'].pk} → tg: edit asked" in out
    assert f"delivery {sent['mail'].pk} → mail: not edited: email (dry run) posts cannot be edited" in out
    assert "1 of 2 targets: edit asked; a worker does it" in out
    now = work(sent["tg"], sent["mail"])
    assert (now["tg"].status, now["tg"].edits, now["tg"].followup) == (Status.SENT, 1, "")
    assert FIXED in now["tg"].rendered_text
    edit = DeliveryAttempt.objects.get(delivery=sent["tg"], kind="edit")
    assert edit.outcome == "sent" and edit.actor_name == "alice (command line)"
    assert FIXED not in edit.text_before and FIXED in edit.text_after
    # Email cannot change a sent message: untouched.
    assert (now["mail"].edits, now["mail"].rendered_text) == (0, sent["mail"].rendered_text)
    assert not DeliveryAttempt.objects.filter(delivery=sent["mail"], kind="edit").exists()


def test_edit_credits_the_os_user_by_default(sent):
    run(f"edit {post_of(sent).pk} --to tg")
    row = Delivery.objects.get(pk=sent["tg"].pk)
    assert row.followup == "edit" and row.followup_by.endswith(" (command line)")
    assert row.followup_by != " (command line)"


def test_edit_dry_run_prints_the_plan_and_changes_nothing(sent):
    post = post_of(sent)
    out = run(f"edit {post.pk} --dry-run")

    assert f"post {post.pk}: {FIXED} (dry run: nothing changed)" in out
    assert (
        "→ tg: would be edited" in out and "→ mail: would not be edited: email (dry run) posts cannot" in out
    )
    assert "1 of 2 targets: would be edited" in out
    assert not Delivery.objects.exclude(followup="").exists()
    now = work(sent["tg"])
    assert now["tg"].edits == 0 and FIXED not in now["tg"].rendered_text


def test_edit_json_prints_one_plan_per_line_for_the_named_targets(sent):
    post = post_of(sent)
    rows = json_lines(run(f"edit {post.pk} --to tg --to mail --json"))
    assert rows == [
        {"delivery": sent["tg"].pk, "target": "tg", "action": "edit", "asked": True, "reason": ""},
        {
            "delivery": sent["mail"].pk,
            "target": "mail",
            "action": "edit",
            "asked": False,
            "reason": rows[1]["reason"],
        },
    ]
    assert "cannot be edited" in rows[1]["reason"]
    # Comma-separated works as in `repost --to`; the text is already current: nothing to ask.
    work(sent["tg"])
    again = json_lines(run(f"edit {post.pk} --to tg,mail --json"))
    assert (again[0]["target"], again[0]["asked"], again[0]["reason"]) == (
        "tg",
        False,
        "its text would not change",
    )


def test_edit_finds_the_post_by_its_url(sent):
    out = run(f"edit {post_of(sent).url} --to tg")
    assert "→ tg: edit asked" in out


# --- syndicator delete -------------------------------------------------------------------------


def test_delete_with_yes_deletes_where_the_network_can_in_the_users_name(sent):
    post = post_of(sent)
    out = run(f"delete {post.pk} --yes --user alice")

    assert f"delivery {sent['tg'].pk} → tg: delete asked" in out
    assert f"delivery {sent['mail'].pk} → mail: not deleted: email (dry run) posts cannot be deleted" in out
    now = work(sent["tg"], sent["mail"])
    assert now["tg"].status == Status.DELETED and now["tg"].deleted_by == "editor alice (command line)"
    assert now["mail"].status == Status.SENT
    assert DeliveryAttempt.objects.get(delivery=sent["tg"], kind="delete").outcome == "sent"
    assert "→ tg: not deleted: already deleted" in run(f"delete {post.pk} --yes --to tg")


def test_delete_cancels_what_has_not_gone_out(sent):
    post = post_of(sent)
    queued = Delivery.objects.create(post=post, target=Target.objects.get(name="elsewhere"), origin="manual")
    out = run(f"delete {post.pk} --yes --to elsewhere")
    assert f"delivery {queued.pk} → elsewhere: delete asked (not sent yet: cancelled)" in out
    queued.refresh_from_db()
    assert queued.status == Status.CANCELLED


def test_delete_dry_run_needs_no_confirmation_and_changes_nothing(sent, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    post = post_of(sent)
    out = run(f"delete {post.pk} --dry-run")
    assert "(dry run: nothing changed)" in out and "→ tg: would be deleted" in out
    assert "1 of 2 targets: would be deleted" in out
    assert work(sent["tg"])["tg"].status == Status.SENT
    assert not Delivery.objects.exclude(followup="").exists()


def test_delete_without_yes_refuses_when_nobody_can_confirm(sent, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))  # a pipe, not a terminal: never read
    with pytest.raises(CommandError, match="pass --yes to delete"):
        run(f"delete {post_of(sent).pk}")
    assert not Delivery.objects.exclude(followup="").exists()
    assert work(sent["tg"])["tg"].status == Status.SENT


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("edit 424242", "no post with id 424242"),
        ("delete 424242 --yes", "no post with id 424242"),
        ("edit https://site.example/nothing/", "no post with URL"),
        ("edit {post} --to nowhere", "unknown target 'nowhere' (targets: elsewhere, mail, tg)"),
        ("delete {post} --yes --to tg,nowhere", "unknown target 'nowhere'"),
        ("edit {post} --to elsewhere", "the post was not delivered to elsewhere"),
        ("delete {post} --yes --to elsewhere", "the post was not delivered to elsewhere"),
    ],
)
def test_a_wrong_post_or_target_is_a_user_error_and_changes_nothing(sent, args, message):
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(args.format(post=post_of(sent).pk))
    assert not Delivery.objects.exclude(followup="").exists()


# --- the real executable, on the test database -------------------------------------------------


def database_url() -> str:
    """DATABASE_URL of the database this test runs on (pytest-django's test_<name>)."""
    db = settings.DATABASES["default"]
    credentials = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"], safe="")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def env(transactional_db) -> dict[str, str]:
    require_postgresql("the executable reads the rows this test committed")
    return {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": TEST_BROKER_URL,
        "SYNDICATOR_BROKER_PREFIX": f"synd-test-cli-{os.getpid()}:",
    }


def syndicator(env: dict[str, str], command_line: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SYNDICATOR, *shlex.split(command_line)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=kwargs.pop("stdin", subprocess.DEVNULL),
        **kwargs,
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("edit 424242", "no post with id 424242"),
        ("edit {post} --to nowhere", "unknown target 'nowhere'"),
        ("delete {post} --to elsewhere --yes", "the post was not delivered to elsewhere"),
        ("delete {post}", "pass --yes to delete"),
    ],
)
def test_the_executable_says_a_mistake_in_one_line_with_a_non_zero_exit(env, sent, args, message):
    result = syndicator(env, args.format(post=post_of(sent).pk))
    assert result.returncode == 1 and result.stdout == ""
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("CommandError: ") and message in line
    assert not Delivery.objects.exclude(followup="").exists()


@pytest.mark.django_db(transaction=True)
def test_the_executable_edits_and_prints_json(env, sent):
    result = syndicator(env, f"edit {post_of(sent).pk} --json")
    assert result.returncode == 0, result.stderr
    assert [(r["target"], r["asked"]) for r in json_lines(result.stdout)] == [("tg", True), ("mail", False)]
    assert work(sent["tg"])["tg"].edits == 1
    listed = syndicator(env, "help").stdout
    assert {"edit", "delete"} <= set(listed[listed.index("[syndicator]") :].split())


def at_a_terminal(env: dict[str, str], command_line: str, answer: str | None) -> tuple[int, str, str]:
    """Run the executable with a pseudo-terminal as its standard input; type `answer` once it
    asks (None: expect no question). Its exit code, stdout and what the terminal side showed
    (stderr)."""
    controller, terminal = pty.openpty()
    child = subprocess.Popen(
        [SYNDICATOR, *shlex.split(command_line)],
        env=env,
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(terminal)
    try:
        if answer is None:
            out, shown = child.communicate(timeout=60)
            return child.returncode, out, shown
        # The question goes to stderr; wait for it before answering (a terminal would show it).
        deadline = time.monotonic() + 60
        asked = ""
        assert child.stderr is not None
        while "[y/N]" not in asked:
            assert time.monotonic() < deadline, f"no question: {asked!r}"
            ready, _, _ = select.select([child.stderr], [], [], 1)
            if ready:
                chunk = os.read(child.stderr.fileno(), 4096).decode()
                assert chunk or child.poll() is None, f"exited without asking: {asked!r}"
                asked += chunk
        os.write(controller, answer.encode() + b"\n")
        out, rest = child.communicate(timeout=60)
        return child.returncode, out, asked + rest
    finally:
        os.close(controller)
        if child.poll() is None:
            child.kill()


@pytest.mark.django_db(transaction=True)
def test_at_a_terminal_delete_shows_the_plan_and_deletes_once_confirmed(env, sent):
    post = post_of(sent)
    code, out, shown = at_a_terminal(env, f"delete {post.pk} --user alice", "y")

    assert code == 0, shown
    assert "→ tg: would be deleted" in shown and "→ mail: would not be deleted" in shown
    assert f"Delete post {post.pk} on tg? It cannot be undone. [y/N]" in shown
    assert f"delivery {sent['tg'].pk} → tg: delete asked" in out
    now = work(sent["tg"])
    assert now["tg"].status == Status.DELETED and now["tg"].deleted_by == "editor alice (command line)"


@pytest.mark.django_db(transaction=True)
def test_at_a_terminal_anything_but_yes_deletes_nothing(env, sent):
    code, out, shown = at_a_terminal(env, f"delete {post_of(sent).pk}", "n")
    assert code == 1 and out == ""
    assert "CommandError: not confirmed: nothing was deleted" in shown and "Traceback" not in shown
    assert not Delivery.objects.exclude(followup="").exists()
    assert work(sent["tg"])["tg"].status == Status.SENT


# --- the JSON API ------------------------------------------------------------------------------


@pytest.fixture
def editor(db) -> dict[str, dict[str, str]]:
    user = make_user("ed", "editor")
    return bearer(token_for(user))


def call(client: Client, path: str, auth: dict, body: object = None):
    """POST a JSON body; with none, an empty body (as `curl -X POST` sends)."""
    data = b"" if body is None else json.dumps(body)
    return client.post(path, data, content_type="application/json", **auth)


def test_an_editor_edits_everywhere_through_the_api(client: Client, sent, editor):
    post = post_of(sent)
    response = call(client, f"/api/posts/{post.pk}/edit", editor)  # no body: every target

    assert response.status_code == 200, response.content
    plans = response.json()["plans"]
    assert [(p["delivery"], p["target"], p["action"], p["asked"]) for p in plans] == [
        (sent["tg"].pk, "tg", "edit", True),
        (sent["mail"].pk, "mail", "edit", False),
    ]
    assert "cannot be edited" in plans[1]["reason"]
    now = work(sent["tg"])
    assert now["tg"].edits == 1 and FIXED in now["tg"].rendered_text
    assert DeliveryAttempt.objects.get(delivery=sent["tg"], kind="edit").actor_name == "ed"


def test_an_api_dry_run_shows_the_plan_and_changes_nothing(client: Client, sent, editor):
    post = post_of(sent)
    response = call(client, f"/api/posts/{post.pk}/delete", editor, {"targets": ["tg"], "dry_run": True})
    assert response.status_code == 200
    assert response.json() == {
        "plans": [
            {"delivery": sent["tg"].pk, "target": "tg", "action": "delete", "asked": True, "reason": ""}
        ]
    }
    assert not Delivery.objects.exclude(followup="").exists()
    assert work(sent["tg"])["tg"].status == Status.SENT


def test_an_editor_deletes_chosen_targets_through_the_api(client: Client, sent, editor):
    post = post_of(sent)
    response = call(client, f"/api/posts/{post.pk}/delete", editor, {"targets": ["tg"]})
    assert response.status_code == 200
    assert [(p["target"], p["asked"]) for p in response.json()["plans"]] == [("tg", True)]
    now = work(sent["tg"], sent["mail"])
    assert (now["tg"].status, now["tg"].deleted_by) == (Status.DELETED, "editor ed")
    assert now["mail"].status == Status.SENT


def test_the_api_refuses_without_the_editor_role_an_unknown_post_and_unknown_targets(
    client: Client, sent, editor
):
    post = post_of(sent)
    nobody = bearer(token_for(make_user("nobody")))
    for action in ("edit", "delete"):
        path = f"/api/posts/{post.pk}/{action}"
        assert client.post(path).status_code == 401
        forbidden = call(client, path, nobody, {})
        assert forbidden.status_code == 403 and "syndicator.add_delivery" in forbidden.json()["detail"]
        missing = call(client, f"/api/posts/424242/{action}", editor, {})
        assert (missing.status_code, missing.json()) == (404, {"detail": "no post with id 424242"})
        unknown = call(client, path, editor, {"targets": ["tg", "nowhere"]})
        assert (unknown.status_code, unknown.json()) == (
            400,
            {"detail": "the post was not delivered to nowhere"},
        )
        never = call(client, path, editor, {"targets": ["elsewhere"]})
        assert never.status_code == 400 and "elsewhere" in never.json()["detail"]
        empty = call(client, path, editor, {"targets": []})
        assert empty.status_code == 400 and "name at least one target" in empty.json()["detail"]
        misspelt = call(client, path, editor, {"dryrun": True})
        assert misspelt.status_code == 422 and "dryrun" in misspelt.json()["detail"]
    assert not Delivery.objects.exclude(followup="").exists()


def test_the_schema_lists_the_edit_and_delete_endpoints(client: Client):
    schema = client.get("/api/openapi.json").json()
    for action in ("edit", "delete"):
        operation = schema["paths"][f"/api/posts/{{post_id}}/{action}"]["post"]
        assert set(operation["responses"]) >= {"200", "400", "403", "404"}


# --- the log -----------------------------------------------------------------------------------


def test_log_json_rows_carry_the_history_the_action_of_each_attempt_and_the_current_text(sent):
    post = post_of(sent)
    run(f"edit {post.pk} --to tg")
    work(sent["tg"])
    rows = {r["target"]: r for r in json_lines(run("log --json"))}
    assert (rows["tg"]["action"], rows["tg"]["history"], rows["tg"]["edits"]) == (
        "edit",
        "sent, edited 1 time",
        1,
    )
    assert FIXED in rows["tg"]["text"], "the text the network shows now"
    assert [a["action"] for a in rows["tg"]["attempt_log"]] == ["send", "edit"]
    edit = rows["tg"]["attempt_log"][1]
    assert FIXED in edit["text_after"] and FIXED not in edit["text_before"] and edit["outcome"] == "sent"
    assert (rows["mail"]["action"], rows["mail"]["history"]) == ("send", "sent")

    run(f"delete {post.pk} --yes --to tg")
    work(sent["tg"])
    (row,) = json_lines(run("log --json --target tg"))
    assert (row["status"], row["action"], row["history"]) == (
        "deleted",
        "delete",
        "sent, edited 1 time, deleted",
    )
    assert [a["action"] for a in row["attempt_log"]] == ["send", "edit", "delete"]
    assert row["deleted_by"].startswith("editor ") and row["deleted_at"]
    table = run("log --target tg")
    assert "sent, edited 1 time, deleted" in table and "by editor" in table


def test_a_look_up_or_a_verdict_counts_as_the_send(sent):
    failed = Delivery.objects.create(
        post=post_of(sent), target=Target.objects.get(name="elsewhere"), status=Status.FAILED, attempts=1
    )
    DeliveryAttempt.objects.create(delivery=failed, number=1, kind="send", outcome="permanent")
    decisions.retry([failed], by="someone")
    row = next(r for r in json_lines(run("log --json")) if r["id"] == failed.pk)
    assert [(a["kind"], a["action"]) for a in row["attempt_log"]] == [("send", "send"), ("verdict", "send")]
    assert row["action"] == "send" and row["history"] == "queued"


def test_the_human_log_shows_what_a_followup_left_to_know(sent):
    run(f"edit {post_of(sent).pk} --dry-run")
    table = run("log --target mail")
    assert "cannot be edited" not in table, "a dry run writes no note on the delivery"
    run(f"edit {post_of(sent).pk}")  # asked for real: the refusal is noted on the delivery
    assert "asked to edit it everywhere; not here" in run("log --target mail")
    followup.post_changed(post_of(sent))  # detection: writes the reason on the delivery
    (row,) = json_lines(run("log --target mail --json"))
    assert "not edited here: email (dry run) posts cannot be edited" in row["followup_note"]
    assert "edit asked" in run("log --target tg")
    # The table's detail column shows the note (cut to fit).
    assert "the article changed at its source" in run("log --target mail")


def test_the_api_delivery_shows_each_attempts_action_and_text(client: Client, sent, editor):
    run(f"edit {post_of(sent).pk} --to tg")
    work(sent["tg"])
    body = client.get(f"/api/deliveries/{sent['tg'].pk}", **editor).json()
    assert (body["action"], body["history"]) == ("edit", "sent, edited 1 time")
    assert [(a["action"], a["kind"]) for a in body["attempt_log"]] == [("send", "send"), ("edit", "edit")]
    assert FIXED in body["attempt_log"][1]["text_after"]
    listed = client.get("/api/deliveries?target=tg", **editor).json()["items"]
    assert (listed[0]["action"], listed[0]["history"], listed[0]["edits"]) == (
        "edit",
        "sent, edited 1 time",
        1,
    )


@pytest.mark.django_db(transaction=True)
def test_at_a_terminal_a_delete_with_nothing_to_delete_asks_nothing(env, sent):
    code, out, shown = at_a_terminal(env, f"delete {post_of(sent).pk} --to mail", None)
    assert code == 0 and "[y/N]" not in shown, shown
    assert "(nothing to delete, nothing changed)" in out
    assert "→ mail: would not be deleted: email (dry run) posts cannot be deleted" in out
    assert "0 of 1 target: nothing to delete" in out
