"""How X counts a post: twitter-text's weighted length (config v3), every URL 23."""

from __future__ import annotations

from twitter_text import parse_tweet

from syndicator.targets.base import TextRules

MAX_WEIGHTED = 280
# No post shows more code points than this; the cap keeps parse_tweet (~6 ms per 1,000 chars) cheap.
FIELD_CAP = 1000


def twitter_length(text: str) -> int:
    """Weighted length of a post by twitter-text's rules (every URL counts 23)."""
    return parse_tweet(text).weightedLength


RULES = TextRules(
    templates=("twitter.txt.j2",),
    measure=twitter_length,
    max_length=MAX_WEIGHTED,
    unit="weighted characters (every link counts 23)",
    hashtags=True,
    title_cap=FIELD_CAP,
)
