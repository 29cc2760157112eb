"""X's error answers in one table (TARGETS.md section 3, "Errors: retry vs give up"), its rate-limit
wait, and tweepy's unwrapped ``requests`` errors on the transport side.

5xx: X answered, so the request reached it. 503 is "over capacity, try again later" (X's
response-code docs): refused before any work, so a retry is safe. 500/502/504 come from deeper in
the stack ("something is broken", "down or being upgraded", "internal failure"): the tweet may
exist, and a blind retry could post it twice, so the delivery waits as uncertain; an admin's retry
is then safe because X refuses the identical text as a duplicate (403, below).
"""

from __future__ import annotations

from collections.abc import Mapping

import requests
import urllib3.exceptions

from syndicator.errors import (
    DeliveryError,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    TargetBroken,
    TransientError,
)
from syndicator.redact import redact
from syndicator.targets.faults import ErrorTable, Rule, as_delivery_error, seconds_until

# The 24-hour caps (posts per user / per app) show only in these headers (TARGETS.md section 3).
DAILY_LIMITS = ("x-user-limit-24hour", "x-app-limit-24hour")


# X refuses identical text. After an attempt whose outcome was unknown this means the earlier one
# went out, but X returns no id for it (TARGETS.md: give up, "possibly posted"): a plain
# PermanentError, told apart from the other 403 (no write access) by its words.
DUPLICATE = Rule(
    PermanentError,
    "duplicate content",
    "an identical tweet exists, so this was probably posted already; check the account's timeline",
)
ERRORS = ErrorTable(
    # 187 is v1.1's "Status is a duplicate"; v2 sends no code, only the detail text.
    by_code={187: DUPLICATE},
    by_text=(("duplicate content", DUPLICATE),),
    by_status={
        400: Rule(PermanentError, "tweet rejected", "the content or a media id is invalid"),
        401: Rule(TargetBroken, "credentials rejected", "re-issue the API key/secret and access token"),
        403: Rule(
            TargetBroken, "posting refused", "check the app has Read+Write access and is not suspended"
        ),
        404: Rule(PermanentError, "not found", "the endpoint or a referenced object does not exist"),
        429: Rule(RateLimited, "rate limited", "retrying when the limit resets"),
        500: Rule(OutcomeUnknown, "internal server error", "the tweet may or may not be posted"),
        502: Rule(OutcomeUnknown, "down or being upgraded", "the tweet may or may not be posted"),
        503: Rule(TransientError, "over capacity", "nothing was posted; retrying later"),
        504: Rule(OutcomeUnknown, "gateway timeout inside X", "the tweet may or may not be posted"),
    },
    # X never redirects its API: base_url points at the wrong place, and nothing was handled.
    unlisted_3xx=Rule(TargetBroken, "redirected to {where!r}", "check base_url"),
    unlisted_4xx=Rule(PermanentError, "request refused", "not retrying"),
    unlisted_5xx=Rule(OutcomeUnknown, "server error", "the tweet may or may not be posted"),
)

# Transport failures (tweepy leaves requests' errors unwrapped), as in syndicator.targets.http.
NOT_REACHED = Rule(TransientError, "could not reach the API", "nothing was sent; retrying later")
NO_ANSWER = Rule(OutcomeUnknown, "no complete answer", "it may have been posted")


def rate_limit_wait(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds until the limit that was hit resets: the 15-minute window, or a 24-hour cap at 0.

    The latest reset wins: waking at the 15-minute one while a daily cap is spent only meets
    another 429. None when no reset is readable (the base's fallback applies).
    """
    resets = [headers.get("x-rate-limit-reset")]
    for prefix in DAILY_LIMITS:
        if str(headers.get(f"{prefix}-remaining", "")).strip() == "0":
            resets.append(headers.get(f"{prefix}-reset"))
    waits = [wait for wait in (seconds_until(reset, now=now) for reset in resets) if wait is not None]
    return max(waits) if waits else None


def transport_error(exc: Exception, label: str, action: str, *, publishing: bool) -> DeliveryError:
    """A requests/urllib3 failure: never sent → TransientError; otherwise it may have been sent,
    which only a publishing call turns into OutcomeUnknown."""
    never_sent = isinstance(exc, requests.ConnectionError) and _never_sent(exc)
    rule = NOT_REACHED if never_sent else NO_ANSWER
    advice = rule.advice if publishing or never_sent else "nothing was posted; retrying later"
    text = f"{label} {action}: {rule.reason}: {type(exc).__name__}: {redact(str(exc))[:300]}; {advice}"
    return as_delivery_error(rule, text, publishing=publishing)


def _never_sent(exc: requests.ConnectionError) -> bool:
    """Whether a requests ConnectionError happened before the request could leave."""
    if isinstance(
        exc, requests.ConnectTimeout | requests.exceptions.SSLError | requests.exceptions.ProxyError
    ):
        return True
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, urllib3.exceptions.MaxRetryError):
        reason = reason.reason
    # NewConnectionError covers refused connections and DNS failures (NameResolutionError).
    return isinstance(reason, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError)
