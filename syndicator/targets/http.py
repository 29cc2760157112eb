"""HTTP plumbing shared by the adapters that speak httpx: one client shape, one error mapping.

Which side of the wire an error happened on decides the class: a request that never left
(connect refused, connect timeout, pool timeout) is safe to retry, so TransientError; once the
request may have reached the network (read timeout, connection dropped mid-answer) a retry could
post twice, so OutcomeUnknown.
"""

from __future__ import annotations

from typing import Any

import httpx
from django.conf import settings

from syndicator.errors import OutcomeUnknown, TransientError
from syndicator.redact import redact
from syndicator.tls import ssl_context

NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
MAYBE_SENT = (
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.RemoteProtocolError,
    httpx.ReadError,
    httpx.WriteError,
)


def client(
    base_url: str, *, timeout: float | None = None, headers: dict[str, str] | None = None
) -> httpx.Client:
    """An httpx client for one network: base URL, bounded timeouts, no redirects, our user agent."""
    timeout = timeout or settings.SYNDICATOR_TARGET_TIMEOUT
    return httpx.Client(
        base_url=base_url.rstrip("/"),
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        headers={"User-Agent": settings.SYNDICATOR_USER_AGENT, **(headers or {})},
        follow_redirects=False,
        verify=ssl_context(),
    )


def request(
    http: httpx.Client, method: str, url: str, *, publishing: bool = True, **kwargs: Any
) -> httpx.Response:
    """Send one request; map transport failures to TransientError or OutcomeUnknown (redacted).

    ``publishing``: whether the call can make something public. Only such a call's lost answer is
    OutcomeUnknown; a lost look-up, login or upload is a plain TransientError.
    """
    unknown = OutcomeUnknown if publishing else TransientError
    try:
        return http.request(method, url, **kwargs)
    except NOT_SENT as exc:
        raise TransientError(f"could not reach the API: {type(exc).__name__}: {redact(str(exc))}") from None
    except MAYBE_SENT as exc:
        raise unknown(
            f"no answer after the request was sent: {type(exc).__name__}: {redact(str(exc))}"
        ) from None
    except httpx.HTTPError as exc:  # anything else from the transport: assume it may have been sent
        raise unknown(f"HTTP error: {type(exc).__name__}: {redact(str(exc))}") from None
