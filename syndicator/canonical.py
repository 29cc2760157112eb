"""Canonical links: one article's identity across the feeds of one site (#12, docs/article-life.md).

Two links name the same article when they differ only in what a site or a newsletter tool adds
or varies without changing the page: scheme and host case, the default port, a trailing slash,
tracking parameters (utm_*, fbclid, gclid, mc_cid, mc_eid, ref, …), the #fragment, and the order
of the remaining query parameters. The user info (user:password@) is never part of an identity
(and never stored). Anything that does not parse as an http(s) URL with a host, or is longer
than a stored URL (2000), has no canonical form: "" (no identity beats a wrong one).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MAX_URL = 2000  # Post.url's column
DEFAULT_PORTS = {"http": 80, "https": 443}
# Parameters that say where a click came from, not which page: the ones the big trackers add
# (Google Analytics/Ads, Facebook, Mailchimp, Microsoft, Yandex, Instagram, HubSpot, Matomo).
TRACKING = frozenset(
    {
        "fbclid",
        "gclid",
        "gclsrc",
        "dclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "yclid",
        "igshid",
        "mc_cid",
        "mc_eid",
        "ref",
        "ref_src",
        "_ga",
        "_gl",
        "_hsenc",
        "_hsmi",
        "mkt_tok",
        "spm",
    }
)
TRACKING_PREFIXES = ("utm_", "pk_", "mtm_")


def canonical_url(url: str) -> str:
    """The canonical form of an article link, or "" when it has none (see the module docstring)."""
    url = (url or "").strip()
    if not url or len(url) > MAX_URL or any(ord(c) < 33 for c in url):
        return ""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = parts.hostname or ""  # lowercased by urlsplit, without brackets and user info
        port = parts.port  # ValueError for a port out of range or not a number
    except ValueError:
        return ""
    if scheme not in DEFAULT_PORTS or not host:
        return ""
    if ":" in host:  # IPv6 literal
        netloc = f"[{host}]"
    else:
        try:
            # IDN: the A-label form, so "Bücher.example" and "xn--bcher-kva.example" are one host.
            netloc = host.encode("idna").decode("ascii") if not host.isascii() else host
        except UnicodeError:
            return ""
        netloc = netloc.rstrip(".")
    if port is not None and port != DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    path = parts.path.rstrip("/")
    query = sorted(
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k.lower() not in TRACKING and not k.lower().startswith(TRACKING_PREFIXES)
    )
    result = urlunsplit((scheme, netloc, path or "", urlencode(query), ""))
    return result if len(result) <= MAX_URL else ""


def guid_key(guid: str, site: str) -> str:
    """The cross-feed key of an item's guid on a site (the feed's host).

    A guid that is a link (WordPress's ``https://site/?p=123``) is canonicalised like one, so the
    same post's guid in the main feed and a category feed meet; any other guid (``tag:…``, a
    number) is only unique within its site, so the site is part of the key.
    """
    guid = (guid or "").strip()
    if not guid:
        return ""
    as_url = canonical_url(guid)
    if as_url:
        return as_url
    key = f"guid:{site.lower()}:{guid}"
    return key if len(key) <= MAX_URL else ""


def site_of(feed_url: str) -> str:
    """The site a feed belongs to: its host, lowercased ("" for garbage)."""
    try:
        return (urlsplit(feed_url).hostname or "").rstrip(".")
    except ValueError:
        return ""
