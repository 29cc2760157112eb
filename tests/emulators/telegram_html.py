"""Telegram's HTML parse mode as the Bot API applies it: TDLib's ``parse_html`` ported to Python.

Source: tdlib/td ``td/telegram/MessageEntity.cpp`` (``decode_html_entity``, ``parse_html``), with
its error messages and byte offsets. What it shows about Telegram, beyond its documentation:
only ``&lt; &gt; &amp; &quot;`` and numeric references are decoded, and any other "&name;" stays
as written (it is not an error); the ";" is optional; attributes other than the few Telegram
reads are ignored. Valueless attributes (``<blockquote expandable>``, in the Bot API's docs) are
accepted the way newer TDLib versions do; the TDLib source read for this (2023) predates them.
"""

from __future__ import annotations

import re
import string

_TAGS = frozenset(
    {"a", "b", "strong", "i", "em", "s", "strike", "del", "u", "ins", "tg-spoiler", "tg-emoji", "span"}
    | {"pre", "code", "blockquote", "tg-time"}
)
_SPACE = frozenset(b" \t\r\n\v\0")  # td::is_space; the C string's closing NUL counts as a space
_NAMED = {b"lt": "<", b"gt": ">", b"amp": "&", b"quot": '"'}  # no other named entity exists
_DIGITS, _HEX = frozenset(string.digits.encode()), frozenset(string.hexdigits.encode())
_ALNUM = frozenset((string.ascii_letters + string.digits).encode())
_NAME_END = frozenset(b"=>/\"'")  # an attribute name ends at any of these, or a space


def _entity(data: bytes, pos: int) -> tuple[int, int]:
    """decode_html_entity: (code point, next position), or (0, pos) when "&" is a literal."""
    at = lambda k: data[k] if k < len(data) else 0  # noqa: E731
    end, code = pos + 1, 0
    if at(pos + 1) == ord("#"):
        end += 1
        hexa = at(pos + 2) == ord("x")
        end += hexa
        while at(end) in (_HEX if hexa else _DIGITS) and at(end):
            code = code * (16 if hexa else 10) + int(chr(at(end)), 16)
            end += 1
        if code == 0 or code >= 0x10FFFF or end - pos >= 10:
            return 0, pos
    else:
        while chr(at(end)).isascii() and chr(at(end)).isalpha():
            end += 1
        if data[pos + 1 : end] not in _NAMED:
            return 0, pos  # an unknown entity such as &nbsp; stays as written
        code = ord(_NAMED[data[pos + 1 : end]])
    return code, end + (at(end) == ord(";"))


def telegram_parse(text_html: str) -> tuple[str, str | None]:
    """What Telegram makes of HTML-parse-mode text: (plain text, None) or ("", TDLib's error)."""
    try:
        data = text_html.encode("utf-8")
    except UnicodeEncodeError:
        return "", "strings must be encoded in UTF-8"
    at = lambda k: data[k] if k < len(data) else 0  # noqa: E731
    out: list[str] = []
    chunk = bytearray()
    stack: list[tuple[str, str, int]] = []  # tag, argument, output length at the tag
    surrogate = False
    i = 0
    while i < len(data):
        c = data[i]
        if c == ord("&"):
            code, end = _entity(data, i)
            if code:
                surrogate |= 0xD800 <= code <= 0xDFFF
                out.append(chunk.decode() + ("" if 0xD800 <= code <= 0xDFFF else chr(code)))
                chunk.clear()
                i = end
                continue
        if c != ord("<"):
            chunk.append(c)
            i += 1
            continue
        out.append(chunk.decode())
        chunk.clear()
        begin, i = i, i + 1
        if at(i) != ord("/"):
            while at(i) not in _SPACE and at(i) != ord(">"):
                i += 1
            if at(i) == 0:
                return "", f"Unclosed start tag at byte offset {begin}"
            tag = data[begin + 1 : i].lower().decode(errors="replace")
            if tag not in _TAGS:
                return "", f'Unsupported start tag "{tag}" at byte offset {begin}'
            argument = ""
            while at(i) != ord(">"):
                while at(i) and at(i) in _SPACE:
                    i += 1
                if at(i) == ord(">"):
                    break
                name_begin = i
                while at(i) not in _SPACE and at(i) not in _NAME_END:
                    i += 1
                name = data[name_begin:i].decode(errors="replace")
                if not name:
                    return "", f'Empty attribute name in the tag "{tag}" at byte offset {begin}'
                while at(i) and at(i) in _SPACE:
                    i += 1
                if at(i) != ord("="):  # a valueless attribute: only blockquote's "expandable" means anything
                    if at(i) == 0:
                        return "", f'Unclosed start tag "{tag}" at byte offset {begin}'
                    continue
                i += 1
                while at(i) and at(i) in _SPACE:
                    i += 1
                if at(i) == 0:
                    return "", f'Unclosed start tag "{tag}" at byte offset {begin}'
                if at(i) not in (ord("'"), ord('"')):
                    token_begin = i
                    while at(i) in _ALNUM or at(i) in (ord("."), ord("-")):
                        i += 1
                    value = data[token_begin:i].lower().decode()
                    if at(i) not in _SPACE and at(i) != ord(">"):
                        return "", f"Unexpected end of name token at byte offset {token_begin}"
                else:
                    quote, i, buffer = at(i), i + 1, bytearray()
                    while at(i) != quote and at(i):
                        code, end = _entity(data, i) if at(i) == ord("&") else (0, i)
                        if code:
                            buffer += chr(code).encode("utf-8", "surrogatepass")
                            i = end
                            continue
                        buffer.append(at(i))
                        i += 1
                    i += at(i) == quote
                    value = buffer.decode(errors="replace")
                if at(i) == 0:
                    return "", f"Unclosed start tag at byte offset {begin}"
                if (tag, name) in {("a", "href"), ("tg-emoji", "emoji-id")}:
                    argument = value
                elif (tag, name) == ("code", "class") and value.startswith("language-"):
                    argument = value[9:]
                elif (tag, name) == ("span", "class") and value.startswith("tg-"):
                    argument = value[3:]
            if tag == "span" and argument != "spoiler":
                return "", f'Tag "span" must have class "tg-spoiler" at byte offset {begin}'
            stack.append((tag, argument, sum(map(len, out))))
        else:
            if not stack:
                return "", f"Unexpected end tag at byte offset {begin}"
            while at(i) not in _SPACE and at(i) != ord(">"):
                i += 1
            end_tag = data[begin + 2 : i].lower().decode(errors="replace")
            while at(i) in _SPACE and at(i):
                i += 1
            if at(i) != ord(">"):
                return "", f"Unclosed end tag at byte offset {begin}"
            tag, argument, start = stack.pop()
            if end_tag and end_tag != tag:
                return (
                    "",
                    f'Unmatched end tag at byte offset {begin}, expected "</{tag}>", found "</{end_tag}>"',
                )
            if (
                tag == "tg-emoji"
                and sum(map(len, out)) > start
                and not re.fullmatch(r"-?[1-9]\d{0,18}", argument)
            ):
                return "", "Invalid custom emoji identifier specified"
        i += 1  # past the ">"
    if stack:
        return "", f"Can't find end tag corresponding to start tag {stack[-1][0]}"
    if surrogate:
        return "", (
            "Text contains invalid Unicode characters after decoding HTML entities, check for unmatched "
            "surrogate code units"
        )
    return "".join(out) + chunk.decode(), None
