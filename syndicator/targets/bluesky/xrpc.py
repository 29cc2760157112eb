"""XRPC plumbing of the Bluesky target: what each error answer means, and the per-process sessions.

Errors (the explicit table STYLE.md asks for): the XRPC error name decides where it is specific,
otherwise the HTTP status. ``MAYBE_POSTED``: the service answered an error after the request
reached it (500 from the PDS, 502/504 from its gateway); a createRecord may have committed, so it
is OutcomeUnknown there, and a plain retry for every other call (logging in or uploading a blob
publishes nothing).

Sessions are kept in this process's memory only (never stored, never logged): a dict keyed by
target, service, handle and a digest of the password, with one lock per key so concurrent
renewals in one process collapse into one. A forked child (Celery prefork) starts empty.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import httpx

from syndicator.errors import (
    DeliveryError,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    TargetBroken,
    TransientError,
)
from syndicator.redact import redact

RATE_LIMIT_FALLBACK = 60.0  # a 429 without ratelimit-reset: wait a minute rather than hammer it
SESSION_ERRORS = frozenset({"ExpiredToken", "InvalidToken"})  # the token, not the request, was refused

MAYBE_POSTED = "maybe posted"
BY_NAME: dict[str, tuple[type[DeliveryError] | str, str]] = {
    "AuthenticationRequired": (
        TargetBroken,
        "the handle or app password was refused: set a valid app password in {env}",
    ),
    "AccountTakedown": (TargetBroken, "the account was taken down by its service"),
    "AccountDeactivated": (TargetBroken, "the account is deactivated: reactivate it to post"),
    "ExpiredToken": (
        TargetBroken,
        "even a new session was refused: check service_url and the server's clock",
    ),
    "InvalidToken": (
        TargetBroken,
        "even a new session was refused: check service_url and the server's clock",
    ),
    "RateLimitExceeded": (RateLimited, "the service asks us to slow down"),
    "InvalidRequest": (PermanentError, "the service refused this post"),
    "PayloadTooLarge": (PermanentError, "the request is larger than the service accepts"),
    "MethodNotImplemented": (TargetBroken, "service_url {service} does not implement this method"),
}
BY_STATUS: dict[int, tuple[type[DeliveryError] | str, str]] = {
    400: (PermanentError, "the service refused the request"),
    401: (TargetBroken, "not authorized: check the handle and the app password in {env}"),
    403: (TargetBroken, "the account may not do this"),
    404: (TargetBroken, "no such XRPC method at {service}: check service_url"),
    413: (PermanentError, "the request is larger than the service accepts"),
    429: (RateLimited, "the service asks us to slow down"),
    500: (MAYBE_POSTED, "the service failed"),
    502: (MAYBE_POSTED, "the service's gateway got no good answer"),
    503: (TransientError, "the service is unavailable; nothing was done"),
    504: (MAYBE_POSTED, "the service's gateway timed out"),
}


@dataclass
class Session:
    """One login: tokens (never printed: repr=False) and who they belong to."""

    did: str
    handle: str
    access_jwt: str = field(repr=False)
    refresh_jwt: str = field(repr=False)


# --- the per-process session cache -----------------------------------------------------------------

_cache_lock = threading.Lock()
sessions: dict[tuple, Session] = {}
_key_locks: dict[tuple, threading.Lock] = {}


def _forget_all_sessions() -> None:
    """After a fork (Celery prefork): the child starts with no sessions and fresh, unheld locks."""
    global _cache_lock
    _cache_lock = threading.Lock()
    sessions.clear()
    _key_locks.clear()


os.register_at_fork(after_in_child=_forget_all_sessions)


def key_lock(key: tuple) -> threading.Lock:
    """The lock that serialises logging in and refreshing for one session key."""
    with _cache_lock:
        return _key_locks.setdefault(key, threading.Lock())


def classify(response: httpx.Response, nsid: str, *, posting: bool, env: str, service: str) -> DeliveryError:
    """The DeliveryError for an XRPC error answer, by BY_NAME then BY_STATUS; redacted.

    ``posting``: whether the call could have published (createRecord): it decides MAYBE_POSTED."""
    status, name = response.status_code, error_name(response)
    said = redact(error_message(response))[:300]
    if 300 <= status < 400:
        cls, advice = TargetBroken, "the XRPC API does not redirect: check service_url {service}"
    elif name in BY_NAME and status < 500:
        cls, advice = BY_NAME[name]
    else:
        default = (
            (PermanentError, "the service refused the request")
            if status < 500
            else (MAYBE_POSTED, "the service failed")
        )
        cls, advice = BY_STATUS.get(status, default)
    advice = advice.format(env=env, service=service)
    said = f"{said}; " if said else ""
    text = f"Bluesky {nsid}: {name or 'HTTP ' + str(status)} ({status}): {said}{advice}"
    if cls is RateLimited or status == 429:
        return RateLimited(text, retry_after=retry_after(response.headers), http_status=status)
    if cls == MAYBE_POSTED:
        cls = OutcomeUnknown if posting else TransientError
        text += "; the post may be published" if posting else "; nothing was posted"
    return cls(text, http_status=status)  # type: ignore[operator]


def session_refused(response: httpx.Response) -> bool:
    """Whether the service refused the session's token rather than the request: an expired or
    invalid token (400 ExpiredToken/InvalidToken, as the PDS answers), or any 401 on a call that
    carried one. Auth is checked before the method runs, so nothing was done."""
    status = response.status_code
    return status == 401 or (status == 400 and error_name(response) in SESSION_ERRORS)


def _error_body(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def error_name(response: httpx.Response) -> str:
    """XRPC's error name (``{"error": "ExpiredToken", "message": …}``), or ""."""
    return str(_error_body(response).get("error") or "")


def error_message(response: httpx.Response) -> str:
    """XRPC's human-readable ``message``, or ""."""
    return str(_error_body(response).get("message") or "")


def retry_after(headers: httpx.Headers, now: float | None = None) -> float:
    """Seconds until ``ratelimit-reset`` (unix seconds), else Retry-After, else a minute."""
    for name, absolute in (("ratelimit-reset", True), ("retry-after", False)):
        try:
            value = float(headers.get(name, ""))
        except ValueError:
            continue
        seconds = value - (now if now is not None else time.time()) if absolute else value
        return max(seconds, 1.0)
    return RATE_LIMIT_FALLBACK
