"""How a Facebook Page post is written: plain text, the link beside it as a card."""

from __future__ import annotations

from syndicator.targets.base import TextRules
from syndicator.textrules import utf16_length

# Graph API message limit, counted in UTF-16 units as JavaScript does.
MESSAGE_MAX = 63206

RULES = TextRules(
    templates=("facebook.txt.j2",),
    measure=utf16_length,
    max_length=MESSAGE_MAX,
    unit="UTF-16 units",
    link_beside=True,  # the Page post's `link` field: the card shows it, the text need not
    hashtags=False,  # hashtags do little on Pages
    summary_teaser=None,  # a Page post has room for the whole summary
)
