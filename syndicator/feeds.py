"""Fetch, parse and normalize RSS/Atom feeds: no Celery and no database here (the caller stores posts).

``fetch`` does one conditional GET and says whether anything changed; ``parse`` turns a body into
plain data without sanitizing it (DESIGN.md, "Feed parsing cost"); ``sanitize`` cleans the HTML of
the items that turn out to be new.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import html
import io
import mimetypes
import re
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import feedparser
import httpx
import nh3
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from syndicator.errors import FeedFetchError, FeedParseError, FeedTooLarge
from syndicator.redact import redact
from syndicator.tls import ssl_context


@dataclass
class FetchResult:
    """The outcome of one fetch: changed or not, the body if it changed, the validators to keep."""

    status: str  # "not_modified" (HTTP 304), "unchanged" (200, same body hash as before), "ok"
    http_status: int
    body: bytes  # b"" unless status == "ok"
    etag: str
    last_modified: str
    body_hash: str  # sha256 hex; for "not_modified" and "unchanged" the previous one
    final_url: str  # after redirects


@dataclass
class ParsedItem:
    """One feed item as plain data; summary and content are raw HTML until ``sanitize``."""

    guid: str
    url: str
    title: str
    summary: str
    content: str
    author: str
    categories: list[str] = field(default_factory=list)
    image_url: str = ""
    enclosures: list[dict] = field(default_factory=list)
    language: str = ""
    published_at: datetime | None = None


@dataclass
class ParsedFeed:
    """A parsed feed: its own fields and its items in feed order."""

    title: str
    link: str
    language: str
    hub_url: str
    items: list[ParsedItem] = field(default_factory=list)


# --- fetch ---------------------------------------------------------------------------------------

_REDIRECT_STATUSES = {301, 302, 303, 307, 308}
_ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.8"


def _setting(name: str, default: Any) -> Any:
    """A Django setting, or ``default`` where Django is not configured (scripts, benchmarks)."""
    try:
        return getattr(settings, name, default)
    except ImproperlyConfigured:
        return default


def _check_url(url: str) -> None:
    """Refuse anything but an http(s) URL with a host; the message never repeats the URL."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        raise FeedFetchError(f"invalid feed URL: {redact(str(exc))}") from None
    if parts.scheme.lower() not in ("http", "https"):
        shown = parts.scheme or "none"
        raise FeedFetchError(f"unsupported URL scheme {shown!r}: only http and https feeds are fetched")
    if not host:
        raise FeedFetchError("invalid feed URL: no host")


