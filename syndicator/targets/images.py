"""Downloading a post's image for a network that wants the bytes (X, Mastodon, a Bluesky card).

The URL comes from a feed, so: only public addresses (syndicator.netguard,
``SYNDICATOR_FEED_ALLOW_PRIVATE`` for more), the name lookup within the deadline, no redirects
(each hop would need the check again; not pinned to the checked address, unlike feeds), an image
content type, a size cap enforced while reading, and one deadline for the whole download.
"""

from __future__ import annotations

import time

import httpx
from django.conf import settings

from syndicator import netguard
from syndicator.errors import FeedError


def download_image(url: str, *, timeout: float, max_bytes: int) -> tuple[bytes, str]:
    """The image at ``url`` and its content type; ValueError saying why when it cannot be used."""
    if not url.lower().startswith(("http://", "https://")):
        raise ValueError("the image URL is not http(s)")
    try:
        allowance = netguard.Allowance.parse(settings.SYNDICATOR_FEED_ALLOW_PRIVATE)
        netguard.check(httpx.URL(url), allowance, timeout=timeout)
    except FeedError as exc:
        raise ValueError(str(exc)) from None
    deadline = time.monotonic() + timeout
    headers = {"User-Agent": settings.SYNDICATOR_USER_AGENT}
    try:
        with (
            httpx.Client(timeout=timeout, follow_redirects=False, headers=headers) as http,
            http.stream("GET", url) as response,
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
