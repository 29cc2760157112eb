"""How a Pin is written: a title (at most 100 characters), a description (at most 500) and the
link beside them (docs/pinterest-api.md: ayrshare's and blotato's Pinterest pages).

The description is the body: ``pinterest.txt.j2``, fitted to 500 code points (how Pinterest
counts is not documented; code points are the cautious reading for text without emoji), the
summary shortened first. An editor's text replaces the description. The title is the post's, cut
to 100 on a word boundary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from syndicator.targets.base import TextRules
from syndicator.textrules import mark_rtl_lines, truncate

if TYPE_CHECKING:
    from syndicator.formatting import Message

TEMPLATE = "pinterest.txt.j2"
TITLE_MAX = 100
DESCRIPTION_MAX = 500
ALT_TEXT_MAX = 500
LINK_MAX = 2048


def compose(msg: Message, ctx: dict, override: str, overrides: dict[str, str]) -> None:
    """Fill the title (``subject``) and the description (``text``) of a Pin."""
    from syndicator.formatting import fit, template_renderer

    msg.subject = _title(ctx["title"], rtl=ctx["direction"] == "rtl")
    if override:  # the link is sent beside the description, so it is not added to an editor's text
        msg.text = truncate(override, DESCRIPTION_MAX)
    else:
        render = template_renderer(TEMPLATE, overrides, ctx, mark_rtl=True)
        fields = {"summary": ctx["summary"], "title": ctx["title"]}
        msg.text = fit(render, fields, ctx["hashtags"], len, DESCRIPTION_MAX, TEMPLATE)
    if len(msg.link) > LINK_MAX:
        msg.link = ""  # Pinterest refuses a longer one; the Pin goes out without it


def _title(title: str, *, rtl: bool) -> str:
    """The title within TITLE_MAX, with the RTL mark a Latin first word needs counted in."""
    cut = truncate(title, TITLE_MAX)
    if not rtl:
        return cut
    marked = mark_rtl_lines(cut)
    return marked if len(marked) <= TITLE_MAX else mark_rtl_lines(truncate(title, TITLE_MAX - 1))


RULES = TextRules(
    templates=(TEMPLATE,),
    measure=len,
    max_length=DESCRIPTION_MAX,
    unit="characters of the description (the title, up to 100, is the post's)",
    link_beside=True,  # the Pin's `link`: a click on the image opens the article
    hashtags=False,
    compose=compose,
)
