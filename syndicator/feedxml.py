"""What a feed body must pass, around feedparser, before its items are trusted.

Before parsing, ``prepare`` settles the encoding and defuses character references that crash
feedparser. After parsing, ``check`` refuses what feedparser recovers from but we should not
store: an entity bomb it half-read, a document cut off in the middle of an item.

Encodings (what servers get wrong, most common first):
  - declared single-byte (iso-8859-1, windows-1252, koi8-r…) but actually UTF-8: the body is read
    as UTF-8. Non-ASCII text that happens to be valid UTF-8 is vanishingly rare in any legacy
    single-byte text, while CMSes that write the wrong declaration are common.
  - no XML declaration and a charset in Content-Type only: the charset is used (RFC 7303 §3.2),
    unless the body is valid UTF-8 (Apache's old default "charset=iso-8859-1" on UTF-8 feeds).
  - UTF-16/32 with a byte order mark: transcoded to UTF-8, so the byte-level checks below see it.
Anything else is left to feedparser, which falls back to windows-1252 for a body that is not
the UTF-8 it claims to be.
"""

from __future__ import annotations

import codecs
import re
import xml.sax
from typing import Any

from syndicator.errors import FeedParseError

_DECLARATION = re.compile(rb"""\A\s*<\?xml[^>]*?\bencoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""")
# Encodings in which every byte sequence decodes, so a wrong declaration never fails loudly.
_SINGLE_BYTE = re.compile(
    r"(iso[-_]?8859[-_]?\d+|latin[-_]?\d|(windows|cp)[-_]?125\d|koi8[-_][a-z]+|(us[-_])?ascii"
    r"|mac(intosh|roman)?)"
)
_CHARSET = re.compile(r"""charset\s*=\s*["']?([A-Za-z0-9._:-]+)""", re.IGNORECASE)
_BOMS = (  # UTF-32 first: its little-endian mark starts with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_CHARREF = re.compile(rb"&#(?:[xX]([0-9a-fA-F]{1,8})|([0-9]{1,10}));")
_REPLACEMENT_REF = b"&#xFFFD;"
_CLOSING_ROOT = re.compile(rb"</(?:[\w.-]+:)?(?:rss|feed|RDF)\s*>", re.IGNORECASE)


def prepare(body: bytes, content_type: str = "") -> bytes:
    """The body as feedparser should read it: encoding settled, invalid character references
    (&#0;, &#xD800;, past U+10FFFF) replaced by U+FFFD instead of crashing feedparser's fallback
    parser with a UnicodeEncodeError."""
    return _CHARREF.sub(_valid_charref, _as_utf8(body, content_type))


def check(body: bytes, data: Any) -> None:
    """Raise FeedParseError for an entity bomb or a truncated document; data is feedparser's."""
    problem = data.get("bozo_exception")
    if isinstance(problem, xml.sax.SAXParseException) and "amplification" in problem.getMessage():
        # expat (≥ 2.4) stops billion-laughs and quadratic-blowup documents; feedparser then
        # falls back to its loose parser, which would store "&lol9;" as the text.
        raise FeedParseError("refused: entity expansion past the XML parser's limit (an entity bomb)")
    if data.get("bozo") and data.entries and b"\x00" not in body[:64] and not _CLOSING_ROOT.search(body):
        # feedparser's loose parser returns the items it got, the last one cut short: storing it
        # would post half an article, never corrected (its guid is then known). The next poll
        # will most likely get the whole document.
        version = str(data.get("version") or "")
        root = "</feed>" if version.startswith("atom") else "</rdf:RDF>" if version in _RDF else "</rss>"
        raise FeedParseError(f"truncated: the document ends before its closing {root}")


_RDF = ("rss090", "rss10")


def _as_utf8(body: bytes, content_type: str) -> bytes:
    """The body in UTF-8 where its real encoding is known (see the module docstring)."""
    for bom, codec in _BOMS:
        if body.startswith(bom):
            try:
                return _declare_utf8(body.decode(codec).encode("utf-8"))
            except UnicodeError:
                return body
    if body.isascii():
        return body
    declared = _DECLARATION.match(body[:1024])
    utf8 = _is_utf8(body)
    if declared:
        name = declared.group(1).decode("ascii").lower()
        return _declare_utf8(body) if utf8 and _SINGLE_BYTE.fullmatch(name) else body
    charset = _CHARSET.search(content_type or "")
    if utf8 or charset is None:
        return body
    try:
        return body.decode(charset.group(1)).encode("utf-8")
    except (LookupError, UnicodeError):  # an unknown charset, or not what the body is
        return body


def _declare_utf8(body: bytes) -> bytes:
    """body with its XML declaration's encoding (if it names one) changed to utf-8."""
    declared = _DECLARATION.match(body[:1024])
    if not declared:
        return body
    start, end = declared.span(1)
    return body[:start] + b"utf-8" + body[end:]


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _valid_charref(match: re.Match[bytes]) -> bytes:
    hexadecimal, decimal = match.groups()
    code = int(hexadecimal, 16) if hexadecimal else int(decimal)
    if code == 0 or 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
        return _REPLACEMENT_REF
    return match.group()
