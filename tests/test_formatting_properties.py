"""Properties of formatting that hold for any title, summary, categories and URL (hypothesis)."""

from __future__ import annotations

import html
import re
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from syndicator.formatting import render_message
from syndicator.targets.telegram.text import telegram_length
from syndicator.targets.twitter.text import twitter_length
from syndicator.textrules import ELLIPSIS, add_utm, hashtags, truncate
from tests.emulators.telegram import telegram_parse
from tests.helpers import Tags

# Telegram's HTML parse mode accepts these tags only; the default template uses two of them.
TELEGRAM_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre", "blockquote"}

urls = st.builds(
    "https://{}/{}{}{}".format,
    st.sampled_from(["www.nejatngo.org", "example.com", "news.example.org", "nejatngo.org"]),
    st.from_regex(r"[a-z0-9_/-]{0,60}", fullmatch=True),
    st.sampled_from(["", "?p=90005", "?p=1&lang=fa", "?utm_source=feed", "?"]),
    st.sampled_from(["", "#respond", "#/route?x=1"]),
)
# Short text, or a piece repeated up to ~6,000 characters so that every limit gets exercised.
long_text = st.one_of(
    st.text(max_size=400),
    st.tuples(st.text(min_size=1, max_size=40), st.integers(1, 150)).map(lambda piece: piece[0] * piece[1]),
)
posts = st.builds(
    lambda title, summary, categories, url, image, language: SimpleNamespace(
        title=title,
        summary=summary,
        content="",
        url=url,
        categories=categories,
        language=language,
        image_url=image,
        author="",
        published_at=None,
    ),
    title=long_text,
    summary=long_text,
    categories=st.lists(st.text(max_size=40), max_size=8),
    url=urls,
    image=st.sampled_from(["", "https://www.nejatngo.org/a.jpg"]),
    language=st.sampled_from(["", "en", "fa", "ar"]),
)


def default_link(url: str, fmt: str) -> str:
    """The post URL with the UTM parameters a format adds by default."""
    return add_utm(url, {"utm_source": fmt, "utm_medium": "social"})


@settings(max_examples=150, deadline=None)
@given(post=posts)
def test_tweet_always_fits_280_and_carries_the_link_intact(post: SimpleNamespace) -> None:
    message = render_message(post, "twitter")

    assert twitter_length(message.text) <= 280
    assert default_link(post.url, "twitter") in message.text.split("\n")


@settings(max_examples=150, deadline=None)
@given(post=posts)
def test_telegram_text_fits_4096_uses_allowed_tags_only_and_keeps_the_link(post: SimpleNamespace) -> None:
    message = render_message(post, "telegram")

    tags = Tags(message.text).found
    assert telegram_length(message.text) <= 4096
    assert {tag for tag, _ in tags} <= TELEGRAM_TAGS
    assert ("a", {"href": default_link(post.url, "telegram")}) in tags
    assert not re.search(r"&(?!(?:amp|lt|gt|quot|#x27|#\d+);)", message.text)  # no cut entity
    assert message.caption in ("", message.text)
    assert telegram_length(message.caption) <= 1024
    # And Telegram itself (the emulator's port of TDLib's parser) accepts it, within its limit.
    parsed, error = telegram_parse(message.text)
    assert error is None, error
    assert 0 < len(parsed) <= 4096


@settings(max_examples=100, deadline=None)
@given(post=posts)
def test_facebook_and_email_render_any_post_within_their_limits(post: SimpleNamespace) -> None:
    facebook = render_message(post, "facebook")
    email = render_message(post, "email")

    assert len(facebook.text) <= 63206 and facebook.link == default_link(post.url, "facebook")
    assert len(email.subject) <= 200 and "\n" not in email.subject
    assert add_utm(post.url, {"utm_source": "email", "utm_medium": "email"}) in email.text


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=300), limit=st.integers(min_value=0, max_value=320))
def test_truncate_returns_a_prefix_within_the_limit(text: str, limit: int) -> None:
    result = truncate(text, limit)

    assert len(result) <= limit or result == text
    assert result == text or text.startswith(result.removesuffix(ELLIPSIS).rstrip())


@settings(max_examples=100, deadline=None)
@given(categories=st.lists(st.text(max_size=30), max_size=10), limit=st.integers(min_value=0, max_value=5))
def test_hashtags_are_distinct_whole_words_within_the_limit(categories: list[str], limit: int) -> None:
    tags = hashtags(categories, limit)

    assert len(tags) <= limit
    assert len({tag.casefold() for tag in tags}) == len(tags)
    assert all(tag.startswith("#") and len(tag) > 1 and not re.search(r"[\s#]", tag[1:]) for tag in tags)


@settings(max_examples=100, deadline=None)
@given(url=urls)
def test_add_utm_keeps_the_original_url_and_fragment(url: str) -> None:
    result = add_utm(url, {"utm_source": "x", "utm_medium": "social"})

    before, _, fragment = url.partition("#")
    assert result.startswith(before.rstrip("?")) and result.endswith(fragment)
    assert ("utm_source=feed" in result) == ("utm_source=feed" in url)
    assert html.unescape(result) == result