class _Deadline:
    """One wall-clock limit for a whole fetch, redirects included.

    httpx's timeouts bound each socket operation, so a server sending a byte now and then holds a
    fetch for ever. A timer shuts the sockets in use down when the time is up, which ends whatever
    read is blocked (headers or body); the body loop also checks the clock between chunks.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.message = f"timed out: no complete answer within {seconds:g} s"
        self.expires_at = time.monotonic() + seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        return self.expires_at - time.monotonic()

    def check(self) -> None:
        if self.expired or self.remaining() <= 0:
            raise FeedFetchError(self.message)

    def trace(self, event: str, info: dict) -> None:
        """httpcore trace hook: watch each socket as soon as it connects, before any header arrives."""
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            self.watch(info.get("return_value"))

    def watch(self, stream: Any) -> None:
        # A pooled connection (caller's client) fires no connect event; its stream is watched once the
        # response headers are in, from response.extensions["network_stream"].
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            with self._lock:
                self._sockets.append(sock)
                if self.expired:
                    self._abort(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                self._abort(sock)

    @staticmethod
    def _abort(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # already closed, or detached by the TLS wrapper
            sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        self._timer.cancel()


def fetch(
    url: str,
    *,
    etag: str = "",
    last_modified: str = "",
    previous_hash: str = "",
    timeout: float | None = None,
    max_bytes: int | None = None,
    max_redirects: int | None = None,
    client: httpx.Client | None = None,
) -> FetchResult:
    """Fetch a feed with a conditional GET, within a size cap and a wall-clock deadline."""
    timeout = float(_setting("SYNDICATOR_FEED_TIMEOUT", 20.0) if timeout is None else timeout)
    max_bytes = int(_setting("SYNDICATOR_FEED_MAX_BYTES", 10 << 20) if max_bytes is None else max_bytes)
    max_redirects = int(
        _setting("SYNDICATOR_FEED_MAX_REDIRECTS", 5) if max_redirects is None else max_redirects
    )
    _check_url(url)
    headers = {"User-Agent": _setting("SYNDICATOR_USER_AGENT", "syndicator"), "Accept": _ACCEPT}
    # Validators are sent back only if ASCII, as HTTP requires: a server's stray UTF-8 ETag must not
    # make every later fetch of the feed fail while the request is built.
    if etag and etag.isascii():
        headers["If-None-Match"] = etag
    if last_modified and last_modified.isascii():
        headers["If-Modified-Since"] = last_modified
    own_client = client is None
    if client is None:
        client = httpx.Client(follow_redirects=False, timeout=timeout, verify=ssl_context())
    deadline = _Deadline(timeout)
    try:
        current = url
        for _ in range(max_redirects + 1):
            _check_url(current)
            deadline.check()
            with client.stream(
                "GET",
                current,
                headers=headers,
                follow_redirects=False,  # followed here, so each hop's scheme is checked
                timeout=httpx.Timeout(max(deadline.remaining(), 0.001)),
                extensions={"trace": deadline.trace},
            ) as response:
                deadline.watch(response.extensions.get("network_stream"))
                status = response.status_code
                if status in _REDIRECT_STATUSES and response.headers.get("location"):
                    current = urljoin(current, response.headers["location"].strip())
                    continue
                if status == 304:  # a 304 may omit the validators: the ones we sent still hold
                    kept_etag = response.headers.get("etag", etag)
                    kept_last_modified = response.headers.get("last-modified", last_modified)
                    return FetchResult(
                        "not_modified", 304, b"", kept_etag, kept_last_modified, previous_hash, current
                    )
                if not 200 <= status < 300:
                    reason = httpx.codes.get_reason_phrase(status) or response.reason_phrase
                    raise FeedFetchError(f"HTTP {status} {reason}".strip(), http_status=status)
                body = _read_body(response, max_bytes, deadline)
                new_etag = response.headers.get("etag", "")
                new_last_modified = response.headers.get("last-modified", "")
            body_hash = hashlib.sha256(body).hexdigest()
            if previous_hash and body_hash == previous_hash:
                return FetchResult("unchanged", status, b"", new_etag, new_last_modified, body_hash, current)
            return FetchResult("ok", status, body, new_etag, new_last_modified, body_hash, current)
        raise FeedFetchError(f"too many redirects (more than {max_redirects})")
    except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
        raise FeedFetchError(_describe(exc, deadline)) from None
    finally:
        deadline.cancel()
        if own_client:
            client.close()


def _read_body(response: httpx.Response, max_bytes: int, deadline: _Deadline) -> bytes:
    """The decoded body, refused as soon as it passes max_bytes or the deadline passes."""
    declared = response.headers.get("content-length", "")
    # Content-Length counts encoded bytes; only without an encoding does it bound the decoded size.
    if not response.headers.get("content-encoding") and declared.isdigit() and int(declared) > max_bytes:
        raise FeedTooLarge(f"feed larger than {max_bytes} bytes", http_status=response.status_code)
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise FeedTooLarge(f"feed larger than {max_bytes} bytes", http_status=response.status_code)
        chunks.append(chunk)
        deadline.check()
    return b"".join(chunks)


_FAILURE_LABELS = (
    (httpx.ConnectError, "connection failed"),
    (httpx.DecodingError, "could not decode the response body"),
    (httpx.InvalidURL, "invalid feed URL"),
)


def _describe(exc: BaseException, deadline: _Deadline) -> str:
    """A one-line message for a network failure, with any credentials redacted."""
    if deadline.expired:
        return deadline.message
    if isinstance(exc, httpx.TimeoutException):
        step = "connecting" if isinstance(exc, httpx.ConnectTimeout) else "waiting for the server"
        return f"timed out {step} (after {deadline.seconds:g} s)"
    label = next((text for kind, text in _FAILURE_LABELS if isinstance(exc, kind)), type(exc).__name__)
    return redact(f"{label}: {exc}" if str(exc) else label)


# --- parse ---------------------------------------------------------------------------------------

_TAG = re.compile(r"<[^>]*>")
_IMG_SRC = re.compile(r"""<img\b[^>]*?\ssrc\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.IGNORECASE)


