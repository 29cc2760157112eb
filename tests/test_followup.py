"""Following an article on the networks (#12), the acting side: through a real Celery worker, with
feeds over real HTTP (tests/feedserver.py) and X's emulator over real HTTP beside dry-run outbox
targets that imitate Telegram (edits, deletes within 48 h) and email (neither).

An edited item edits every editable target's post once and leaves the others alone (with the
reason); a burst of edits ends as the newest text; an item pulled from its feed is deleted where
the target's policy says so and flagged elsewhere; 5xx and 429 on edits are retried like sends; a
network that refuses the edit leaves the delivery `sent` with the reason; a worker lost mid-edit
leaves the edit applied once; an editor's "everywhere" actions say what each target does.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from syndicator import delivery as deliveries
from syndicator import followup, watch
from syndicator.models import Delivery, DeliveryAttempt, Feed, Post, Target
from tests.conftest import wait_for
from tests.emulators import twitter

pytestmark = pytest.mark.django_db(transaction=True)

Status = Delivery.Status


def item(n: int, *, title: str = "") -> str:
    """One RSS item, published on day n of January 2026 (later n: newer)."""
    return (
        f"<item><title>{title or f'Story {n}'}</title>"
        f"<link>https://site.example/story-{n}/</link>"
        f'<guid isPermaLink="false">story-{n}</guid>'
        f"<pubDate>Thu, {n:02d} Jan 2026 10:00:00 GMT</pubDate>"
        f"<description>Body {n}</description></item>"
    )


def rss(*items: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>T</title>'
        "<link>https://site.example/</link>" + "".join(items) + "</channel></rss>"
    ).encode()


@pytest.fixture
def x():
    with twitter.Harness() as harness:
        yield harness


def poll(feed_server, body: bytes, feed: Feed | None = None) -> Feed:
    feed_server.set("/feed", body)
    feed = feed or Feed.objects.create(url=feed_server.url("/feed"), poll_interval=3600, backfill=10)
    report = watch.poll_feed(feed.pk)
    assert report.status in ("ok", "not_modified"), report.error
    return feed


def settled(*ids: int) -> bool:
    """Every delivery is out of sending/editing/deleting with no follow-up left to do."""
    rows = Delivery.objects.filter(pk__in=ids)
    return all(d.status in (Status.SENT, Status.DELETED) and not d.followup for d in rows)


def all_sent(post: Post) -> list[Delivery]:
    wait_for(lambda: all(d.status == Status.SENT for d in post.deliveries.all()) and post.deliveries.exists())
    return list(post.deliveries.select_related("target").order_by("target__name"))


def by_target(post: Post) -> dict[str, Delivery]:
    return {d.target.name: d for d in post.deliveries.select_related("target")}


@pytest.fixture
def targets(x) -> dict[str, Target]:
    return {
        "tg": Target.objects.create(
            name="tg", kind="outbox", settings={"format": "telegram", "max_age": "36500d"}
        ),
        "mail": Target.objects.create(
            name="mail", kind="outbox", settings={"format": "email", "max_age": "36500d"}
        ),
        "x": x.make_target(name="x", max_age="36500d"),
    }


def test_an_edited_item_edits_each_editable_post_once_and_leaves_the_others(
    feed_server, celery_worker, targets, x
):
    feed = poll(feed_server, rss(item(2), item(1)))
    post = Post.objects.get(guid="story-2")
    sent = {d.target.name: d for d in all_sent(post)}
    tweet = sent["x"].external_id
    assert "Story 2" in x.post_text(tweet)

    poll(feed_server, rss(item(2, title="Story 2, corrected"), item(1)), feed)
    wait_for(lambda: by_target(post)["tg"].edits == 1 and x.edit_count(tweet) == 1)
    wait_for(lambda: settled(*[d.pk for d in sent.values()]))

    now = by_target(post)
    assert "Story 2, corrected" in now["tg"].rendered_text
    assert "Story 2, corrected" in x.post_text(tweet)
    assert now["x"].status == now["tg"].status == Status.SENT
    assert now["x"].source_version == Post.objects.get(pk=post.pk).version == 2
    # Email cannot change a sent message: untouched, and the reason is shown.
    assert now["mail"].edits == 0 and "Story 2, corrected" not in now["mail"].rendered_text
    assert (
        "email (dry run) posts cannot be edited (a sent email cannot be changed" in now["mail"].followup_note
    )
    # Each edit is a logged attempt of kind edit, with the text before and after.
    edit = DeliveryAttempt.objects.get(delivery=now["tg"], kind="edit")
    assert edit.outcome == "sent"
    assert "Story 2, corrected" not in edit.text_before and "Story 2, corrected" in edit.text_after
    # The other item of the feed did not change: nothing was edited for it.
    other = Post.objects.get(guid="story-1")
    assert not DeliveryAttempt.objects.filter(delivery__post=other, kind="edit").exists()
    assert followup.history(now["tg"]) == "sent, edited 1 time"


def test_a_burst_of_edits_ends_as_the_newest_text_everywhere(feed_server, celery_worker, targets, x):
    feed = poll(feed_server, rss(item(2), item(1)))
    post = Post.objects.get(guid="story-2")
    sent = all_sent(post)
    tweet = by_target(post)["x"].external_id
    for n in range(1, 6):
        poll(feed_server, rss(item(2, title=f"Story 2, take {n}"), item(1)), feed)
    wait_for(lambda: settled(*[d.pk for d in sent]) and "take 5" in (x.post_text(tweet) or ""), timeout=30)
    now = by_target(post)
    assert "Story 2, take 5" in now["tg"].rendered_text
    assert now["tg"].source_version == 6
    # Never more edits than versions, and the texts applied went forward only.
    applied = list(
        DeliveryAttempt.objects.filter(delivery=now["tg"], kind="edit", outcome="sent")
        .order_by("number")
        .values_list("text_after", flat=True)
    )
    takes = [int(text.split("take ")[1][0]) for text in applied]
    assert takes == sorted(takes) and takes[-1] == 5 and len(takes) <= 5
    assert x.edit_count(tweet) <= 5


def test_a_pulled_item_is_deleted_where_the_policy_says_and_flagged_elsewhere(feed_server, celery_worker, x):
    tg = Target.objects.create(
        name="tg",
        kind="outbox",
        settings={"format": "telegram", "on_unpublish": "delete", "max_age": "36500d"},
    )
    x_delete = x.make_target(name="x-delete", on_unpublish="delete", max_age="36500d")
    flag = Target.objects.create(
        name="x-flag", kind="outbox", settings={"format": "mastodon", "max_age": "36500d"}
    )  # X refuses a second post of the same text: the flagged one is a dry-run Mastodon
    feed = poll(feed_server, rss(item(3), item(2), item(1)))
    post = Post.objects.get(guid="story-2")
    sent = all_sent(post)
    tweets = {d.target.name: d.external_id for d in sent}

    # Story 2 is taken out while story 1, published before it, is still there: unpublished.
    poll(feed_server, rss(item(3), item(1)), feed)
    wait_for(lambda: settled(*[d.pk for d in sent]) and by_target(post)["tg"].status == Status.DELETED)
    wait_for(lambda: by_target(post)["x-delete"].status == Status.DELETED)
    now = by_target(post)
    assert now["tg"].deleted_by.startswith("syndicator: ") and now["tg"].deleted_at is not None
    assert x.post_text(tweets["x-delete"]) is None
    # The default policy flags it for an editor: still out, the reason shown.
    assert now["x-flag"].status == Status.SENT and now["x-flag"].flagged_at is not None
    assert "flagged for an editor" in now["x-flag"].followup_note
    assert DeliveryAttempt.objects.filter(delivery=now["tg"], kind="delete", outcome="sent").count() == 1
    assert {tg.pk, x_delete.pk, flag.pk} == {d.target_id for d in sent}

    # The editor deletes the flagged one with one click, in their name.
    editor = User.objects.create_user("rana")
    plans = followup.delete_everywhere(post, actor=editor)
    assert [(p.target, p.asked) for p in plans if p.target == "x-flag"] == [("x-flag", True)]
    assert {p.target: p.reason for p in plans}["tg"] == "already deleted"
    wait_for(lambda: by_target(post)["x-flag"].status == Status.DELETED)
    assert by_target(post)["x-flag"].deleted_by == "editor rana"
    assert DeliveryAttempt.objects.get(delivery=now["x-flag"], kind="delete").actor_name == "rana"

    # An article that comes back is not posted again.
    poll(feed_server, rss(item(3), item(2), item(1)), feed)
    assert post.deliveries.count() == 3
    assert all(d.status == Status.DELETED for d in post.deliveries.all())


def test_an_item_that_scrolled_off_the_end_is_left_alone(feed_server, celery_worker, targets):
    feed = poll(feed_server, rss(item(3), item(2), item(1)))
    post = Post.objects.get(guid="story-1")
    sent = all_sent(post)
    poll(feed_server, rss(item(4), item(3), item(2)), feed)
    assert all(
        d.status == Status.SENT and not d.followup and d.flagged_at is None
        for d in Delivery.objects.filter(pk__in=[d.pk for d in sent])
    )


def test_a_queued_delivery_of_a_pulled_article_is_cancelled_never_sent(feed_server, targets):
    feed = poll(feed_server, rss(item(2), item(1)))  # no worker: its deliveries wait
    post = Post.objects.get(guid="story-2")
    assert post.deliveries.count() == 3
    watch.unpublish(post, reason="the webhook said so")
    assert {d.status for d in post.deliveries.all()} == {Status.CANCELLED}
    assert "unpublished at its source" in post.deliveries.first().last_error
    assert feed.pk


def test_edit_errors_are_retried_like_sends_and_a_refusal_leaves_it_sent(
    feed_server, celery_worker, beat, x, fast_retries
):
    target = x.make_target(name="x", max_age="36500d")
    feed = poll(feed_server, rss(item(2), item(1)))
    post = Post.objects.get(guid="story-2")
    (sent,) = [d for d in all_sent(post) if d.target_id == target.pk]
    tweet = sent.external_id

    # Two 503s on the edit's calls: retried by the one retry policy, then edited.
    x.emulator.fail_next(2, status=503, json={"title": "Service Unavailable", "detail": "Over capacity"})
    poll(feed_server, rss(item(2, title="Story 2, fixed"), item(1)), feed)
    wait_for(lambda: "fixed" in (x.post_text(tweet) or ""), timeout=30)
    wait_for(lambda: settled(sent.pk))
    outcomes = list(
        DeliveryAttempt.objects.filter(delivery=sent, kind="edit")
        .order_by("number")
        .values_list("outcome", flat=True)
    )
    assert outcomes == ["transient", "transient", "sent"]

    # The network refuses the next edit (its 30 minutes passed, as its own clock says): still
    # sent, the reason shown, never failed.
    x.emulator.now = lambda: time.time() + 3600
    poll(feed_server, rss(item(2, title="Story 2, fixed again"), item(1)), feed)
    wait_for(lambda: DeliveryAttempt.objects.filter(delivery=sent, kind="edit", outcome="refused").exists())
    wait_for(lambda: settled(sent.pk))
    sent.refresh_from_db()
    assert sent.status == Status.SENT and "not edited" in sent.followup_note
    assert "fixed again" not in x.post_text(tweet)


def test_a_worker_lost_mid_edit_leaves_the_edit_applied_once(feed_server, targets, x):
    feed = poll(feed_server, rss(item(2), item(1)))
    post = Post.objects.get(guid="story-2")
    d = Delivery.objects.get(post=post, target=targets["x"])
    deliveries.attempt_delivery(d.pk)
    d.refresh_from_db()
    tweet = d.external_id
    poll(feed_server, rss(item(2, title="Story 2, again"), item(1)), feed)
    d.refresh_from_db()
    assert d.followup == "edit"

    # A worker claims the edit, sends it, and dies before it records anything.
    assert followup.claim(d.pk) == "edit"
    d.refresh_from_db()
    adapter = deliveries.get_adapter(d.target)
    adapter.edit(adapter.render(d), d)
    assert x.edit_count(tweet) == 1
    Delivery.objects.filter(pk=d.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert deliveries.sweep()["followups_lost"] == 1
    d.refresh_from_db()
    assert (d.status, d.followup) == (Status.SENT, "edit")

    # Asked again, the edit finds the network already reads so: applied once, recorded once.
    deliveries.attempt_delivery(d.pk)
    d.refresh_from_db()
    assert (d.status, d.followup, d.edits) == (Status.SENT, "", 1)
    assert x.edit_count(tweet) == 1 and "again" in x.post_text(tweet)


def test_an_editor_sees_what_each_target_will_do_before_confirming(feed_server, targets, x):
    poll(feed_server, rss(item(2), item(1)))
    post = Post.objects.get(guid="story-2")
    for d in post.deliveries.all():
        deliveries.attempt_delivery(d.pk)
    Post.objects.filter(pk=post.pk).update(title="Story 2, retitled", version=2)
    plans = {p.target: p for p in followup.preview(post, "edit")}
    assert plans["tg"].asked and plans["x"].asked
    assert not plans["mail"].asked and "cannot be edited" in plans["mail"].reason
    assert not Delivery.objects.filter(post=post).exclude(followup="").exists(), "a preview changes nothing"
    # X's window as it declares it: past 30 minutes the plan says so before asking the network.
    Delivery.objects.filter(post=post, target=targets["x"]).update(
        sent_at=timezone.now() - timedelta(hours=1)
    )
    plans = {p.target: p for p in followup.preview(post, "edit")}
    assert not plans["x"].asked and "30 minutes" in plans["x"].reason
    # Asked for real, the refusal stays in the delivery's history, not only in the editor's message.
    followup.edit_everywhere(post, actor=User.objects.create_user("dara"))
    mail = Delivery.objects.get(post=post, target=targets["mail"])
    assert mail.followup_note.startswith("dara asked to edit it everywhere; not here: email (dry run) posts")
    with pytest.raises(Exception, match="not delivered to nowhere"):
        followup.preview(post, "edit", targets=["nowhere"])


@pytest.mark.parametrize("fault", ["rate_limited", "transient", "unknown"])
def test_a_rate_limit_or_an_error_on_edit_and_delete_is_retried(
    feed_server, celery_worker, beat, fast_retries, fault
):
    target = Target.objects.create(
        name="tg",
        kind="outbox",
        settings={
            "format": "telegram",
            "max_age": "36500d",
            "fail_retry_after": 0.2,
            "on_unpublish": "delete",
        },
    )
    feed = poll(feed_server, rss(item(2), item(1)))
    post = Post.objects.get(guid="story-2")
    (sent,) = all_sent(post)

    def fail_next() -> None:
        target.refresh_from_db()
        target.settings.update(fail=fault, fail_next=1)
        target.save()

    fail_next()
    poll(feed_server, rss(item(2, title="Story 2, fixed"), item(1)), feed)
    wait_for(lambda: settled(sent.pk) and Delivery.objects.get(pk=sent.pk).edits == 1)
    fail_next()
    poll(feed_server, rss(item(1)), feed)  # story 2 pulled, story 1 (older) still there
    wait_for(lambda: Delivery.objects.get(pk=sent.pk).status == Status.DELETED)
    failed = "rate_limited" if fault == "rate_limited" else "transient"
    log = list(
        DeliveryAttempt.objects.filter(delivery=sent).order_by("number").values_list("kind", "outcome")
    )
    assert log == [
        ("send", "sent"),
        ("edit", failed),
        ("edit", "sent"),
        ("delete", failed),
        ("delete", "sent"),
    ]
