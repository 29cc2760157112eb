"""Failed logins and bad API tokens: counted per client address, logged, refused past a limit.

The counts live in Django's cache, which settings point at the Redis every mode has (the broker's,
or the private one of ``syndicator run``), so all gunicorn workers and web machines share them: a
per-process count would let an attacker multiply the limit by the number of workers. A count is a
fixed window from the first failure (``cache.add`` then ``incr``, both atomic in Redis). When the
cache cannot be reached, logins and tokens still work (failing closed would lock every admin out
while Redis restarts) and the outage is logged.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

from syndicator.errors import SyndicatorError

log = logging.getLogger("syndicator.auth")


class Throttled(SyndicatorError):
    """Too many failures from one client address: refused until the window ends."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def client_address(request: HttpRequest | None) -> str:
    """The address a request comes from, as the WSGI server saw it."""
    return (request.META.get("REMOTE_ADDR") if request is not None else "") or "unknown"


def _key(kind: str, address: str) -> str:
    return f"syndicator:authfail:{kind}:{address}"


def check(kind: str, request: HttpRequest | None) -> None:
    """Raise Throttled when this client failed ``kind`` (login, token) too often in the window."""
    limit, window = settings.SYNDICATOR_AUTH_FAILURES, settings.SYNDICATOR_AUTH_WINDOW
    address = client_address(request)
    try:
        failures = cache.get(_key(kind, address), 0)
    except Exception:  # the cache's Redis is away: see the module docstring
        log.warning("the failed-%s counter cannot be read (cache unreachable); not throttling", kind)
        return
    if failures >= limit:
        minutes = max(math.ceil(window / 60), 1)
        log.warning("refused a %s from %s: %d failures in the last %d s", kind, address, failures, window)
        raise Throttled(
            f"too many failed {'logins' if kind == 'login' else 'API tokens'} from your address: "
            f"try again in {minutes} minute{'s' if minutes != 1 else ''}",
            retry_after=int(window),
        )


def failed(kind: str, request: HttpRequest | None, username: str = "") -> None:
    """Count and log one failure of ``kind`` from this request's client."""
    window = settings.SYNDICATOR_AUTH_WINDOW
    address = client_address(request)
    key = _key(kind, address)
    try:
        cache.add(key, 0, timeout=window)
        failures = cache.incr(key)
    except ValueError:  # the key expired between add and incr: this failure opens a new window
        cache.set(key, failures := 1, timeout=window)
    except Exception:
        log.warning("failed %s from %s not counted (cache unreachable)", kind, address)
        return
    who = f" for user {username!r}" if username else ""
    # Never the token or the password: only who, from where and how often.
    log.warning("failed %s%s from %s (%d in %d s)", kind, who, address, failures, window)


def count_failed_login(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **_: Any
) -> None:
    """Every failed authenticate() (the admin login, any other) counts against the client address.

    Connected in SyndicatorConfig.ready, not by the admin module: the admin is loaded on first
    use (the CLI never loads it), and a failure must count in every process."""
    failed("login", request, str(credentials.get("username", ""))[:150])
