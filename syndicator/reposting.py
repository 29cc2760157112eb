"""What an editor's repost checks and shows, shared by the Repost page and the JSON API.

Both choose targets the same way, measure an edited text the way each network counts it, and
refuse a text that is too long instead of letting the worker shorten it silently. The preview is
rendered by ``formatting.render_message``, the code the worker sends with.
"""

from __future__ import annotations

import html
import re
from dataclasses import asdict, dataclass

from syndicator.errors import PermanentError
from syndicator.formatting import length_unit, message_length, override_length, render_message
from syndicator.models import Post, Target

_TAG = re.compile(r"<[^>]*>")  # HTML markup has passed its network's tag check by now


@dataclass
class TargetPreview:
    """One target's message as it would be sent now, with its length against the network's limit."""

    target: str
    kind: str
    format: str
    text: str  # as readers see it (HTML markup shown as its visible text)
    markup: str = ""  # as sent, when that differs (HTML markup)
    subject: str = ""
    length: int = 0
    limit: int | None = None
    unit: str = "characters"
    fits: bool = True
    error: str = ""
    paused: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def choose_targets(names: list[str] | None) -> tuple[list[Target], dict[str, str]]:
    """The targets a repost names (None: every enabled one) and what is wrong with any of them."""
    if names is None:
        targets = list(Target.objects.filter(enabled=True).order_by("name"))
        return targets, {} if targets else {"*": "there is no enabled target to repost to"}
    names = list(dict.fromkeys(names))
    if not names:
        return [], {"*": "name at least one target, or leave out targets for every enabled one"}
    found = {t.name: t for t in Target.objects.filter(name__in=names)}
    problems = {n: "no target has this name" for n in names if n not in found}
    problems |= {n: "the target is disabled" for n, t in found.items() if not t.enabled}
    return [found[n] for n in names if n in found], problems


def too_long(post: Post, target: Target, text: str) -> str:
    """Why the text does not fit the target's network, or "" when it does."""
    fmt = target.message_format
    try:
        length, limit = override_length(post, fmt, text, options=target.settings)
    except (PermanentError, ValueError, TypeError) as exc:  # a target setting the formatter refuses
        return f"cannot measure the text for this target: {exc}"
    if limit is None or length <= limit:
        return ""
    return f"the text is {length} {unit_of(fmt)} with the link; {fmt} allows {limit}"


def text_problems(post: Post, targets: list[Target], text: str) -> dict[str, str]:
    """Each target whose network the edited text does not fit, with the reason."""
    if not text.strip():
        return {}
    return {t.name: reason for t in targets if (reason := too_long(post, t, text))}


def preview(post: Post, target: Target, text: str = "") -> TargetPreview:
    """The message ``target`` would get for ``post`` (with the editor's ``text``, if any)."""
    fmt = target.message_format
    shown = TargetPreview(target=target.name, kind=target.kind, format=fmt, text="", unit=unit_of(fmt))
    if target.paused_at:
        shown.paused = target.paused_reason or "paused"
    try:
        msg = render_message(
            post,
            fmt,
            text_override=text,
            template_overrides=target.template_overrides,
            options=target.settings,
        )
        if text.strip():
            shown.length, shown.limit = override_length(post, fmt, text, options=target.settings)
        else:
            shown.length, shown.limit = message_length(msg, options=target.settings)
    except (PermanentError, ValueError, TypeError) as exc:
        shown.error = str(exc)
        shown.fits = False
        return shown
    shown.text, shown.subject = msg.text, msg.subject
    if msg.parse_mode == "HTML":  # shown as its visible text
        shown.text, shown.markup = visible_text(msg.text), msg.text
    shown.fits = shown.limit is None or shown.length <= shown.limit
    if text.strip() and not shown.fits:
        # An editor's text that does not fit is refused (text_problems), never shortened: a
        # shortened preview would look like what is sent.
        shown.text = shown.markup = ""
        shown.error = (
            f"the text is {shown.length} {shown.unit} with the link; {fmt} allows {shown.limit}: "
            "it would be refused, not shortened"
        )
    return shown


def visible_text(markup: str) -> str:
    """HTML markup as readers see it: tags dropped, entities decoded."""
    return html.unescape(_TAG.sub("", markup))


def unit_of(fmt: str) -> str:
    """How the format's network counts (each network's TextRules.unit)."""
    return length_unit(fmt)
