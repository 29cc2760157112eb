"""The six networks of the fault tests, and the books that check what each received.

Each network is its emulator (threads of this process, reached over loopback) with one target;
its answers can be slowed down (a send stays in flight after the network handled it) or made
flaky (a share of publishing requests fails transiently, nothing posted). ``reconcile`` matches
what each network received to the deliveries, by the post number in each message's text.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.emulators import bluesky, graph, mastodon, smtp, telegram, x
from tests.emulators.base import EmulatedRequest, Reply

KINDS = ("telegram", "facebook", "twitter", "email", "mastodon", "bluesky")


# --- the networks ---------------------------------------------------------------------------------

# An answer that says "failed, nothing posted, try again" in each network's own words.
TRANSIENT: dict[str, Callable[[], Reply]] = {
    "telegram": lambda: Reply(503, json=telegram.error(503, "Service Unavailable")),
    "facebook": lambda: Reply(500, json=graph.graph_error(2, "Service temporarily unavailable", type="")),
    "twitter": lambda: Reply(
        503, json=x.problem(503, "Service Unavailable", "Over capacity"), headers=x.PROBLEM
    ),
    # Mastodon has no 5xx that means "nothing posted": its adapter calls a 503 on posting uncertain,
    # and settles it by re-sending under the same Idempotency-Key (so the wrapper fails a key once).
    "mastodon": lambda: Reply(503, json={"error": "Service Unavailable"}),
    # XRPC's 503 is "nothing was done" (syndicator/targets/bluesky/xrpc.py): a plain retry.
    "bluesky": lambda: Reply(503, json=bluesky.xrpc_error("NotEnoughResources", "Service Unavailable")),
}
SMTP_DEFERRAL = "451 4.3.0 Mail server temporarily rejected message"


@dataclass
class Received:
    """One message a network accepted: the post number in its text and the network's id for it."""

    number: int
    external_id: str


class Networks:
    """The six emulators with one target each; their answers can be slowed or made flaky."""

    def __init__(self, tag: str, seed: int = 5) -> None:
        self.tag = tag
        self.harnesses: dict[str, Any] = {
            "telegram": telegram.Harness(),
            "facebook": graph.Harness(),
            "twitter": x.Harness(),
            "email": smtp.Harness(),
            "mastodon": mastodon.Harness(),
            "bluesky": bluesky.Harness(),
        }
        self.pace = 0.0  # seconds every answer waits after its request was handled
        self.flaky = 0.0  # probability that a publishing request fails, transiently
        self.injected: Counter[str] = Counter()
        self._failed_keys: set[str] = set()  # Idempotency-Keys a flaky answer was given for
        self._rng = random.Random(seed)
        self._marker = re.compile(rf"{re.escape(tag)} post (\d{{4}})")

    def __enter__(self) -> Networks:
        for harness in self.harnesses.values():
            harness.__enter__()
        for kind in TRANSIENT:
            self._wrap(kind, self.http(kind))
        server = self.smtp
        take = server._take_faults
        server._take_faults = lambda: self._smtp_faults(take)
        return self

    def __exit__(self, *exc: object) -> None:
        self.pace = 0.0
        for harness in self.harnesses.values():
            harness.__exit__(None, None, None)

    def http(self, kind: str) -> Any:
        """The HTTP emulator of a network."""
        harness = self.harnesses[kind]
        return harness.api if kind == "telegram" else harness.emulator

    @property
    def smtp(self) -> smtp.SmtpServer:
        return self.harnesses["email"].server

    def make_targets(self, *, timeout: float) -> dict[str, Any]:
        """One target per network, its API calls timing out after `timeout` seconds."""
        return {
            kind: h.make_target(name=f"fault-{kind}", timeout=timeout) for kind, h in self.harnesses.items()
        }

    def received(self) -> dict[str, list[Received]]:
        """What each network accepted, oldest first."""
        found: dict[str, list[Received]] = {}
        for kind, harness in self.harnesses.items():
            items = []
            for sent in harness.sent():
                text = sent.get("subject", "") + "\n" + sent["text"]
                match = self._marker.search(text)
                assert match, f"{kind} received a message of no post of this test: {text[:200]!r}"
                items.append(Received(int(match[1]), self._external_id(kind, sent)))
            found[kind] = items
        return found

    @staticmethod
    def _external_id(kind: str, sent: dict[str, Any]) -> str:
        if kind == "telegram":
            return f"{sent['chat_id']}:{sent['message_id']}"
        if kind == "bluesky":
            return str(sent["uri"])  # the adapter's external_id is the record's at:// URI
        return str(sent.get("post_id") or sent.get("id") or "")  # email has no id of its own

    def _wrap(self, kind: str, emulator: Any) -> None:
        original = emulator.dispatch

        def dispatch(request: EmulatedRequest) -> Reply:
            if self.flaky and request.method == "POST" and self._flaky_now(request):
                self.injected[kind] += 1
                return TRANSIENT[kind]()  # before the real handler: nothing is posted
            reply = original(request)
            # After the handler: the post exists, and its answer is still on the way.
            return dataclasses.replace(reply, delay=max(reply.delay, self.pace)) if self.pace else reply

        emulator.dispatch = dispatch

    def _flaky_now(self, request: EmulatedRequest) -> bool:
        """Whether this publishing request fails. A Mastodon status fails at most once per
        Idempotency-Key: its 503 makes the delivery uncertain, and the one re-send that settles it
        must get through (a second 503 would leave it to an admin, which is not this test's point)."""
        key = request.headers.get("idempotency-key", "")
        if key and key in self._failed_keys:
            return False
        if self._rng.random() >= self.flaky:
            return False
        if key:
            self._failed_keys.add(key)
        return True

    def _smtp_faults(self, take: Callable[[], smtp.Faults]) -> smtp.Faults:
        faults = take()  # faults a test scripted come first
        if faults == smtp.Faults():
            if self.flaky and self._rng.random() < self.flaky:
                self.injected["email"] += 1
                return smtp.Faults(rcpt=SMTP_DEFERRAL)  # the recipient is deferred: retried later
            if self.pace:
                return smtp.Faults(stall=self.pace)
        return faults


