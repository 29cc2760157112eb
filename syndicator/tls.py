"""One TLS context for every outgoing HTTPS client."""

from __future__ import annotations

import functools
import ssl


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """The default verifying context, built once: loading the CA bundle costs ~20 ms per client
    (bench/pipeline.py measured it as most of a 304 poll)."""
    return ssl.create_default_context()
