"""kill -9 a worker while it edits posts on the networks (#12): the edit ends applied once.

The article changes after its posts went out; every network's answer to the edit is slowed, so
the worker is killed with the edits made on the networks and their answers not yet read. Its
leases expire, the sweeper gives the follow-ups back (still asked for), another worker repeats
them: each post reads the new text, X and Mastodon made one edit each (an edit that already
reads so is not made again, on X by reading the newest version first, on Mastodon because an
edit that changes nothing makes no version), each delivery counts one edit, and nothing was
posted twice.
"""

from __future__ import annotations

import pytest

from syndicator import followup
from syndicator.models import Delivery, DeliveryAttempt, Post
from syndicator.targets.registry import network
from tests.conftest import wait_for
from tests.faults.conftest import TAG
from tests.faults.networks import KINDS
from tests.faults.support import settled, store_posts

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

NEW_TITLE = f"{TAG} post 0000: winter kits reach the villages, and the schools"
# Whose emulators can tell an edit that was repeated from one that was made once.
COUNTED = ("twitter", "mastodon")


def test_a_worker_killed_mid_edit_leaves_each_edit_applied_once(networks, start_worker, sweeper):
    networks.make_targets(timeout=10)
    first = start_worker(concurrency=len(KINDS))
    store_posts(TAG, 1)
    wait_for(lambda: first.check() or settled(len(KINDS)), timeout=60)
    editable = [kind for kind in KINDS if network(kind).capabilities.edit]
    out = {
        d.target.kind: d for d in Delivery.objects.select_related("target").filter(target__kind__in=editable)
    }
    assert set(out) == set(editable) and all(d.status == "sent" for d in out.values())

    networks.pace = 4.0  # the edits reach the networks; their answers come after the kill
    post = Post.objects.get(guid=f"{TAG}-0")
    Post.objects.filter(pk=post.pk).update(title=NEW_TITLE, version=2)
    post.refresh_from_db()
    assert followup.post_changed(post) == len(editable)

    def edited_on_the_network(kind: str) -> bool:
        return "and the schools" in (networks.harnesses[kind].post_text(out[kind].external_id) or "")

    def killable() -> bool:
        first.check()
        editing = set(Delivery.objects.filter(status="editing").values_list("target__kind", flat=True))
        # Mastodon's status reads the new text while its answer is on the way; X's edit is a read
        # of the newest version, then the edit: either may be in flight when the kill comes.
        return all(kind in editing for kind in COUNTED) and edited_on_the_network("mastodon")

    wait_for(killable, timeout=60)
    first.kill()
    networks.pace = 0
    start_worker(concurrency=2)

    def done() -> bool:
        rows = Delivery.objects.filter(pk__in=[d.pk for d in out.values()])
        return all(d.status == "sent" and not d.followup for d in rows)

    wait_for(done, timeout=90)
    for kind, delivery in out.items():
        delivery.refresh_from_db()
        assert edited_on_the_network(kind), kind
        assert delivery.edits == 1, (kind, delivery.followup_note)
        assert NEW_TITLE.split(": ")[1] in delivery.rendered_text
    for kind in COUNTED:
        assert networks.harnesses[kind].edit_count(out[kind].external_id) == 1, kind
        log = DeliveryAttempt.objects.filter(delivery=out[kind], kind="edit").order_by("number")
        assert list(log.values_list("outcome", flat=True)) == ["lost", "sent"], kind
    # Nothing posted twice: one post per network (reconcile's id check does not apply: an X edit
    # is a new post id, which the delivery follows).
    assert {kind: len(h.sent()) for kind, h in networks.harnesses.items()} == dict.fromkeys(KINDS, 1)
