"""How Telegram counts and marks up a message (core.telegram.org/bots/api#formatting-options).

Limits: 4096 characters for a text message and 1024 for a photo's caption, counted after entity
parsing (the visible text, in UTF-16 units as Telegram counts). Markup: the Bot API's HTML parse
mode, a small subset of HTML; a template that produces anything else is refused before sending.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from syndicator.errors import PermanentError
from syndicator.targets.base import TextRules
from syndicator.textrules import visible_html_length

if TYPE_CHECKING:
    from syndicator.formatting import Message

TEXT_MAX = 4096  # after entity parsing
CAPTION_MAX = 1024

# Telegram's HTML parse mode: tag → allowed attributes (core.telegram.org/bots/api#html-style).
_TAGS: dict[str, frozenset[str]] = {
    **{tag: frozenset() for tag in ("b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "pre")},
    "tg-spoiler": frozenset(),
    "a": frozenset({"href"}),
    "span": frozenset({"class"}),
    "code": frozenset({"class"}),
    "blockquote": frozenset({"expandable"}),
    "tg-emoji": frozenset({"emoji-id"}),
    "tg-time": frozenset({"unix", "format"}),
}
_ENTITIES = frozenset({"lt", "gt", "amp", "quot"})
_MARKUP = re.compile(r"<(/?)([a-zA-Z][\w-]*)([^>]*)>|&([a-zA-Z]\w*);|<")  # a tag, a named entity, a bare "<"
_ATTRIBUTE = re.compile(r"""([\w-]+)(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'>]+))?""")  # name, then value skipped


def telegram_length(text_html: str) -> int:
    """Length of Telegram HTML after entity parsing, in UTF-16 units."""
    return visible_html_length(text_html)


def check_telegram_html(text: str, name: str) -> None:
    """Raise PermanentError if Telegram would refuse the text's markup (the template is at fault)."""
    problems = []
    for match in _MARKUP.finditer(text):
        tag, attributes, entity = match.group(2, 3, 4)
        if entity is not None:
            bad = entity not in _ENTITIES
        else:
            allowed = _TAGS.get((tag or "").lower())
            bad = allowed is None or bool({a.lower() for a in _ATTRIBUTE.findall(attributes)} - allowed)
        problems += [match.group()[:40]] if bad else []
    if problems:
        found = ", ".join(dict.fromkeys(problems))
        raise PermanentError(f"message template {name} produced markup Telegram does not accept: {found}")


def finish(msg: Message) -> None:
    """Refuse markup Telegram would refuse; send as HTML; use the text as a caption when it fits."""
    check_telegram_html(msg.text, RULES.templates[0])
    msg.parse_mode = "HTML"
    fits_caption = telegram_length(msg.text) <= CAPTION_MAX
    msg.caption = msg.text if msg.image_url and fits_caption else ""


RULES = TextRules(
    templates=("telegram.html.j2",),
    measure=telegram_length,
    max_length=TEXT_MAX,
    unit="characters after entity parsing (UTF-16 units)",
    caption_max=CAPTION_MAX,
    markup="html",
    hashtags=True,
    finish=finish,
)
