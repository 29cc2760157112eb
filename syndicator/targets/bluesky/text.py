"""How Bluesky counts a post: grapheme clusters (app.bsky.feed.post lexicon: text maxGraphemes 300)."""

from __future__ import annotations

from syndicator.targets.base import TextRules
from syndicator.textrules import grapheme_length

MAX_GRAPHEMES = 300


def bluesky_length(text: str) -> int:
    """Length of a Bluesky post in grapheme clusters."""
    return grapheme_length(text)


RULES = TextRules(
    templates=("bluesky.txt.j2",),
    measure=bluesky_length,
    max_length=MAX_GRAPHEMES,
    unit="graphemes",
    hashtags=True,  # posts are short and tags are facets
)
