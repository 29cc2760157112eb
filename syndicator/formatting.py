"""Post → Message for each network's format: templates, length limits, hashtags, UTM parameters, RTL.

How a network writes its messages is declared in its package (``syndicator/targets/<kind>/text.py``:
``TextRules`` — the templates, how it measures length, its limit, markup, link placement, hashtag
default); this module applies those rules and knows no network by name.

Templates are the Jinja2 files in ``settings.SYNDICATOR_MESSAGE_TEMPLATES``, rendered in a sandbox
because admins edit them (and override them per target). They receive plain values, never the
post itself: title, summary, content_text, content_html (sanitized upstream by nh3), link (with
UTM parameters), url, hashtags, author, feed_name, language, direction, published_at, image_url
and override (an editor's text; only a composed HTML body shows it, the other bodies are replaced
whole).

To fit a network's limit the summary is shortened first, then the title, on a word boundary with
"…"; only when even an empty title does not fit are hashtags dropped, last first. Shortening works
on plain text before escaping, so an entity or a tag is never cut, and a URL is kept whole or left
out whole. The link is never shortened.

Right to left (ar, fa, he, ur… or a mostly RTL title): direction="rtl", and in plain-text and
HTML-fragment bodies a title or summary line whose first strong letter is Latin gets an RLM
(U+200F) in front, so clients lay it out RTL; no character is removed or reordered.

Hashtags: a ZWNJ (U+200C, the Persian half-space) becomes "_". Removing it would join letters
that Persian keeps apart and change how the word reads; some clients accept ZWNJ inside hashtags
but others end the tag there, while "_" is a hashtag character on every network.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import jinja2
from django.conf import settings
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from syndicator.errors import PermanentError
from syndicator.feeds import clean_html
from syndicator.sandbox import Sandbox, time_limit
from syndicator.sandbox import render as render_bounded
from syndicator.targets.registry import formats, text_rules
from syndicator.textrules import (
    CONTROL_CHARS,
    add_utm,
    hashtags,
    mark_rtl_lines,
    mostly_rtl,
    plain_text,
    truncate,
)

if TYPE_CHECKING:
    from syndicator.targets.base import TextRules

RTL_LANGUAGES = frozenset({"ar", "fa", "he", "iw", "ur", "ps", "sd", "ug", "yi", "dv", "ckb"})


@dataclass
class Message:
    """One rendered message for one network, ready for its adapter."""

    format: str
    text: str
    link: str = ""
    subject: str = ""
    html: str = ""
    image_url: str = ""
    parse_mode: str = ""
    caption: str = ""
    language: str = ""
    direction: str = "ltr"
    link_beside: bool = False  # the network shows the link beside the text (TextRules.link_beside)

    def as_log_text(self) -> str:
        """The message as one readable string for the delivery log."""
        if self.subject:
            return f"Subject: {self.subject}\n\n{self.text}"
        # A link sent beside the text is shown after it; elsewhere the link is inside the text
        # (HTML-escaped in HTML markup, so a substring test would wrongly add it again).
        if self.link_beside and self.link and self.link not in self.text:
            return f"{self.text}\n\n{self.link}"
        return self.text


@time_limit  # one deadline for all the renderings of one message (syndicator.sandbox)
def render_message(
    post: Any,
    fmt: str,
    *,
    text_override: str | None = None,
    template_overrides: dict[str, str] | None = None,
    options: dict | None = None,
) -> Message:
    """Render a post as the message one network takes, within that network's limits."""
    rules = _rules(fmt)
    options = options or {}
    ctx = _context(post, fmt, rules, options)
    msg = Message(fmt, "", ctx["link"], **{key: ctx[key] for key in ("image_url", "language", "direction")})
    msg.link_beside = rules.link_beside
    override = CONTROL_CHARS.sub("", (text_override or "").replace("\r\n", "\n")).strip()
    overrides = template_overrides or {}
    if rules.compose is not None:
        rules.compose(msg, ctx, override, overrides)
    else:
        name = rules.templates[0]
        measure, limit = rules.limits(options)
        if limit is None:
            raise PermanentError(f"the {fmt} format declares neither a limit nor a composer")
        if override:
            # No network shows more code points than its limit allows; the cap bounds the search.
            render, fields = override_renderer(rules, ctx), {"text": truncate(override, limit * 4)}
        else:
            render = template_renderer(name, overrides, ctx, mark_rtl=True)
            fields = _body_fields(rules, ctx)  # in the order they are shortened
        msg.text = fit(render, fields, ctx["hashtags"], measure, limit, name)
    if rules.finish is not None:
        rules.finish(msg)
    if not msg.text.strip() and not (rules.link_beside and msg.link):  # a bare link is a post there
        raise PermanentError(f"the {fmt} message for this post is empty (no title, summary or link)")
    return msg


