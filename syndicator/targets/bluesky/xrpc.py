"""XRPC plumbing of the Bluesky target: its error table, and the per-process sessions.

Errors: one ``ErrorTable``, ``ERRORS``. The XRPC error name (``{"error": "ExpiredToken",
"message": …}``) decides where it is specific, otherwise the HTTP status. A 5xx after the request
reached the service (500 from the PDS, 502/504 from its gateway) may have let a createRecord
commit: OutcomeUnknown, which the contract turns into a plain retry for every call that publishes
nothing (logging in, uploading a blob, a look-up). Its advice says which, through ``{unsure}``.

A token the service refused (``SessionRefused``) is not a failure of the request: the adapter
renews the session and repeats the call, which never ran (auth is checked before the method).
Only when even a new session is refused does it reach the delivery, as TargetBroken.

Sessions are kept in this process's memory only (never stored, never logged): a dict keyed by
target, service, handle and a digest of the password, with one lock per key so concurrent
renewals in one process collapse into one. A forked child (Celery prefork) starts empty.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

import httpx

from syndicator.errors import OutcomeUnknown, PermanentError, RateLimited, TargetBroken, TransientError
from syndicator.targets.faults import ErrorTable, Rule, json_object


class SessionRefused(TargetBroken):
    """The service refused the session's token (expired, invalid), not the request: renew the
    session and repeat the call. Raised only when even a brand-new session is refused."""


NEW_SESSION_REFUSED = Rule(
    SessionRefused, "even a new session was refused", "check base_url {service} and the server's clock"
)
ERRORS = ErrorTable(
    by_code={
        "AuthenticationRequired": Rule(
            TargetBroken, "the handle or app password was refused", "set a valid app password in {env}"
        ),
        "AccountTakedown": Rule(TargetBroken, "the account was taken down by its service"),
        "AccountDeactivated": Rule(TargetBroken, "the account is deactivated", "reactivate it to post"),
        # What the PDS answers (400) for a token it no longer takes; reached only after a renewal.
        "ExpiredToken": NEW_SESSION_REFUSED,
        "InvalidToken": NEW_SESSION_REFUSED,
        "RateLimitExceeded": Rule(RateLimited, "the service asks us to slow down"),
        "InvalidRequest": Rule(PermanentError, "the service refused this post"),
        "PayloadTooLarge": Rule(PermanentError, "the request is larger than the service accepts"),
        "MethodNotImplemented": Rule(TargetBroken, "base_url {service} does not implement this method"),
    },
    by_status={
        400: Rule(PermanentError, "the service refused the request"),
        401: Rule(TargetBroken, "not authorized", "check the handle and the app password in {env}"),
        403: Rule(TargetBroken, "the account may not do this"),
        404: Rule(TargetBroken, "no such XRPC method", "check base_url {service}"),
        413: Rule(PermanentError, "the request is larger than the service accepts"),
        # Bluesky's rate limits answer 429 with RateLimit-* headers (docs.bsky.app, "Rate Limits");
        # its PDS sends ratelimit-reset as a Unix time, the IETF draft as seconds: faults.retry_after
        # tells the two apart by size.
        429: Rule(RateLimited, "the service asks us to slow down"),
        500: Rule(OutcomeUnknown, "the service failed", "{unsure}"),
        502: Rule(OutcomeUnknown, "the service's gateway got no good answer", "{unsure}"),
        # The PDS answers 503 (NotEnoughResources) before it does anything.
        503: Rule(TransientError, "the service is unavailable; nothing was done", "retrying later"),
        504: Rule(OutcomeUnknown, "the service's gateway timed out", "{unsure}"),
    },
    unlisted_3xx=Rule(TargetBroken, "redirected", "the XRPC API does not redirect: check base_url {service}"),
    unlisted_4xx=Rule(PermanentError, "the service refused the request"),
    unlisted_5xx=Rule(OutcomeUnknown, "the service failed", "{unsure}"),
)
RATE_LIMIT_HEADERS = ("ratelimit-reset", "retry-after")


def rule_for(response: httpx.Response) -> Rule:
    """The rule of an XRPC error answer. A 5xx is decided by its status: its name (the PDS's
    InternalServerError, the gateway's UpstreamFailure) says which failure, not what was done."""
    status = response.status_code
    return ERRORS.rule(status, (error_name(response) or None) if status < 500 else None)


def session_refused(response: httpx.Response) -> bool:
    """Whether the service refused the session's token rather than the request: a token it no
    longer takes (the table's SessionRefused: 400 ExpiredToken/InvalidToken, as the PDS answers),
    or any 401 on a call that carried one. Auth is checked before the method runs: nothing was done."""
    if response.is_success:
        return False
    return response.status_code == 401 or issubclass(rule_for(response).error, SessionRefused)


def error_name(response: httpx.Response) -> str:
    """XRPC's error name (``{"error": "ExpiredToken", "message": …}``), or ""."""
    return str(json_object(response.content).get("error") or "")


def error_message(response: httpx.Response) -> str:
    """XRPC's human-readable ``message``, or ""."""
    return str(json_object(response.content).get("message") or "")


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
