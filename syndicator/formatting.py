"""Post → Message for each target format: templates, length limits, hashtags, UTM parameters, RTL.

Templates are the Jinja2 files in ``settings.SYNDICATOR_MESSAGE_TEMPLATES``, rendered in a sandbox
because admins edit them (and override them per target). They receive plain values, never the
post itself: title, summary, content_text, content_html (sanitized upstream by nh3), link (with
UTM parameters), url, hashtags, author, feed_name, language, direction, published_at, image_url
and override (an editor's text; only email.html.j2 shows it, the other bodies are replaced whole).

To fit a network's limit the summary is shortened first, then the title, on a word boundary with
"…"; only when even an empty title does not fit are hashtags dropped, last first. Shortening works
on plain text before escaping, so an entity or a tag is never cut, and a URL is kept whole or left
out whole. The link is never shortened.

Right to left (ar, fa, he, ur… or a mostly RTL title): direction="rtl", and in the plain-text and
Telegram formats a title or summary line whose first strong letter is Latin gets an RLM (U+200F)
in front, so clients lay it out RTL; no character is removed or reordered.

Hashtags: a ZWNJ (U+200C, the Persian half-space) becomes "_". Removing it would join letters
that Persian keeps apart and change how the word reads; twitter-text and TDLib accept ZWNJ inside
hashtags but other clients end the tag there, while "_" is a hashtag character on every network.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any
from urllib.parse import parse_qsl

import jinja2
from django.conf import settings
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from syndicator.errors import PermanentError
from syndicator.feeds import clean_html
from syndicator.sandbox import Sandbox, time_limit
from syndicator.sandbox import render as render_bounded
from syndicator.textrules import (
    BLUESKY_MAX,
    CONTROL_CHARS,
    FACEBOOK_MAX,
    MASTODON_MAX,
    MASTODON_URL_LENGTH,
    TELEGRAM_CAPTION_MAX,
    TELEGRAM_TEXT_MAX,
    TWITTER_MAX,
    add_utm,
    bluesky_length,
    check_telegram_html,
    hashtags,
    mark_rtl_lines,
    mastodon_length,
    mostly_rtl,
    plain_text,
    telegram_length,
    truncate,
    twitter_length,
    utf16_length,
)

FORMATS = ("telegram", "facebook", "twitter", "email", "mastodon", "bluesky")

EMAIL_SUBJECT_MAX = 200
SHORT_SUMMARY = 500  # Telegram and X show a teaser, not the article
# No tweet shows more code points than this; the cap keeps parse_tweet (~6 ms per 1,000 chars) cheap.
TWITTER_FIELD_CAP = 1000

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

    def as_log_text(self) -> str:
        """The message as one readable string for the delivery log."""
        if self.format == "email":
            return f"Subject: {self.subject}\n\n{self.text}"
        # Facebook sends the link beside the text; elsewhere the link is inside it (HTML-escaped
        # for Telegram, so a substring test would wrongly add it again).
        if self.format == "facebook" and self.link and self.link not in self.text:
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
    if fmt not in FORMATS:
        raise PermanentError(f"unknown message format {fmt!r}; expected one of {', '.join(FORMATS)}")
    ctx = _context(post, fmt, options or {})
    msg = Message(fmt, "", ctx["link"], **{key: ctx[key] for key in ("image_url", "language", "direction")})
    override = CONTROL_CHARS.sub("", (text_override or "").replace("\r\n", "\n")).strip()
    overrides = template_overrides or {}
    if fmt == "email":
        _render_email(msg, ctx, override, overrides)
    else:
        name, measure, limit = _body(fmt, options or {})
        if override:
            # No network shows more code points than its limit allows; the cap bounds the search.
            render, fields = _override_renderer(fmt, ctx), {"text": truncate(override, limit * 4)}
        else:
            render = _template_renderer(name, overrides, ctx, mark_rtl=True)
            fields = _body_fields(fmt, ctx)  # in the order they are shortened
        msg.text = _fit(render, fields, ctx["hashtags"], measure, limit, name)
    if fmt == "telegram":
        check_telegram_html(msg.text, name)
        msg.parse_mode = "HTML"
        fits_caption = telegram_length(msg.text) <= TELEGRAM_CAPTION_MAX
        msg.caption = msg.text if msg.image_url and fits_caption else ""
    if not msg.text.strip() and not (fmt == "facebook" and msg.link):  # a Page post may be a bare link
        raise PermanentError(f"the {fmt} message for this post is empty (no title, summary or link)")
    return msg


# The body of each format but email: template, how the network measures it, its limit.
_BODIES: dict[str, tuple[str, Callable[[str], int], int]] = {
    "telegram": ("telegram.html.j2", telegram_length, TELEGRAM_TEXT_MAX),
    "twitter": ("twitter.txt.j2", twitter_length, TWITTER_MAX),
    "facebook": ("facebook.txt.j2", utf16_length, FACEBOOK_MAX),
    "mastodon": ("mastodon.txt.j2", mastodon_length, MASTODON_MAX),  # the instance's: _body
    "bluesky": ("bluesky.txt.j2", bluesky_length, BLUESKY_MAX),
}


def _mastodon_limits(options: dict) -> tuple[Callable[[str], int], int]:
    """The measure and limit of the target's instance (stored in its settings by `targets check`)."""
    url_length = int(options.get("characters_reserved_per_url") or MASTODON_URL_LENGTH)
    return partial(mastodon_length, url_length=url_length), int(options.get("max_characters") or MASTODON_MAX)


