"""The networks of the fault tests (every registered one), and the books that check what each received.

Each network is its emulator (threads of this process, reached over loopback) with one target;
its answers can be slowed down (a send stays in flight after the network handled it) or made
flaky (a share of publishing requests fails transiently, nothing posted). ``reconcile`` matches
what each network received to the deliveries, by the post number in each message's text.
"""

from __future__ import annotations

import importlib
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from syndicator.targets.registry import OUTBOX, kinds
from tests.emulators.base import HttpHarness, Reply

# Every network but the dry run, each with its emulator module tests/emulators/<kind>.py.
KINDS = tuple(kind for kind in kinds() if kind != OUTBOX)


def harness_module(kind: str) -> Any:
    """A network's emulator module (it offers a ``Harness``: tests/emulators/base.py)."""
    return importlib.import_module(f"tests.emulators.{kind}")


@dataclass
class Received:
    """One message a network accepted: the post number in its text and the network's id for it."""

    number: int
    external_id: str


class Networks:
    """Every network's emulator with one target each; their answers can be slowed or made flaky."""

    def __init__(self, tag: str, seed: int = 5) -> None:
        self.tag = tag
        self.harnesses: dict[str, Any] = {kind: harness_module(kind).Harness() for kind in KINDS}
        self.pace = 0.0  # seconds every answer waits after its request was handled
        self.flaky = 0.0  # probability that a publishing request fails, transiently
        self.injected: Counter[str] = Counter()
        self._failed_keys: set[str] = set()  # idempotency keys a flaky answer was given for
        self._rng = random.Random(seed)
        self._marker = re.compile(rf"{re.escape(tag)} post (\d{{4}})")

    def __enter__(self) -> Networks:
        for harness in self.harnesses.values():
            harness.__enter__()
            harness.install_faults(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.pace = 0.0
        for harness in self.harnesses.values():
            harness.__exit__(None, None, None)

    def http(self, kind: str) -> Any:
        """The HTTP emulator of a network."""
        return self.harnesses[kind].emulator

    def http_kinds(self) -> list[str]:
        """The networks reached over HTTP (those whose emulator can script HTTP faults)."""
        return [kind for kind, harness in self.harnesses.items() if isinstance(harness, HttpHarness)]

    def transient_reply(self, kind: str) -> Reply:
        """The network's "failed, nothing posted, try again" answer."""
        return self.harnesses[kind].transient_reply()

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
                items.append(Received(int(match[1]), harness.external_id(sent)))
            found[kind] = items
        return found

    def flaky_now(self, kind: str, key: str = "") -> bool:
        """Whether this publishing request fails. A request with an idempotency key fails at most
        once per key: its failure may make the delivery uncertain (Mastodon's 503), and the one
        re-send under the same key that settles it must get through (a second failure would leave
        it to an admin, which is not this test's point)."""
        if not self.flaky or (key and key in self._failed_keys):
            return False
        if self._rng.random() >= self.flaky:
            return False
        if key:
            self._failed_keys.add(key)
        self.injected[kind] += 1
        return True


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