def _rules(fmt: str) -> TextRules:
    """The text rules of a format, or a PermanentError naming the formats there are."""
    try:
        return text_rules(fmt)
    except KeyError:
        raise PermanentError(
            f"unknown message format {fmt!r}; expected one of {', '.join(formats())}"
        ) from None


def override_length(post: Any, fmt: str, text: str, *, options: dict | None = None) -> tuple[int, int | None]:
    """How long an editor's text comes out on a network (link added, as sent) and that network's limit.

    ``render_message`` would shorten a text that is too long; a repost form or the API asks here
    first so the editor can be told instead. A format without a body limit: (length, None).
    """
    rules = _rules(fmt)
    measure, limit = rules.limits(options or {})
    if limit is None:
        return len(text), None
    ctx = _context(post, fmt, rules, options or {})
    override = CONTROL_CHARS.sub("", text.replace("\r\n", "\n")).strip()
    return measure(override_renderer(rules, ctx)({"text": override})), limit


def message_templates(fmt: str) -> tuple[str, ...]:
    """The template files a format renders, each of which a target may override."""
    try:
        return text_rules(fmt).templates
    except KeyError:
        return ()


def message_length(msg: Message, *, options: dict | None = None) -> tuple[int, int | None]:
    """A rendered message's length as its network counts it, and that network's limit.

    A format without a body limit: (length, None). ``options`` are the target's settings, for
    networks whose limit depends on them.
    """
    rules = _rules(msg.format)
    measure, limit = rules.limits(options or {})
    if limit is None:
        return len(msg.text), None
    return measure(msg.text), limit


def length_unit(fmt: str) -> str:
    """How a format's network counts length, in words for the repost counter."""
    try:
        return text_rules(fmt).unit
    except KeyError:
        return "characters"


def _body_fields(rules: TextRules, ctx: dict) -> dict[str, str]:
    """The fields a body template may shorten, summary first: the title matters more."""
    summary = ctx["summary"]
    if rules.summary_teaser is not None:  # one paragraph, a teaser rather than the article
        summary = truncate(" ".join(summary.split()), rules.summary_teaser)
    title = truncate(ctx["title"], rules.title_cap) if rules.title_cap else ctx["title"]
    return {"summary": summary, "title": title}


def override_renderer(rules: TextRules, ctx: dict) -> Callable[[dict], str]:
    """Render an editor's text as the body, adding the link unless the text has it already."""
    link = ctx["link"]
    as_html = rules.markup == "html"

    def render(fields: dict) -> str:
        text = html.escape(fields["text"]) if as_html else fields["text"]
        if rules.link_beside or not link or _has_link(fields["text"], ctx):
            return text  # a link shown beside the text need not be in it
        tail = f'<a href="{html.escape(link)}">{html.escape(link)}</a>' if as_html else link
        return f"{text}\n\n{tail}".strip()

    return render


# --- context, templates and fitting -----------------------------------------------------------


def _context(post: Any, fmt: str, rules: TextRules, options: dict) -> dict[str, Any]:
    """The plain values templates see, from a Post or anything with the same attributes."""
    title = " ".join(CONTROL_CHARS.sub("", _attr(post, "title")).split())
    # Sanitized again, and only http(s) links: a poll stores clean HTML, but an editor may have
    # changed the post since (the admin), and these reach readers (nh3 costs microseconds).
    content = clean_html(_attr(post, "content"))
    summary = plain_text(clean_html(_attr(post, "summary")) or content)
    language = _attr(post, "language").strip()
    rtl = re.split(r"[-_]", language.lower())[0] in RTL_LANGUAGES or mostly_rtl(title)
    url = _http_only(_attr(post, "url"))
    utm = options.get("utm", True)
    if isinstance(utm, str):  # from the CLI: "utm_source=x&utm_campaign=y"
        utm = dict(parse_qsl(utm)) or False
    if utm is True or utm is None:
        utm = {"utm_source": fmt, "utm_medium": rules.utm_medium}
    categories = getattr(post, "categories", None) or []
    if isinstance(categories, str):
        categories = [categories]
    show_tags = options.get("hashtags")
    show_tags = rules.hashtags if show_tags is None else _truthy(show_tags)
    tag_limit = options.get("hashtag_limit")
    return {
        "title": title,
        "summary": summary,
        "content_text": plain_text(content),
        "content_html": Markup(content),  # sanitized by nh3 just above
        "link": add_utm(url, utm) if utm else url,
        "url": url,
        "hashtags": hashtags(categories, 3 if tag_limit is None else int(tag_limit)) if show_tags else [],
        "author": _attr(post, "author"),
        "feed_name": _feed_name(post),
        "language": language,
        "direction": "rtl" if rtl else "ltr",
        "published_at": getattr(post, "published_at", None),
        "image_url": _http_only(_attr(post, "image_url")),
        "override": "",
    }


