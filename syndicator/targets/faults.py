"""How a network's error answers become our errors: one table shape, one retry-after parser.

Each network declares an ``ErrorTable``: its API's error codes, fragments of its error texts and
HTTP statuses, each mapped to a ``Rule`` — the error class (TransientError, RateLimited,
PermanentError, TargetBroken or OutcomeUnknown) and the reason shown to admins. The base adapter
(``syndicator.targets.base.Adapter.network_error``) turns a rule into the exception, applying the
rules every network shares: only a publishing call can be OutcomeUnknown (a failed look-up or
login left nothing behind), and a rate limit without a usable wait falls back to
``RATE_LIMIT_FALLBACK``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

from syndicator.errors import DeliveryError, OutcomeUnknown, PermanentError, TransientError

# A 429 without a header we can read: wait a minute rather than hammer the network.
RATE_LIMIT_FALLBACK = 60.0
# A header value at least this large is a Unix time ("reset at"), not a number of seconds: no
# network asks for a wait of 31 years, and every reset epoch since 2001 is larger.
_EPOCH_FLOOR = 1_000_000_000


@dataclass(frozen=True)
class Rule:
    """What one error answer means: the class that decides the retry policy, and why."""

    error: type[DeliveryError]
    reason: str
    advice: str = ""


@dataclass(frozen=True)
class ErrorTable:
    """A network's error answers, looked up in order: API code, error text, HTTP status, class."""

    by_code: Mapping[int | str, Rule] = field(default_factory=dict)
    # (lower-case fragment of the error text, rule); the first fragment found wins.
    by_text: tuple[tuple[str, Rule], ...] = ()
    by_status: Mapping[int, Rule] = field(default_factory=dict)
    unlisted_3xx: Rule = Rule(PermanentError, "redirected", "the API does not redirect: check base_url")
    unlisted_4xx: Rule = Rule(PermanentError, "request refused")
    # A 5xx is an answer after the request arrived: a publishing call may have taken effect.
    unlisted_5xx: Rule = Rule(OutcomeUnknown, "server error", "it may or may not have been posted")

    def rule(self, status: int, code: int | str | None = None, text: str = "") -> Rule:
        """The rule for an error answer: by its API code, its text, its status, its status class."""
        if code is not None and code in self.by_code:
            return self.by_code[code]
        lowered = text.lower()
        for fragment, rule in self.by_text:
            if fragment in lowered:
                return rule
        if status in self.by_status:
            return self.by_status[status]
        if status >= 500:
            return self.unlisted_5xx
        if 300 <= status < 400:
            return self.unlisted_3xx
        return self.unlisted_4xx


def as_delivery_error(
    rule: Rule,
    text: str,
    *,
    publishing: bool,
    http_status: int | None = None,
    retry_after: float | None = None,
) -> DeliveryError:
    """The exception a rule stands for, with the rules shared by every network applied."""
    cls = rule.error
    if issubclass(cls, OutcomeUnknown) and not publishing:
        # Nothing public can result from a failed look-up, login or upload: a plain retry is safe.
        cls = TransientError
    exc = cls(text, http_status=http_status)
    if getattr(cls, "waits", False):
        exc.retry_after = retry_after if retry_after and retry_after > 0 else RATE_LIMIT_FALLBACK
    return exc


def seconds_until(value: object, *, now: float | None = None) -> float | None:
    """Seconds to wait from one header or body value, or None when it says nothing usable.

    Accepts a number of seconds (``Retry-After: 30``), a Unix reset time (``x-rate-limit-reset:
    1767225600``; told apart by size), an HTTP date (``Retry-After: Wed, 21 Oct 2026 07:28:00
    GMT``, RFC 9110 §10.2.3) and an ISO 8601 time (some servers' ``X-RateLimit-Reset``).
    """
    if value is None or isinstance(value, bool):
        return None
    current = time.time() if now is None else now
    text = str(value).strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None:
        seconds = number - current if number >= _EPOCH_FLOOR else number
        return max(seconds, 1.0) if seconds == seconds else None  # NaN says nothing
    moment: datetime | None = None
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
    if moment is None or moment.tzinfo is None:
        return None
    return max(moment.timestamp() - current, 1.0)


def retry_after(
    headers: Mapping[str, str],
    names: tuple[str, ...] = ("retry-after",),
    *,
    body_value: object = None,
    now: float | None = None,
) -> float | None:
    """The wait a rate-limited answer asks for: a body value first, then each header in order."""
    for value in (body_value, *(headers.get(name) for name in names)):
        seconds = seconds_until(value, now=now)
        if seconds is not None:
            return seconds
    return None


def json_object(body: bytes | str | None) -> dict[str, Any]:
    """An error body decoded as a JSON object, or {} (an HTML page from a proxy, say)."""
    if not body:
        return {}
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}
