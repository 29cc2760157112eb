"""The text helpers every network's formatting is built from.

Word-boundary truncation that keeps URLs, clusters and entities whole; hashtags from category
names; UTM parameters; plain text from feed HTML; right-to-left marks; length in UTF-16 units and
with links counted at a fixed length. How each network counts and marks up its text is in its own
package (``syndicator/targets/<kind>/text.py``); templates are in syndicator.formatting.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlencode

import regex
from twitter_text.extract_urls import extract_urls_with_indices

ELLIPSIS = "…"
RLM = "\u200f"
ZWNJ = "\u200c"
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_TAG = re.compile(r"<[^>]*>")
_LOOKS_LIKE_HTML = re.compile(r"<[a-zA-Z/!][^>]*>|&(?:#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);")
_READ_MORE = re.compile(r"\s*\[(?:…|\.\.\.)\]\s*$")  # WordPress's excerpt tail "[…]"
_JOINER = re.compile("[\u200c\u200d\ufe0e\ufe0f\U0001f3fb-\U0001f3ff]")  # joiners, variation, skin tone
_URL = re.compile(r"[a-z][a-z0-9+.-]*://|www\.", re.IGNORECASE)
_URL_TAIL = re.compile(r"(?:[a-z][a-z0-9+.-]*://|www\.)\S*$", re.IGNORECASE)
_TRAILING = " ,;:-\u2013\u2014(/\u060c\u061b"  # dropped before an ellipsis (Arabic comma, semicolon too)
_BLOCK_TAGS = frozenset(
    {"p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "tr"}
    | {"table", "section", "article", "figure", "figcaption", "hr"}
)


def length_with_links(text: str, url_length: int) -> int:
    """Length in code points with every http(s) URL counted as ``url_length``.

    URLs are found by the twitter-text library's extractor, scheme required (as some servers'
    length validators do).
    """
    spans = [url["indices"] for url in extract_urls_with_indices(text, extract_urls_without_protocol=False)]
    return len(text) - sum(end - start for start, end in spans) + url_length * len(spans)


def grapheme_length(text: str) -> int:
    """Length in grapheme clusters (Unicode extended clusters; the stdlib cannot count them)."""
    return len(regex.findall(r"\X", text))


def visible_html_length(text_html: str) -> int:
    """Length of an HTML fragment's visible text (tags dropped, entities decoded), in UTF-16 units."""
    return utf16_length(html.unescape(_TAG.sub("", text_html)))


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units, as JavaScript and most APIs count."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def hashtags(categories: Iterable[str], limit: int = 3) -> list[str]:
    """Up to ``limit`` distinct "#tags" made from category names, letters of every script kept."""
    tags: list[str] = []
    seen: set[str] = set()
    for category in categories or ():
        if len(tags) >= limit:
            break
        body = _hashtag_body(str(category))
        if body and body.casefold() not in seen:
            seen.add(body.casefold())
            tags.append("#" + body)
    return tags


def add_utm(url: str, params: dict[str, str]) -> str:
    """The URL with ``params`` added to its query, keeping its fragment and any parameter it has."""
    if not params or not url.lower().startswith(("http://", "https://")):
        return url
    # Split by hand rather than urlsplit/urlunsplit, which re-serialise (and may alter) the rest.
    before_fragment, hash_mark, fragment = url.partition("#")
    base, _, query = before_fragment.partition("?")
    present = {key for key, _ in parse_qsl(query, keep_blank_values=True)}
    extra = urlencode([(k, str(v)) for k, v in params.items() if k not in present and v not in (None, "")])
    if not extra:
        return url
    joiner = "&" if query and not query.endswith("&") else ""
    return f"{base}?{query}{joiner}{extra}{hash_mark}{fragment}"


def plain_text(value: str, *, paragraphs: bool = True) -> str:
    """Readable plain text from a feed's summary or content, which may be HTML or already plain."""
    if _LOOKS_LIKE_HTML.search(value):
        parser = _TextExtractor()
        parser.feed(value)
        parser.close()
        value = "".join(parser.parts)
    lines = [
        " ".join(line.split()) for line in CONTROL_CHARS.sub("", value.replace("\r\n", "\n")).split("\n")
    ]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    if _READ_MORE.search(text):
        text = _READ_MORE.sub("", text)
        text += "" if text.endswith((".", "!", "?", "\u061f", "\u06d4", ELLIPSIS)) else ELLIPSIS
    return text if paragraphs else " ".join(text.split())


def truncate(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` code points, cut on a word boundary with "…"; URLs stay whole."""
    if len(text) <= limit:
        return text
    head = _cut(text, limit - 1)
    if _URL_TAIL.search(head):
        # A space keeps linkifiers from reading the ellipsis as part of the URL.
        head = _cut(text, limit - 2)
        return f"{head} {ELLIPSIS}" if head else ""
    return head + ELLIPSIS if head else ""


class _TextExtractor(HTMLParser):
    """Collects an HTML fragment's text, with a line break around each block element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list | None = None) -> None:
        self.parts += ["\n"] if tag in _BLOCK_TAGS else []

    handle_endtag = handle_starttag  # the same line break after a block

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _cut(text: str, size: int) -> str:
    """The longest prefix of at most ``size`` code points ending at a word boundary, tidied."""
    if size <= 0:
        return ""
    window = text[: size + 1]  # one more: a space right after the prefix ends a word too
    boundary = max((i for i, ch in enumerate(window) if ch.isspace()), default=-1)
    if boundary > 0:
        head = text[:boundary]
    elif _URL.search(text.split(None, 1)[0] if text.strip() else ""):
        return ""  # one long word that is (or holds) a URL: leave it out rather than cut it
    else:  # one long word (a script without spaces): cut it, but not inside a character cluster
        head = text[:size]
        while head and (unicodedata.category(text[len(head)])[0] == "M" or _JOINER.match(text[len(head)])):
            head = head[:-1]
    return head.rstrip().rstrip(_TRAILING).rstrip()


def _hashtag_body(name: str) -> str:
    """A category name as hashtag text: letters, marks, digits and "_", nothing else."""
    kept = []
    for ch in unicodedata.normalize("NFC", name):
        if ch in (ZWNJ, "_"):
            kept.append("_")
        elif unicodedata.category(ch)[0] in "LM" or unicodedata.category(ch) == "Nd":
            kept.append(ch)
        # Spaces, punctuation, symbols and emoji would end the hashtag early: they are dropped.
    body = re.sub("_+", "_", "".join(kept)).strip("_")
    # Networks do not link a tag without a letter ("#2025").
    return body if any(unicodedata.category(ch)[0] == "L" for ch in body) else ""


def _starts_ltr(text: str) -> bool:
    """Whether the first strongly directional character of ``text`` is a left-to-right one."""
    kinds = (unicodedata.bidirectional(ch) for ch in text)
    return next((kind for kind in kinds if kind in ("L", "R", "AL")), "") == "L"


def mostly_rtl(text: str) -> bool:
    """Whether most strongly directional letters of ``text`` are right-to-left ones."""
    kinds = [unicodedata.bidirectional(ch) for ch in text]
    return sum(k in ("R", "AL") for k in kinds) > sum(k == "L" for k in kinds)


def mark_rtl_lines(text: str) -> str:
    """Prefix RLM to lines that start with a Latin word, so clients lay out RTL paragraphs right."""
    return "\n".join(RLM + line if _starts_ltr(line) else line for line in text.split("\n"))