@lru_cache(maxsize=4)
def _environment(directory: str, autoescape: bool) -> SandboxedEnvironment:
    """The sandbox templates run in; one with HTML autoescaping, one without."""
    return Sandbox(
        loader=jinja2.FileSystemLoader(directory),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,  # a misspelt variable is an error, not a silent blank
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=True,  # admins may edit the files while workers run
    )


@lru_cache(maxsize=256)
def _compile(env: SandboxedEnvironment, source: str) -> jinja2.Template:
    """A target's template override, compiled once per source text."""
    return env.from_string(source)


def template_renderer(
    name: str, overrides: dict[str, str], ctx: dict, *, mark_rtl: bool, tidy: bool = True
) -> Callable[[dict], str]:
    """A function rendering template ``name`` with ``ctx`` updated by the fields it is given.

    ``tidy``: strip trailing spaces and collapse blank lines (a message body); off for a whole
    HTML document, whose white space is the template's.
    """
    env = _environment(str(settings.SYNDICATOR_MESSAGE_TEMPLATES), name.endswith(".html.j2"))
    label = f"{name} (this target's override)" if name in overrides else name
    try:
        template = _compile(env, overrides[name]) if name in overrides else env.get_template(name)
    except jinja2.TemplateError as exc:
        raise PermanentError(f"message template {label} is invalid: {exc}") from exc
    mark = mark_rtl and ctx["direction"] == "rtl"

    def render(fields: dict) -> str:
        values = {**ctx, **fields}
        for key in ("title", "summary", "content_text") if mark else ():
            values[key] = mark_rtl_lines(values[key])
        try:
            text = render_bounded(template, values)
        except Exception as exc:  # template code is admin input: any failure in it is a template error
            raise PermanentError(f"message template {label} failed: {type(exc).__name__}: {exc}") from exc
        if not tidy:
            return text
        text = "\n".join(line.rstrip() for line in text.split("\n"))
        return re.sub(r"\n{3,}", "\n\n", text).strip()

    return render


def fit(render: Callable, fields: dict, tags: list[str], measure: Callable, limit: int, name: str) -> str:
    """Render within ``limit``: shorten the fields in order, then drop hashtags last first; else raise."""
    for keep in range(len(tags), -1, -1):
        current = {**fields, "hashtags": tags[:keep]}
        text = render(current)
        if measure(text) <= limit:
            return text
        for field in fields:
            full, current[field] = current[field], ""
            best = render(current)
            if measure(best) > limit:
                continue
            low, high = 0, len(full) - 1  # the longest cut that fits: rendered length grows with the cut
            while low < high:
                middle = (low + high + 1) // 2
                candidate = render({**current, field: truncate(full, middle)})
                if measure(candidate) <= limit:
                    low, best = middle, candidate
                else:
                    high = middle - 1
            return best
    raise PermanentError(f"{name}: the message exceeds {limit} even with no title or summary (long link?)")


# --- small helpers ----------------------------------------------------------------------------


def _truthy(value: object) -> bool:
    """A yes/no option stored typed or as the CLI's old text ("false" is no)."""
    if isinstance(value, str):
        return value.strip().lower() in {"true", "yes", "on", "1"}
    return bool(value)


def _has_link(text: str, ctx: dict) -> bool:
    """Whether an editor's text already carries the post's link (with or without UTM parameters)."""
    return bool(ctx["link"] and ctx["link"] in text) or bool(ctx["url"] and ctx["url"] in text)


def _http_only(url: str) -> str:
    """url if it is http(s), else "" (javascript:, data: and the like are never links)."""
    url = url.strip()
    return url if url.lower().startswith(("http://", "https://")) else ""


def _attr(post: Any, name: str) -> str:
    """A text attribute of the post, "" when missing or None."""
    value = getattr(post, name, "")
    return "" if value is None else str(value)


def _feed_name(post: Any) -> str:
    """The post's feed name, or "" for a post without one."""
    try:
        feed = post.feed
    except Exception:  # an unsaved Post without a feed raises RelatedObjectDoesNotExist
        return ""
    return str(getattr(feed, "name", "") or "")
