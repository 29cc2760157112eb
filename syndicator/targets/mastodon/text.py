"""How Mastodon counts a status: code points, every URL as the instance says.

An instance sets its own limits (``/api/v2/instance`` → ``configuration.statuses``); ``targets
check`` stores them in the target's settings, where ``limits`` finds them. A stock instance's are
500 and 23.
"""

from __future__ import annotations

from functools import partial

from syndicator.targets.base import Measure, TextRules
from syndicator.textrules import length_with_links

MAX_CHARACTERS = 500  # max_characters of a stock instance
URL_LENGTH = 23  # characters_reserved_per_url


def mastodon_length(text: str, url_length: int = URL_LENGTH) -> int:
    """Length of a status as Mastodon counts it: each http(s) URL as ``url_length``, the rest in code points.

    Mastodon (StatusLengthValidator) finds URLs with twitter-text's extractor, scheme required, and
    counts grapheme clusters; code points are never fewer, so a text that fits here fits there.
    """
    return length_with_links(text, url_length)


def limits(options: dict) -> tuple[Measure, int]:
    """The measure and limit of the target's instance (stored in its settings by `targets check`)."""
    url_length = int(options.get("characters_reserved_per_url") or URL_LENGTH)
    return partial(mastodon_length, url_length=url_length), int(
        options.get("max_characters") or MAX_CHARACTERS
    )


RULES = TextRules(
    templates=("mastodon.txt.j2",),
    measure=mastodon_length,
    max_length=MAX_CHARACTERS,
    unit="characters (every link counts as the instance says, 23 by default)",
    hashtags=True,  # tags are how the fediverse is browsed
    limits_from_settings=limits,
)