def parse(body: bytes, *, base_url: str = "", default_language: str = "") -> ParsedFeed:
    """Parse an RSS or Atom body into plain data, leaving the HTML unsanitized (see ``sanitize``)."""
    # A BytesIO, never the bytes: feedparser takes a bytes argument for a file name first, so a
    # body reading "/etc/passwd" would be read from our disk. No response_headers: a
    # content-location makes feedparser rewrite relative guids against wherever we fetched from
    # (identity must not move with the URL), and a content-type flags correct documents as bozo.
    data = feedparser.parse(io.BytesIO(body), sanitize_html=False, resolve_relative_uris=False)
    if not data.entries and (data.bozo or not data.get("version")):
        reason = data.get("bozo_exception") or ("empty body" if not body.strip() else "no feed element")
        raise FeedParseError(f"not an RSS/Atom feed: {reason}")
    feed = data.feed
    link = _absolute(feed.get("link", ""), base_url)
    language = (feed.get("language") or "").strip() or default_language
    # Relative item links resolve against the document's URL, else the site's link.
    base = base_url or link
    items: list[ParsedItem] = []
    seen: set[str] = set()
    for entry in data.entries:
        item = _item(entry, base, language)
        if item.guid not in seen:  # the same guid twice in one body: the first one wins
            seen.add(item.guid)
            items.append(item)
    hub = next((lnk.get("href", "") for lnk in feed.get("links", []) if lnk.get("rel") == "hub"), "")
    return ParsedFeed(
        title=_plain_text(feed.get("title", ""), feed.get("title_detail", {}).get("type", "")),
        link=link,
        language=language,
        hub_url=_absolute(hub, base_url),
        items=items,
    )


def item_identity(entry: Mapping[str, Any]) -> str:
    """An item's identity: its guid/id, else its link, else a hash of its title and content."""
    for key in ("id", "link"):
        value = str(entry.get(key) or "").strip()
        if value:
            return value
    text = f"{entry.get('title') or ''}\n{_raw_content(entry)}"
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _item(entry: Mapping[str, Any], base: str, feed_language: str) -> ParsedItem:
    content = _raw_content(entry)
    enclosures = []
    for enclosure in entry.get("enclosures") or []:
        url = _absolute(enclosure.get("href") or enclosure.get("url") or "", base)
        if url:
            kind = (enclosure.get("type") or "").strip().lower()
            enclosures.append({"url": url, "type": kind, "length": _length(enclosure.get("length"))})
    categories: list[str] = []
    for tag in entry.get("tags") or []:
        term = _plain_text(tag.get("term") or tag.get("label") or "")
        if term and term not in categories:
            categories.append(term)
    author = (entry.get("author_detail") or {}).get("name") or entry.get("author") or ""
    # dc:language on the item, else its xml:lang (Atom), else the feed's language.
    language = (
        entry.get("language")
        or (entry.get("title_detail") or {}).get("language")
        or (entry.get("summary_detail") or {}).get("language")
        or feed_language
    )
    return ParsedItem(
        guid=item_identity(entry),
        url=_absolute(entry.get("link", ""), base),
        title=_plain_text(entry.get("title", ""), (entry.get("title_detail") or {}).get("type", "")),
        summary=entry.get("summary") or "",
        content=content,
        author=_plain_text(author),
        categories=categories,
        image_url=_image_url(entry, enclosures, content, base),
        enclosures=enclosures,
        language=language.strip(),
        published_at=_published(entry),
    )


def _raw_content(entry: Mapping[str, Any]) -> str:
    """content:encoded / Atom content (the HTML one when there are several), else the summary."""
    contents = entry.get("content") or []
    for content in contents:
        if "html" in (content.get("type") or ""):
            return content.get("value") or ""
    if contents:
        return contents[0].get("value") or ""
    return entry.get("summary") or ""


