"""Downloading a post's image for a network that wants the bytes (an upload, a link card's thumbnail).

The URL comes from a feed, so the download takes the feed fetcher's guarded path: only public
addresses (syndicator.netguard, ``SYNDICATOR_FEED_ALLOW_PRIVATE`` for more), the name lookup
within the deadline, the connection pinned to the address that was checked (a second lookup could
answer differently: DNS rebinding), with the original Host header and TLS server name; no
redirects (each hop would need the check again), an image content type, a size cap enforced while
reading, and one deadline for the whole download.
"""

from __future__ import annotations

import time

import httpx
from django.conf import settings

from syndicator import netguard
from syndicator.errors import FeedError
from syndicator.tls import ssl_context


def download_image(url: str, *, timeout: float, max_bytes: int) -> tuple[bytes, str]:
    """The image at ``url`` and its content type; ValueError saying why when it cannot be used."""
    if not url.lower().startswith(("http://", "https://")):
        raise ValueError("the image URL is not http(s)")
    try:
        allowance = netguard.Allowance.parse(settings.SYNDICATOR_FEED_ALLOW_PRIVATE)
        addresses = netguard.check(httpx.URL(url), allowance, timeout=timeout)
    except FeedError as exc:
        raise ValueError(str(exc)) from None
    deadline = time.monotonic() + timeout
    # The first checked address; a second lookup by httpx could answer with another one.
    pinned, host_header, tls_name = netguard.pin(httpx.URL(url), addresses[0])
    headers = {"User-Agent": settings.SYNDICATOR_USER_AGENT, **host_header}
    try:
        with (
            httpx.Client(timeout=timeout, follow_redirects=False, verify=ssl_context()) as http,
            http.stream("GET", pinned, headers=headers, extensions=tls_name) as response,
        ):
            if response.status_code != 200:
                raise ValueError(f"the image answered HTTP {response.status_code}")
            content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if not content_type.startswith("image/"):
                raise ValueError(f"the image URL serves {content_type or 'no content type'}, not an image")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise ValueError(f"the image is larger than {max_bytes} bytes")
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise ValueError(f"the image is larger than {max_bytes} bytes")
                if time.monotonic() > deadline:  # a server dripping bytes must not hold the delivery
                    raise ValueError(f"the image took longer than {timeout:g} s")
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise ValueError(f"the image could not be fetched: {type(exc).__name__}") from None
    return b"".join(chunks), content_type