@dataclass
class Books:
    """Deliveries against what each network received, by post number; ``problems`` lists mismatches."""

    counts: dict[str, Counter[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return "; ".join(f"{kind}: {dict(c)}" for kind, c in self.counts.items())


def reconcile(networks: Networks) -> Books:
    """Check no post reached a network twice, each `sent` delivery exactly once under its own id,
    each `uncertain` one at most once and any other never: what a network received is the sent
    deliveries plus the uncertain ones whose request arrived."""
    from syndicator.models import Delivery

    books = Books()
    received = networks.received()
    for kind in KINDS:
        deliveries = {
            int(d.post.guid.rsplit("-", 1)[1]): d
            for d in Delivery.objects.filter(target__kind=kind).select_related("post")
        }
        got: dict[int, list[Received]] = {}
        for item in received[kind]:
            got.setdefault(item.number, []).append(item)
        counts: Counter[str] = Counter(received=len(received[kind]))
        for number, delivery in sorted(deliveries.items()):
            copies = got.pop(number, [])
            counts[delivery.status] += 1
            where = f"{kind} post {number} ({delivery.status}, delivery {delivery.pk})"
            if len(copies) > 1:
                books.problems.append(f"{where} was received {len(copies)} times")
            if delivery.status == "sent":
                if not copies:
                    books.problems.append(f"{where} is marked sent but never arrived")
                elif copies[0].external_id and copies[0].external_id != delivery.external_id:
                    books.problems.append(
                        f"{where} has id {delivery.external_id!r}, network {copies[0].external_id!r}"
                    )
            elif delivery.status == "uncertain":
                counts["uncertain_arrived" if copies else "uncertain_not_arrived"] += 1
            elif copies:
                books.problems.append(f"{where} arrived, yet it is not sent")
        if got:
            books.problems.append(f"{kind} received posts that have no delivery: {sorted(got)}")
        if counts["received"] != counts["sent"] + counts["uncertain_arrived"]:
            books.problems.append(f"{kind} received {counts['received']} messages: {dict(counts)}")
        books.counts[kind] = counts
    return books
