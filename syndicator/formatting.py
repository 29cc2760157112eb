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
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache, partial
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jinja2
import regex
from django.conf import settings
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup
from twitter_text import parse_tweet
from twitter_text.extract_urls import extract_urls_with_indices

from syndicator.errors import PermanentError
from syndicator.feeds import clean_html
from syndicator.sandbox import Sandbox

FORMATS = ("telegram", "facebook", "twitter", "email", "mastodon", "bluesky")

TWITTER_MAX = 280  # weighted, twitter-text config v3
TELEGRAM_TEXT_MAX = 4096  # after entity parsing
TELEGRAM_CAPTION_MAX = 1024
FACEBOOK_MAX = 63206  # Graph API message limit, counted here in UTF-16 units like JavaScript does
EMAIL_SUBJECT_MAX = 200
# A stock Mastodon instance (/api/v2/instance configuration.statuses); an instance may set others.
MASTODON_MAX = 500  # max_characters
MASTODON_URL_LENGTH = 23  # characters_reserved_per_url
BLUESKY_MAX = 300  # graphemes (app.bsky.feed.post lexicon: text maxGraphemes 300)
SHORT_SUMMARY = 500  # Telegram and X show a teaser, not the article
# No tweet shows more code points than this; the cap keeps parse_tweet (~6 ms per 1,000 chars) cheap.
TWITTER_FIELD_CAP = 1000

