"""How a Threads post is written: plain text of at most 500 characters, the link in it and as
its card (``link_attachment``).

Threads Posts, Limitations: "Text posts are limited to 500 characters. Emojis are counted as the
number of UTF-8 bytes" (docs/threads-api.md). So a symbol outside the Basic
Multilingual Plane, or any "So" character, counts its UTF-8 bytes here; everything else one.
"""

from __future__ import annotations

import unicodedata

from syndicator.targets.base import TextRules

TEXT_MAX = 500


def threads_length(text: str) -> int:
    """A post's length as Threads counts it, the cautious reading: an emoji as its UTF-8 bytes."""
    return sum(len(ch.encode()) if ord(ch) > 0xFFFF or unicodedata.category(ch) == "So" else 1 for ch in text)


RULES = TextRules(
    templates=("threads.txt.j2",),
    measure=threads_length,
    max_length=TEXT_MAX,
    unit="characters (an emoji counts its UTF-8 bytes)",
    # Off: Threads shows one topic tag per post, not a row of hashtags (ayrshare's Threads page).
    hashtags=False,
)
