"""Fetch, parse and normalize RSS/Atom feeds: no Celery and no database here (the caller stores posts).

``fetch`` does one conditional GET and says whether anything changed (syndicator/feedhttp.py);
``parse`` turns a body into plain data without sanitizing it (DESIGN.md, "Feed parsing cost");
``sanitize`` cleans the HTML of the items that turn out to be new.
"""

from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import html
import io
import mimetypes
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import feedparser
import nh3

from syndicator import feedxml
from syndicator.errors import FeedParseError
from syndicator.feedhttp import FetchResult, fetch

__all__ = [
    "FetchResult",
    "ParsedFeed",
    "ParsedItem",
    "clean_html",
    "fetch",
    "item_identity",
    "parse",
    "sanitize",
]


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
    # The item's own updated time (Atom <updated>), only when the feed gives one: what tells an
    # edit from a replayed old copy (RSS 2.0 has none; there the change itself is the signal).
    updated_at: datetime | None = None
    # What relative links and images in summary and content are relative to (xml:base or the feed).
    content_base: str = ""


@dataclass
class ParsedFeed:
    """A parsed feed: its own fields and its items in feed order."""

    title: str
    link: str
    language: str
    hub_url: str
    items: list[ParsedItem] = field(default_factory=list)
    # Items left out, by reason: {"same guid as an earlier item": 2, "empty (no title, link or text)": 1}.
    skipped: dict[str, int] = field(default_factory=dict)
    # <atom:link rel="self">: the WebSub topic when the HTTP headers name none.
    self_url: str = ""


# --- parse ---------------------------------------------------------------------------------------

