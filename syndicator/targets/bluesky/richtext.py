"""Bluesky rich text: the link and hashtag facets of a post's text, with UTF-8 byte offsets.

A facet marks a byte range of the text (``index.byteStart``/``byteEnd``, end exclusive) as a link
or a tag. Offsets count UTF-8 bytes, not characters: an Arabic letter is 2 bytes, a ZWNJ 3, an
emoji 4 or more, so counting code points (Python's ``str`` indices) puts every facet after the
first non-ASCII character in the wrong place, the classic bug. Everything here slices the
encoded text, so an offset is right by construction.

Tags are found the way Bluesky's own client does (@atproto/api ``detectFacets``): "#" or "＃" after
the start or a space, up to the next space or invisible joiner, trailing punctuation dropped, at
least one character that is not a digit or punctuation, at most 64 characters. A ZWNJ ends a tag
there, which is why syndicator.formatting writes the Persian half-space in hashtags as "_".
"""

from __future__ import annotations

from typing import Any

import regex

LINK = "app.bsky.richtext.facet#link"
TAG = "app.bsky.richtext.facet#tag"
TAG_MAX_GRAPHEMES = 64  # app.bsky.richtext.facet#tag: maxGraphemes 64 (maxLength 640 bytes)

# Characters that end a tag: whitespace, soft hyphen, word joiner, hair/zero-width spaces, ZWNJ, ZWJ,
# the keycap combiner (@atproto/api rich-text/util.ts TAG_REGEX).
_STOP = r"\s\u00AD\u2060\u200A\u200B\u200C\u200D\u20e2"
_TAG_RE = regex.compile(rf"(?:^|\s)([#＃])((?!\ufe0f)[^{_STOP}]*[^\d\s\p{{P}}{_STOP}]+[^{_STOP}]*)?")
_TRAILING_PUNCTUATION = regex.compile(r"\p{P}+$")
# A URL ends at whitespace; trailing sentence punctuation is not part of it (as clients read it).
_URL_RE = regex.compile(r"https?://[^\s<>\"]+", regex.IGNORECASE)
_URL_TRAILING = ".,;:!?'\")]}\u060c\u061b\u061f\u06d4…"


def facets(text: str, link: str = "") -> list[dict[str, Any]]:
    """The link and tag facets of ``text``: ``link`` wherever it appears whole, other http(s) URLs,
    and #hashtags; sorted by position, never overlapping."""
    spans: list[tuple[int, int, dict[str, Any]]] = []  # (start, end) in code points, feature

    def free(start: int, end: int) -> bool:
        return all(end <= s or start >= e for s, e, _ in spans)

    if link:
        start = text.find(link)
        while start != -1:
            spans.append((start, start + len(link), {"$type": LINK, "uri": link}))
            start = text.find(link, start + len(link))
    for match in _URL_RE.finditer(text):
        uri = match.group().rstrip(_URL_TRAILING)
        start, end = match.start(), match.start() + len(uri)
        if len(uri) > len("https://") and free(start, end):
            spans.append((start, end, {"$type": LINK, "uri": uri}))
    for match in _TAG_RE.finditer(text):
        body = _TRAILING_PUNCTUATION.sub("", match.group(2) or "")
        if not body or len(regex.findall(r"\X", body)) > TAG_MAX_GRAPHEMES:
            continue
        start = match.start(1)
        end = start + 1 + len(body)
        if free(start, end):
            spans.append((start, end, {"$type": TAG, "tag": body}))
    spans.sort(key=lambda span: span[0])
    return [
        {"index": {"byteStart": utf8_offset(text, s), "byteEnd": utf8_offset(text, e)}, "features": [f]}
        for s, e, f in spans
    ]


def utf8_offset(text: str, index: int) -> int:
    """The UTF-8 byte offset of code point ``index`` in ``text``."""
    return len(text[:index].encode("utf-8"))


def facet_text(text: str, facet: dict[str, Any]) -> str:
    """The part of ``text`` a facet covers (decoding its byte range; raises if it splits a character)."""
    index = facet["index"]
    return text.encode("utf-8")[index["byteStart"] : index["byteEnd"]].decode("utf-8")