def _image_url(entry: Mapping[str, Any], enclosures: list[dict], content: str, base: str) -> str:
    """media:content or media:thumbnail image, else an image enclosure, else the first <img> in content."""
    for media in entry.get("media_content") or []:
        url = _absolute(media.get("url") or "", base)
        if url and _is_image(media.get("medium"), media.get("type"), url):
            return url
    for thumbnail in entry.get("media_thumbnail") or []:
        if url := _absolute(thumbnail.get("url") or "", base):
            return url
    for enclosure in enclosures:
        if enclosure["type"].startswith("image/"):
            return enclosure["url"]
    for match in _IMG_SRC.finditer(content):
        src = html.unescape(next(group for group in match.groups() if group is not None))
        if url := _absolute(src, base):  # skips data: and the like, on to the next <img>
            return url
    return ""


def _is_image(medium: str | None, kind: str | None, url: str) -> bool:
    if medium:
        return medium.lower() == "image"
    if kind:
        return kind.lower().startswith("image/")
    guessed, _ = mimetypes.guess_type(urlsplit(url).path)
    return bool(guessed and guessed.startswith("image/"))


def _absolute(url: str, base: str) -> str:
    """url made absolute against base; "" unless it is http(s), which drops javascript:, data: etc."""
    url = (url or "").strip()
    if not url:
        return ""
    try:
        joined = urljoin(base, url) if base else url
        parts = urlsplit(joined)
        host = parts.hostname
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return ""
    return joined if parts.scheme.lower() in ("http", "https") and host else ""


def _plain_text(value: str, content_type: str = "") -> str:
    """Text with tags dropped (when it is HTML), entities unescaped and whitespace collapsed."""
    if "html" in content_type:
        value = _TAG.sub("", value)
    # Unescaped even when feedparser calls it plain: WordPress double-escapes titles (&amp;#8217;).
    return " ".join(html.unescape(value or "").split())


def _length(value: Any) -> int | None:
    """An enclosure's length in bytes; None when absent, garbage or 0 (which feeds write for unknown)."""
    try:
        length = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return length if length > 0 else None


def _published(entry: Mapping[str, Any]) -> datetime | None:
    """published, else updated, as an aware UTC datetime (feedparser's struct_time is already UTC)."""
    for key in ("published_parsed", "updated_parsed"):
        # dict.get: FeedParserDict maps a missing updated_parsed to published_parsed, with a warning.
        value = dict.get(entry, key) if isinstance(entry, dict) else entry.get(key)
        if not value:
            continue
        try:
            # min(…, 59): a leap second (tm_sec 60) would make datetime() refuse the whole date.
            return datetime(*value[:5], min(value[5], 59), tzinfo=UTC)
        except (TypeError, ValueError, OverflowError, IndexError):
            continue
    return None


# --- sanitize ------------------------------------------------------------------------------------

_SAFE_TAGS = {
    *("a", "abbr", "b", "bdi", "bdo", "blockquote", "br", "caption", "cite", "code", "dd", "del"),
    *("div", "dl", "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i"),
    *("img", "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s", "small", "span", "strong"),
    *("sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul"),
}
# lang and dir keep Arabic and Farsi passages right to left.
_SAFE_ATTRIBUTES = {"*": {"lang", "dir", "title"}, "a": {"href"}, "img": {"src", "alt", "width", "height"}}
# Built once: nh3 (Rust) is what keeps sanitizing cheap (DESIGN.md, "Feed parsing cost").
_CLEANER = nh3.Cleaner(
    tags=_SAFE_TAGS,
    # Removed with their content; other unknown tags (font, center…) only lose the tag.
    clean_content_tags={"script", "style", "iframe", "object", "embed", "noscript", "template"},
    attributes=_SAFE_ATTRIBUTES,
    url_schemes={"http", "https", "mailto"},
    link_rel="noopener",
    strip_comments=True,
)


def sanitize(item: ParsedItem) -> ParsedItem:
    """A copy of item with summary and content reduced to safe HTML (plain text stays plain)."""
    return dataclasses.replace(
        item,
        summary=_CLEANER.clean(item.summary),
        content=_CLEANER.clean(item.content),
        categories=list(item.categories),
        enclosures=[dict(enclosure) for enclosure in item.enclosures],
    )
