"""A WebSub hub (W3C WebSub §5–§8) on 127.0.0.1: subscribe, verify intent, distribute, deny.

    with WebSubHub() as hub:
        hub.url                                   # the hub's endpoint, for a feed's rel="hub"
        hub.verify = False                        # accept requests (202) but never verify
        hub.deny_with = "topic not allowed"       # answer requests by a denial GET instead
        hub.lease_seconds = 5                     # the lease the hub grants
        hub.wait_subscribed(topic)                # the verified subscription of a topic
        hub.publish(topic, body)                  # POST the body to its subscribers, signed
        hub.publish(topic, body, secret="wrong")  # ... signed with the wrong secret (or None)

Like a real hub it answers a (un)subscription request with 202 and then, from another thread,
GETs the callback with hub.mode, hub.topic, hub.challenge (and hub.lease_seconds); the
subscription holds only if the callback answers 2xx with the challenge.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

import httpx

from tests.emulators.base import EmulatedRequest, Emulator, Reply


@dataclass
class Subscription:
    callback: str
    topic: str
    secret: str
    lease_seconds: int
    verified_at: float


class WebSubHub(Emulator):
    """The hub; ``requests`` logs every (un)subscription request, ``checks`` every GET it made."""

    def __init__(self) -> None:
        super().__init__()
        self.verify = True
        self.deny_with = ""
        self.lease_seconds: int | None = None  # None: grant what was asked
        self.subscriptions: dict[tuple[str, str], Subscription] = {}
        self.checks: list[dict] = []  # each verification GET: mode, topic, status, echoed
        self.route("POST", r"/hub", self._request)

    @property
    def url(self) -> str:
        return f"{self.base_url}/hub"

    def _request(self, request: EmulatedRequest) -> Reply:
        form = request.form
        mode, topic, callback = form.get("hub.mode"), form.get("hub.topic"), form.get("hub.callback")
        if mode not in ("subscribe", "unsubscribe") or not topic or not callback:
            return Reply(status=400, body=b"hub.mode, hub.topic and hub.callback are required")
        self.record(mode, topic=topic, callback=callback, secret=form.get("hub.secret", ""))
        if self.verify:
            threading.Thread(target=self._verify, args=(form,), daemon=True).start()
        return Reply(status=202)

    def _verify(self, form: dict[str, str]) -> None:
        time.sleep(0.02)  # after the 202 has gone out
        mode, topic, callback = form["hub.mode"], form["hub.topic"], form["hub.callback"]
        if self.deny_with and mode == "subscribe":
            params = {"hub.mode": "denied", "hub.topic": topic, "hub.reason": self.deny_with}
            status = httpx.get(callback, params=params, timeout=10).status_code
            self.checks.append({"mode": "denied", "topic": topic, "status": status, "echoed": False})
            return
        lease = self.lease_seconds or int(form.get("hub.lease_seconds") or 86400)
        challenge = secrets.token_urlsafe(16)
        params = {"hub.mode": mode, "hub.topic": topic, "hub.challenge": challenge}
        if mode == "subscribe":
            params["hub.lease_seconds"] = str(lease)
        response = httpx.get(callback, params=params, timeout=10)
        echoed = 200 <= response.status_code < 300 and response.text == challenge
        self.checks.append({"mode": mode, "topic": topic, "status": response.status_code, "echoed": echoed})
        if not echoed:
            return
        with self._lock:
            if mode == "subscribe":
                secret = form.get("hub.secret", "")
                self.subscriptions[(callback, topic)] = Subscription(
                    callback, topic, secret, lease, time.time()
                )
            else:
                self.subscriptions.pop((callback, topic), None)

    def verification(self, callback: str, topic: str, mode: str = "subscribe") -> httpx.Response:
        """A verification GET the hub makes up (for a request nobody sent)."""
        params = {"hub.mode": mode, "hub.topic": topic, "hub.challenge": "made-up", "hub.lease_seconds": "60"}
        return httpx.get(callback, params=params, timeout=10)

    def subscribed(self, topic: str) -> list[Subscription]:
        """The live verified subscriptions to a topic."""
        now = time.time()
        with self._lock:
            return [
                s
                for s in self.subscriptions.values()
                if s.topic == topic and now < s.verified_at + s.lease_seconds
            ]

    def wait_subscribed(self, topic: str, timeout: float = 20.0, count: int = 1) -> Subscription:
        """The newest verified subscription to topic, once there is one (after count verifications)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            verified = [
                c for c in self.checks if c["topic"] == topic and c["mode"] == "subscribe" and c["echoed"]
            ]
            if len(verified) >= count and (live := self.subscribed(topic)):
                return max(live, key=lambda s: s.verified_at)
            time.sleep(0.05)
        raise AssertionError(f"no verified subscription to {topic} within {timeout} s")

    def publish(
        self,
        topic: str,
        body: bytes,
        *,
        content_type: str = "application/rss+xml",
        secret: str | None = "",
        method: str = "sha256",
    ) -> list[int]:
        """Distribute body to every subscriber of topic; their answers' status codes. secret=""
        signs with each subscription's own, None sends no signature, anything else signs with it."""
        statuses = []
        for sub in self.subscribed(topic):
            headers = {"Content-Type": content_type}
            key = sub.secret if secret == "" else secret
            if key is not None:
                digest = hmac.new(key.encode(), body, getattr(hashlib, method)).hexdigest()
                headers["X-Hub-Signature"] = f"{method}={digest}"
            statuses.append(httpx.post(sub.callback, content=body, headers=headers, timeout=30).status_code)
        return statuses