# Formats whose limits are not the network's alone but the server's: from the target's options.
_LIMITS_FROM_OPTIONS: dict[str, Callable[[dict], tuple[Callable[[str], int], int]]] = {
    "mastodon": _mastodon_limits,
}


def _body(fmt: str, options: dict) -> tuple[str, Callable[[str], int], int]:
    """A format's template, measure and limit; for some, the measure and limit come from options."""
    name, measure, limit = _BODIES[fmt]
    if fmt in _LIMITS_FROM_OPTIONS:
        measure, limit = _LIMITS_FROM_OPTIONS[fmt](options)
    return name, measure, limit


def override_length(post: Any, fmt: str, text: str, *, options: dict | None = None) -> tuple[int, int | None]:
    """How long an editor's text comes out on a network (link added, as sent) and that network's limit.

    ``render_message`` would shorten a text that is too long; a repost form or the API asks here
    first so the editor can be told instead. Email has no body limit: (length, None).
    """
    if fmt not in _BODIES:
        return len(text), None
    ctx = _context(post, fmt, options or {})
    override = CONTROL_CHARS.sub("", text.replace("\r\n", "\n")).strip()
    _name, measure, limit = _body(fmt, options or {})
    return measure(_override_renderer(fmt, ctx)({"text": override})), limit


EMAIL_TEMPLATES = ("email.subject.j2", "email.txt.j2", "email.html.j2")


def message_templates(fmt: str) -> tuple[str, ...]:
    """The template files a format renders, each of which a target may override."""
    if fmt == "email":
        return EMAIL_TEMPLATES
    return (_BODIES[fmt][0],) if fmt in _BODIES else ()


def message_length(msg: Message, *, options: dict | None = None) -> tuple[int, int | None]:
    """A rendered message's length as its network counts it, and that network's limit.

    Email has no body limit: (length, None). ``options`` are the target's settings, for networks
    whose limit depends on them.
    """
    if msg.format not in _BODIES:
        return len(msg.text), None
    _name, measure, limit = _body(msg.format, options or {})
    return measure(msg.text), limit


def _body_fields(fmt: str, ctx: dict) -> dict[str, str]:
    """The fields a body template may shorten, summary first: the title matters more."""
    if fmt == "facebook":
        return {"summary": ctx["summary"], "title": ctx["title"]}
    summary = truncate(" ".join(ctx["summary"].split()), SHORT_SUMMARY)  # one paragraph
    if fmt == "twitter":  # the default template leaves the summary out; an override may use it
        return {"summary": summary, "title": truncate(ctx["title"], TWITTER_FIELD_CAP)}
    return {"summary": summary, "title": ctx["title"]}


def _override_renderer(fmt: str, ctx: dict) -> Callable[[dict], str]:
    """Render an editor's text as the body, adding the link unless the text has it already."""
    link = ctx["link"]

    def render(fields: dict) -> str:
        text = html.escape(fields["text"]) if fmt == "telegram" else fields["text"]
        if fmt == "facebook" or not link or _has_link(fields["text"], ctx):
            return text  # Facebook sends the link beside the message
        tail = f'<a href="{html.escape(link)}">{html.escape(link)}</a>' if fmt == "telegram" else link
        return f"{text}\n\n{tail}".strip()

    return render


def _render_email(msg: Message, ctx: dict, override: str, overrides: dict[str, str]) -> None:
    """Fill the subject, the plain text and the HTML alternative of an email."""
    name = "email.subject.j2"
    subject = _template_renderer(name, overrides, ctx, mark_rtl=True)

    def one_line(fields: dict) -> str:  # a header line, whatever the template does
        return " ".join(subject(fields).split())

    fields = {"summary": truncate(" ".join(ctx["summary"].split()), EMAIL_SUBJECT_MAX), "title": ctx["title"]}
    msg.subject = _fit(one_line, fields, ctx["hashtags"], len, EMAIL_SUBJECT_MAX, name)
    if override:
        msg.text = _override_renderer("email", ctx)({"text": override})
    else:
        msg.text = _template_renderer("email.txt.j2", overrides, ctx, mark_rtl=True)({})
    # No RLM marks in HTML: dir="rtl" on the document does that job.
    page = _template_renderer("email.html.j2", overrides, {**ctx, "override": override}, mark_rtl=False)
    msg.html = page({})


# --- context, templates and fitting -----------------------------------------------------------


def _context(post: Any, fmt: str, options: dict) -> dict[str, Any]:
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
        utm = {"utm_source": fmt, "utm_medium": "email" if fmt == "email" else "social"}
    categories = getattr(post, "categories", None) or []
    if isinstance(categories, str):
        categories = [categories]
    show_tags = options.get("hashtags")
    show_tags = (
        fmt in ("twitter", "telegram", "mastodon", "bluesky") if show_tags is None else bool(show_tags)
    )
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


def _template_renderer(name: str, overrides: dict[str, str], ctx: dict, *, mark_rtl: bool) -> Callable:
    """A function rendering template ``name`` with ``ctx`` updated by the fields it is given."""
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
        if name.endswith(".html.j2") and name != "telegram.html.j2":
            return text
        text = "\n".join(line.rstrip() for line in text.split("\n"))
        return re.sub(r"\n{3,}", "\n\n", text).strip()

    return render


def _fit(render: Callable, fields: dict, tags: list[str], measure: Callable, limit: int, name: str) -> str:
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