_TAG = re.compile(r"<[^>]*>")
_LOOKS_LIKE_TAG = re.compile(r"<[a-zA-Z/!]")
_IMG_SRC = re.compile(r"""<img\b[^>]*?\ssrc\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.IGNORECASE)


def parse(
    body: bytes, *, base_url: str = "", default_language: str = "", content_type: str = ""
) -> ParsedFeed:
    """Parse an RSS or Atom body into plain data, leaving the HTML unsanitized (see ``sanitize``).

    content_type (the response's) gives the encoding of a body whose XML declares none.
    """
    body = feedxml.prepare(body, content_type)
    # A BytesIO, never the bytes: feedparser takes a bytes argument for a file name first, so a
    # body reading "/etc/passwd" would be read from our disk. No response_headers: a
    # content-location makes feedparser rewrite relative guids against wherever we fetched from
    # (identity must not move with the URL), and a content-type flags correct documents as bozo.
    try:
        data = feedparser.parse(io.BytesIO(body), sanitize_html=False, resolve_relative_uris=False)
    except Exception as exc:  # a feedparser bug on hostile input is this body's problem, not ours
        raise FeedParseError(f"not an RSS/Atom feed: the parser failed ({type(exc).__name__})") from None
    feedxml.check(body, data)
    if not data.entries and (data.bozo or not data.get("version")):
        reason = "empty body" if not body.strip() else data.get("bozo_exception") or "no feed element"
        raise FeedParseError(f"not an RSS/Atom feed: {reason}")
    feed = data.feed
    link = _absolute(feed.get("link", ""), base_url)
    language = (feed.get("language") or "").strip() or default_language
    # Relative item links resolve against the document's URL, else the site's link.
    base = base_url or link
    items: list[ParsedItem] = []
    seen: set[str] = set()
    skipped: dict[str, int] = {}
    for entry in data.entries:
        item = _without_nul(_item(entry, base, language))
        if item.guid in seen:  # the same guid twice in one body: the first one wins
            reason = "same guid as an earlier item"
        elif not _postable(item):
            # It would only fail every target's delivery; if it gets content later (same guid),
            # it is new then.
            reason = "empty (no title, link or text)"
        else:
            seen.add(item.guid)
            items.append(item)
            continue
        skipped[reason] = skipped.get(reason, 0) + 1
    hub = next((lnk.get("href", "") for lnk in feed.get("links", []) if lnk.get("rel") == "hub"), "")
    own = next((lnk.get("href", "") for lnk in feed.get("links", []) if lnk.get("rel") == "self"), "")
    return ParsedFeed(
        title=_plain_text(feed.get("title", ""), feed.get("title_detail", {}).get("type", "")),
        link=link,
        language=language,
        hub_url=_absolute(hub, base_url).replace("\x00", ""),
        items=items,
        skipped=skipped,
        self_url=_absolute(own, base_url).replace("\x00", ""),
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
        updated_at=_published(entry, ("updated_parsed",)),
        content_base=_content_base(entry, base),
    )


def _content_base(entry: Mapping[str, Any], base: str) -> str:
    """The base URL of an item's HTML: its own xml:base when feedparser saw one, else the feed's."""
    details = [*(entry.get("content") or []), entry.get("summary_detail") or {}]
    for detail in details:
        if found := _absolute(detail.get("base") or "", base):
            return found
    return base


def _postable(item: ParsedItem) -> bool:
    """Whether an item has anything a message could show: a title, a link or some text."""
    return bool(item.title or item.url or _plain_text(_TAG.sub(" ", f"{item.content} {item.summary}")))


def _without_nul(item: ParsedItem) -> ParsedItem:
    """item without NUL characters, which PostgreSQL refuses in text (feedparser's fallback
    parser passes them through from a body that is not well-formed XML)."""
    changes: dict[str, Any] = {
        name: value.replace("\x00", "")
        for name, value in vars(item).items()
        if isinstance(value, str) and "\x00" in value
    }
    if any("\x00" in category for category in item.categories):
        changes["categories"] = [c.replace("\x00", "") for c in item.categories if c.replace("\x00", "")]
    if any("\x00" in str(enclosure) for enclosure in item.enclosures):
        changes["enclosures"] = [e for e in item.enclosures if "\x00" not in str(e)]
    return dataclasses.replace(item, **changes) if changes else item


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
    """Text with tags dropped, entities unescaped and whitespace collapsed."""
    if "html" in content_type:
        value = _TAG.sub("", value)
    # Unescaped even when feedparser calls it plain: WordPress double-escapes titles (&amp;#8217;).
    value = html.unescape(value or "")
    if _LOOKS_LIKE_TAG.search(value):
        # Markup in a "plain" title (CDATA, or escaped twice): a title is text on every network,
        # so tags go, and a script's or style's text with them ("3 < 5" is no tag and stays).
        value = html.unescape(_TEXT_ONLY.clean(value))
    return " ".join(value.split())


def _length(value: Any) -> int | None:
    """An enclosure's length in bytes; None when absent, garbage or 0 (which feeds write for unknown)."""
    try:
        length = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return length if length > 0 else None


def _published(
    entry: Mapping[str, Any], keys: tuple[str, ...] = ("published_parsed", "updated_parsed")
) -> datetime | None:
    """published, else updated, as an aware UTC datetime (feedparser's struct_time is already UTC)."""
    for key in keys:
        # dict.get: FeedParserDict maps a missing updated_parsed to published_parsed, with a warning.
        value = dict.get(entry, key) if isinstance(entry, dict) else entry.get(key)
        if not value:
            continue
        try:
            # min(…, 59): a leap second (tm_sec 60) would make datetime() refuse the whole date.
            year, month, day, hour, minute, second = value[:6]
            return datetime(year, month, day, hour, minute, min(second, 59), tzinfo=UTC)
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
# The base that relative links of the fragment being cleaned resolve against (see clean_html).
_LINK_BASE: contextvars.ContextVar[str] = contextvars.ContextVar("link_base", default="")
_LINK_ATTRIBUTES = frozenset({("a", "href"), ("img", "src")})


def _absolute_links(tag: str, attribute: str, value: str) -> str | None:
    """Make a relative link or image absolute, so it still works in an email or a post elsewhere.

    Called by nh3 for each attribute; the URL scheme check (http, https, mailto) comes after it.
    """
    base = _LINK_BASE.get()
    if base and (tag, attribute) in _LINK_ATTRIBUTES and not _HAS_SCHEME.match(value.strip()):
        return _absolute(value, base) or None
    return value


_HAS_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:")
# Built once: nh3 (Rust) is what keeps sanitizing cheap (DESIGN.md, "Feed parsing cost").
_CLEANER = nh3.Cleaner(
    attribute_filter=_absolute_links,
    tags=_SAFE_TAGS,
    # Removed with their content; other unknown tags (font, center…) only lose the tag.
    clean_content_tags={"script", "style", "iframe", "object", "embed", "noscript", "template"},
    attributes=_SAFE_ATTRIBUTES,
    url_schemes={"http", "https", "mailto"},
    link_rel="noopener",
    strip_comments=True,
)


_TEXT_ONLY = nh3.Cleaner(
    tags=set(), clean_content_tags={"script", "style", "noscript", "template"}, attributes={}
)


def clean_html(fragment: str, base: str = "") -> str:
    """An HTML fragment reduced to safe tags, attributes and http(s)/mailto links.

    With ``base``, relative links and images become absolute against it.
    """
    token = _LINK_BASE.set(base)
    try:
        return _CLEANER.clean(fragment)
    finally:
        _LINK_BASE.reset(token)


def sanitize(item: ParsedItem) -> ParsedItem:
    """A copy of item with summary and content reduced to safe HTML (plain text stays plain)."""
    return dataclasses.replace(
        item,
        summary=clean_html(item.summary, item.content_base or item.url),
        content=clean_html(item.content, item.content_base or item.url),
        categories=list(item.categories),
        enclosures=[dict(enclosure) for enclosure in item.enclosures],
    )
