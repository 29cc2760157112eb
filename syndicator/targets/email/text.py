"""How an email is written: a subject line, a plain-text body and an HTML alternative.

Three templates, each of which a target may override; the subject is fitted to
``SUBJECT_MAX`` characters on one line, the bodies have no limit. No RLM marks in the HTML: its
``dir="rtl"`` does that job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from syndicator.targets.base import TextRules
from syndicator.textrules import truncate

if TYPE_CHECKING:
    from syndicator.formatting import Message

SUBJECT_MAX = 200
TEMPLATES = ("email.subject.j2", "email.txt.j2", "email.html.j2")


def compose(msg: Message, ctx: dict, override: str, overrides: dict[str, str]) -> None:
    """Fill the subject, the plain text and the HTML alternative of an email."""
    from syndicator.formatting import fit, override_renderer, template_renderer

    name = TEMPLATES[0]
    subject = template_renderer(name, overrides, ctx, mark_rtl=True)

    def one_line(fields: dict) -> str:  # a header line, whatever the template does
        return " ".join(subject(fields).split())

    fields = {"summary": truncate(" ".join(ctx["summary"].split()), SUBJECT_MAX), "title": ctx["title"]}
    msg.subject = fit(one_line, fields, ctx["hashtags"], len, SUBJECT_MAX, name)
    if override:
        msg.text = override_renderer(RULES, ctx)({"text": override})
    else:
        msg.text = template_renderer(TEMPLATES[1], overrides, ctx, mark_rtl=True)({})
    page = template_renderer(
        TEMPLATES[2], overrides, {**ctx, "override": override}, mark_rtl=False, tidy=False
    )
    msg.html = page({})


RULES = TextRules(
    templates=TEMPLATES,
    measure=len,
    max_length=None,  # an email body has no limit; the subject's is applied by compose
    unit="characters",
    subject_max=SUBJECT_MAX,
    compose=compose,
    utm_medium="email",
)