ELLIPSIS = "…"
RLM = "\u200f"
ZWNJ = "\u200c"
RTL_LANGUAGES = frozenset({"ar", "fa", "he", "iw", "ur", "ps", "sd", "ug", "yi", "dv", "ckb"})

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_TAG = re.compile(r"<[^>]*>")
_LOOKS_LIKE_HTML = re.compile(r"<[a-zA-Z/!][^>]*>|&(?:#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);")
_READ_MORE = re.compile(r"\s*\[(?:…|\.\.\.)\]\s*$")  # WordPress's excerpt tail "[…]"
_JOINER = re.compile("[\u200c\u200d\ufe0e\ufe0f\U0001f3fb-\U0001f3ff]")  # joiners, variation, skin tone
_URL = re.compile(r"[a-z][a-z0-9+.-]*://|www\.", re.IGNORECASE)
_URL_TAIL = re.compile(r"(?:[a-z][a-z0-9+.-]*://|www\.)\S*$", re.IGNORECASE)
_TRAILING = " ,;:-\u2013\u2014(/\u060c\u061b"  # dropped before an ellipsis (Arabic comma, semicolon too)
_BLOCK_TAGS = frozenset(
    {"p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "tr"}
    | {"table", "section", "article", "figure", "figcaption", "hr"}
)
# Telegram's HTML parse mode: tag → allowed attributes (core.telegram.org/bots/api#html-style).
_TELEGRAM_TAGS: dict[str, frozenset[str]] = {
    **{tag: frozenset() for tag in ("b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "pre")},
    "tg-spoiler": frozenset(),
    "a": frozenset({"href"}),
    "span": frozenset({"class"}),
    "code": frozenset({"class"}),
    "blockquote": frozenset({"expandable"}),
    "tg-emoji": frozenset({"emoji-id"}),
    "tg-time": frozenset({"unix", "format"}),
}
_TELEGRAM_ENTITIES = frozenset({"lt", "gt", "amp", "quot"})
_MARKUP = re.compile(r"<(/?)([a-zA-Z][\w-]*)([^>]*)>|&([a-zA-Z]\w*);|<")  # a tag, a named entity, a bare "<"
_ATTRIBUTE = re.compile(r"""([\w-]+)(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'>]+))?""")  # name, then value skipped


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


def twitter_length(text: str) -> int:
    """Weighted length of a tweet by twitter-text's rules (every URL counts 23)."""
    return parse_tweet(text).weightedLength


def mastodon_length(text: str, url_length: int = MASTODON_URL_LENGTH) -> int:
    """Length of a status as Mastodon counts it: each http(s) URL as ``url_length``, the rest in code points.

    Mastodon (StatusLengthValidator) finds URLs with twitter-text's extractor, scheme required, and
    counts grapheme clusters; code points are never fewer, so a text that fits here fits there.
    """
    spans = [url["indices"] for url in extract_urls_with_indices(text, extract_urls_without_protocol=False)]
    return len(text) - sum(end - start for start, end in spans) + url_length * len(spans)


def telegram_length(text_html: str) -> int:
    """Length of Telegram HTML after entity parsing, in UTF-16 units (Telegram counts code points)."""
    return _utf16_length(html.unescape(_TAG.sub("", text_html)))


def bluesky_length(text: str) -> int:
    """Length of a Bluesky post in grapheme clusters (Unicode extended clusters, as the lexicon counts)."""
    return len(regex.findall(r"\X", text))


def _utf16_length(text: str) -> int:
    """Length in UTF-16 code units, as JavaScript and most APIs count."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def hashtags(categories: Iterable[str], limit: int = 3) -> list[str]:
    """Up to ``limit`` distinct "#tags" made from category names, letters of every script kept."""
    tags: list[str] = []
    seen: set[str] = set()
    for category in categories or ():
        if len(tags) >= limit:
            break
        body = _hashtag_body(str(category))
        if body and body.casefold() not in seen:
            seen.add(body.casefold())
            tags.append("#" + body)
    return tags


def add_utm(url: str, params: dict[str, str]) -> str:
    """The URL with ``params`` added to its query, keeping its fragment and any parameter it has."""
    if not params or not url.lower().startswith(("http://", "https://")):
        return url
    # Split by hand rather than urlsplit/urlunsplit, which re-serialise (and may alter) the rest.
    before_fragment, hash_mark, fragment = url.partition("#")
    base, _, query = before_fragment.partition("?")
    present = {key for key, _ in parse_qsl(query, keep_blank_values=True)}
    extra = urlencode([(k, str(v)) for k, v in params.items() if k not in present and v not in (None, "")])
    if not extra:
        return url
    joiner = "&" if query and not query.endswith("&") else ""
    return f"{base}?{query}{joiner}{extra}{hash_mark}{fragment}"


def plain_text(value: str, *, paragraphs: bool = True) -> str:
    """Readable plain text from a feed's summary or content, which may be HTML or already plain."""
    if _LOOKS_LIKE_HTML.search(value):
        parser = _TextExtractor()
        parser.feed(value)
        parser.close()
        value = "".join(parser.parts)
    lines = [" ".join(line.split()) for line in _CONTROL.sub("", value.replace("\r\n", "\n")).split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    if _READ_MORE.search(text):
        text = _READ_MORE.sub("", text)
        text += "" if text.endswith((".", "!", "?", "\u061f", "\u06d4", ELLIPSIS)) else ELLIPSIS
    return text if paragraphs else " ".join(text.split())


def truncate(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` code points, cut on a word boundary with "…"; URLs stay whole."""
    if len(text) <= limit:
        return text
    head = _cut(text, limit - 1)
    if _URL_TAIL.search(head):
        # A space keeps linkifiers from reading the ellipsis as part of the URL.
        head = _cut(text, limit - 2)
        return f"{head} {ELLIPSIS}" if head else ""
    return head + ELLIPSIS if head else ""


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
    override = _CONTROL.sub("", (text_override or "").replace("\r\n", "\n")).strip()
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
        _check_telegram_html(msg.text, name)
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
    "facebook": ("facebook.txt.j2", _utf16_length, FACEBOOK_MAX),
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
    override = _CONTROL.sub("", text.replace("\r\n", "\n")).strip()
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
    title = " ".join(_CONTROL.sub("", _attr(post, "title")).split())
    # Sanitized again, and only http(s) links: a poll stores clean HTML, but an editor may have
    # changed the post since (the admin), and these reach readers (nh3 costs microseconds).
    content = clean_html(_attr(post, "content"))
    summary = plain_text(clean_html(_attr(post, "summary")) or content)
    language = _attr(post, "language").strip()
    rtl = re.split(r"[-_]", language.lower())[0] in RTL_LANGUAGES or _mostly_rtl(title)
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
            values[key] = _mark_rtl(values[key])
        try:
            text = template.render(values)
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


class _TextExtractor(HTMLParser):
    """Collects an HTML fragment's text, with a line break around each block element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list | None = None) -> None:
        self.parts += ["\n"] if tag in _BLOCK_TAGS else []

    handle_endtag = handle_starttag  # the same line break after a block

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _check_telegram_html(text: str, name: str) -> None:
    """Raise PermanentError if Telegram would refuse the text's markup (the template is at fault)."""
    problems = []
    for match in _MARKUP.finditer(text):
        tag, attributes, entity = match.group(2, 3, 4)
        if entity is not None:
            bad = entity not in _TELEGRAM_ENTITIES
        else:
            allowed = _TELEGRAM_TAGS.get((tag or "").lower())
            bad = allowed is None or bool({a.lower() for a in _ATTRIBUTE.findall(attributes)} - allowed)
        problems += [match.group()[:40]] if bad else []
    if problems:
        found = ", ".join(dict.fromkeys(problems))
        raise PermanentError(f"message template {name} produced markup Telegram does not accept: {found}")


def _cut(text: str, size: int) -> str:
    """The longest prefix of at most ``size`` code points ending at a word boundary, tidied."""
    if size <= 0:
        return ""
    window = text[: size + 1]  # one more: a space right after the prefix ends a word too
    boundary = max((i for i, ch in enumerate(window) if ch.isspace()), default=-1)
    if boundary > 0:
        head = text[:boundary]
    elif _URL.search(text.split(None, 1)[0] if text.strip() else ""):
        return ""  # one long word that is (or holds) a URL: leave it out rather than cut it
    else:  # one long word (a script without spaces): cut it, but not inside a character cluster
        head = text[:size]
        while head and (unicodedata.category(text[len(head)])[0] == "M" or _JOINER.match(text[len(head)])):
            head = head[:-1]
    return head.rstrip().rstrip(_TRAILING).rstrip()


def _hashtag_body(name: str) -> str:
    """A category name as hashtag text: letters, marks, digits and "_", nothing else."""
    kept = []
    for ch in unicodedata.normalize("NFC", name):
        if ch in (ZWNJ, "_"):
            kept.append("_")
        elif unicodedata.category(ch)[0] in "LM" or unicodedata.category(ch) == "Nd":
            kept.append(ch)
        # Spaces, punctuation, symbols and emoji would end the hashtag early: they are dropped.
    body = re.sub("_+", "_", "".join(kept)).strip("_")
    # X and Telegram do not link a tag without a letter ("#2025").
    return body if any(unicodedata.category(ch)[0] == "L" for ch in body) else ""


def _starts_ltr(text: str) -> bool:
    """Whether the first strongly directional character of ``text`` is a left-to-right one."""
    kinds = (unicodedata.bidirectional(ch) for ch in text)
    return next((kind for kind in kinds if kind in ("L", "R", "AL")), "") == "L"


def _mostly_rtl(text: str) -> bool:
    """Whether most strongly directional letters of ``text`` are right-to-left ones."""
    kinds = [unicodedata.bidirectional(ch) for ch in text]
    return sum(k in ("R", "AL") for k in kinds) > sum(k == "L" for k in kinds)


def _mark_rtl(text: str) -> str:
    """Prefix RLM to lines that start with a Latin word, so clients lay out RTL paragraphs right."""
    return "\n".join(RLM + line if _starts_ltr(line) else line for line in text.split("\n"))


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
