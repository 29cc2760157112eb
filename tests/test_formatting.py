"""Formatting: each network's message for a post, within that network's limits (syndicator/formatting.py)."""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest

from syndicator.errors import PermanentError
from syndicator.formatting import render_message
from syndicator.models import Post
from syndicator.targets.registry import formats, text_rules
from syndicator.targets.telegram.text import telegram_length
from syndicator.targets.twitter.text import twitter_length
from syndicator.textrules import RLM, add_utm, hashtags, plain_text, truncate
from tests.helpers import Tags

FORMATS = formats()
LIMITS = {"telegram": 4096, "twitter": 280, "facebook": 63206, "mastodon": 500, "bluesky": 10**6}

FEEDS = Path(__file__).resolve().parent.parent / "syndicator" / "demo_feeds"
CONTENT_ENCODED = "{http://purl.org/rss/1.0/modules/content/}encoded"
EN_URL = "https://www.nejatngo.org/en/?p=90005"


def feed_posts(name: str) -> list[Post]:
    """The items of a bundled demo feed as unsaved posts, the way feeds.py stores them."""
    channel = ET.parse(FEEDS / name).getroot().find("channel")
    return [
        Post(
            title=item.findtext("title"),
            url=item.findtext("link"),
            summary=item.findtext("description"),
            content=item.findtext(CONTENT_ENCODED),
            author=item.findtext("{http://purl.org/dc/elements/1.1/}creator"),
            categories=[category.text for category in item.findall("category")],
            language=channel.findtext("language"),
        )
        for item in channel.findall("item")
    ]


FIXTURE_POSTS = [
    pytest.param(post, id=f"{name.removesuffix('.rss')}-{number}")
    for name in ("nejat-en-recent.rss", "nejat-ar.rss", "nejat-fa.rss")
    for number, post in enumerate(feed_posts(name))
]


def utm_link(url: str, fmt: str) -> str:
    """The link a post gets by default in this format."""
    return add_utm(url, {"utm_source": fmt, "utm_medium": "email" if fmt == "email" else "social"})


def telegram_visible(text_html: str) -> str:
    """What a Telegram reader sees: tags gone, entities decoded."""
    return html.unescape(re.sub(r"<[^>]*>", "", text_html))


def assert_cut_on_word_boundary(result: str, source: str) -> None:
    """``result`` is a whole-word prefix of ``source`` followed by an ellipsis."""
    kept = result.removesuffix("…")
    assert result.endswith("…") and source.startswith(kept) and source[len(kept)] == " "


def make_post(**fields: object) -> SimpleNamespace:
    """A post-like object: render_message reads attributes only."""
    defaults = {"title": "", "url": EN_URL, "summary": "", "content": "", "author": "", "categories": []}
    return SimpleNamespace(**{**defaults, "language": "en", "image_url": "", "published_at": None, **fields})


# --- every format, on the real demo feeds ------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("post", FIXTURE_POSTS)
def test_demo_feed_posts_keep_title_and_link_within_the_limit(post: Post, fmt: str) -> None:
    rules = text_rules(fmt)
    message = render_message(post, fmt)

    link = utm_link(post.url, fmt)
    visible = telegram_visible(message.text) if rules.markup == "html" else message.text
    assert message.link == link
    # A composed message (a subject line, a Pin's title) carries the title there.
    assert post.title in (message.subject.replace(RLM, "") if rules.compose else visible)
    assert bool(message.subject) == (rules.compose is not None)
    if not rules.link_beside:  # a network that shows the link beside the text needs it not inside
        assert link in visible
    measure, limit = rules.limits({})
    assert limit is None or measure(message.text) <= limit
    assert measure(message.text) <= LIMITS.get(fmt, 10**6)  # the numbers, independently of the rules
    assert message.direction == ("rtl" if post.language in ("ar", "fa") else "ltr")
    assert message.language == post.language


def test_telegram_default_look_is_bold_title_summary_link_and_hashtags() -> None:
    post = feed_posts("nejat-en-recent.rss")[0]

    message = render_message(post, "telegram")

    href = html.escape(utm_link(EN_URL, "telegram"))
    assert message.text == (
        "<b>A Criterion for Proving the Violent Nature of the MEK</b>\n"
        "A Criterion for Proving the Violent Nature of the MEK. Read the full article on the site.\n\n"
        f'<a href="{href}">{href}</a>\n'
        "#MEK"
    )
    assert (message.parse_mode, message.caption) == ("HTML", "")


def test_twitter_default_is_title_link_and_hashtags() -> None:
    post = feed_posts("nejat-en-recent.rss")[0]

    message = render_message(post, "twitter")

    assert message.text == (
        "A Criterion for Proving the Violent Nature of the MEK\n"
        "https://www.nejatngo.org/en/?p=90005&utm_source=twitter&utm_medium=social\n"
        "#MEK"
    )


def test_facebook_message_is_title_and_summary_with_the_link_beside_it() -> None:
    post = feed_posts("nejat-en-recent.rss")[0]

    message = render_message(post, "facebook")

    assert message.text == (
        "A Criterion for Proving the Violent Nature of the MEK\n\n"
        "A Criterion for Proving the Violent Nature of the MEK. Read the full article on the site."
    )
    assert message.link == "https://www.nejatngo.org/en/?p=90005&utm_source=facebook&utm_medium=social"
    assert message.as_log_text().endswith("\n\n" + message.link)


def test_facebook_adds_hashtags_only_when_asked() -> None:
    post = feed_posts("nejat-en-recent.rss")[0]

    message = render_message(post, "facebook", options={"hashtags": True})

    assert message.text.endswith("\n\n#MEK")


def test_email_has_subject_plain_text_and_html() -> None:
    post = feed_posts("nejat-en-recent.rss")[0]

    message = render_message(post, "email")

    link = "https://www.nejatngo.org/en/?p=90005&utm_source=email&utm_medium=email"
    assert message.subject == "A Criterion for Proving the Violent Nature of the MEK"
    assert message.text == (
        "A Criterion for Proving the Violent Nature of the MEK\n\n"
        "A Criterion for Proving the Violent Nature of the MEK. Read the full article on the site.\n\n"
        f"{link}"
    )
    assert '<html lang="en" dir="ltr">' in message.html
    assert post.content in message.html  # already sanitized upstream, so included as-is
    assert f'<a href="{html.escape(link)}">' in message.html
    assert message.as_log_text().startswith(f"Subject: {message.subject}\n\n")


# --- limits and truncation ---------------------------------------------------------------------


def test_long_tweet_title_is_cut_on_a_word_boundary_keeping_link_and_hashtags() -> None:
    post = make_post(title="Rebranding too difficult " * 20, categories=["MEK", "Albania"])

    message = render_message(post, "twitter")

    title_line, link_line, tags_line = message.text.split("\n")
    assert twitter_length(message.text) <= 280
    assert_cut_on_word_boundary(title_line, "Rebranding too difficult " * 20)
    assert link_line == utm_link(EN_URL, "twitter")
    assert tags_line == "#MEK #Albania"


def test_tweet_title_without_spaces_is_cut_between_characters() -> None:
    post = make_post(title="日本語" * 100)

    message = render_message(post, "twitter")

    title = message.text.split("\n")[0]
    assert twitter_length(message.text) <= 280
    assert title.endswith("…") and ("日本語" * 100).startswith(title[:-1])


def test_tweet_drops_hashtags_last_first_when_even_an_empty_title_does_not_fit() -> None:
    categories = [f"Category{letter * 30}" for letter in "abcdefghij"]
    post = make_post(title="Short title", categories=categories)

    message = render_message(post, "twitter", options={"hashtag_limit": 10})

    tags = re.findall(r"#\S+", message.text)
    assert twitter_length(message.text) <= 280
    assert utm_link(EN_URL, "twitter") in message.text
    assert 0 < len(tags) < 10
    assert tags == [f"#{name}" for name in categories[: len(tags)]]  # whole tags, in order


def test_tweet_title_never_ends_in_a_cut_url() -> None:
    url_in_title = "https://example.org/" + "a" * 60
    post = make_post(title="word " * 45 + url_in_title + " and more words" * 5)

    message = render_message(post, "twitter")

    title = message.text.split("\n")[0]
    assert twitter_length(message.text) <= 280
    assert url_in_title in title or "https://example.org" not in title


def test_link_that_cannot_fit_raises_instead_of_being_cut() -> None:
    post = make_post(title="Title", url="https://localhost/" + "a" * 300)  # not a URL to twitter-text

    with pytest.raises(PermanentError, match=r"twitter\.txt\.j2"):
        render_message(post, "twitter")


def test_telegram_long_title_is_cut_inside_the_bold_tag() -> None:
    post = make_post(title="Pregnancy was taboo " * 300, summary="A summary.")

    message = render_message(post, "telegram")

    assert telegram_length(message.text) <= 4096
    assert re.match(r"<b>[^<]*…</b>\n", message.text)
    assert f'href="{html.escape(utm_link(EN_URL, "telegram"))}"' in message.text


def test_telegram_never_cuts_an_entity() -> None:
    post = make_post(title="Tom & Jerry", summary="&lt;fish&gt; & chips " * 400)

    message = render_message(post, "telegram")

    assert telegram_length(message.text) <= 4096
    assert not re.search(r"&(?!(?:amp|lt|gt|quot|#x27|#\d+);)", message.text)


@pytest.mark.parametrize(
    ("title", "image_url", "has_caption"),
    [
        ("Short title", "https://www.nejatngo.org/a.jpg", True),
        ("Long title " * 120, "https://www.nejatngo.org/a.jpg", False),
        ("Short title", "", False),
    ],
)
def test_telegram_caption_is_set_only_for_an_image_and_text_within_1024(
    title: str, image_url: str, has_caption: bool
) -> None:
    message = render_message(make_post(title=title, image_url=image_url), "telegram")

    assert message.caption == (message.text if has_caption else "")
    assert message.image_url == image_url


def test_facebook_long_summary_is_cut_to_the_graph_api_limit() -> None:
    post = make_post(title="Title", summary="lorem ipsum dolor " * 5000)

    message = render_message(post, "facebook")

    assert len(message.text) <= 63206
    assert_cut_on_word_boundary(message.text, "Title\n\n" + "lorem ipsum dolor " * 5000)


def test_email_subject_is_one_line_within_200_characters() -> None:
    post = make_post(title="Rebranding too difficult for the MEK " * 10)

    message = render_message(post, "email", template_overrides={"email.subject.j2": "News:\n{{ title }}"})

    assert "\n" not in message.subject
    assert len(message.subject) <= 200
    assert message.subject.startswith("News: Rebranding") and message.subject.endswith("…")


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 10, "short"),
        ("one two three four", 12, "one two…"),
        ("one two, three", 10, "one two…"),
        ("supercalifragilistic", 6, "super…"),
        ("see https://example.org/a/long/path", 20, "see…"),
        ("https://example.org/a/long/path", 10, ""),
        ("read https://example.org/a and more", 30, "read https://example.org/a …"),
        ("e\u0301e\u0301e\u0301e\u0301", 4, "e\u0301…"),
    ],
)
def test_truncate_cuts_on_word_boundaries_and_never_inside_a_url(
    text: str, limit: int, expected: str
) -> None:
    assert truncate(text, limit) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<p>Tom &amp; Jerry</p><p>Two</p>", "Tom & Jerry\n\nTwo"),
        ("a < b and c > d", "a < b and c > d"),
        ("Read the full article on the site. [&#8230;]", "Read the full article on the site."),
        ("The story goes on [&#8230;]", "The story goes on…"),
        ("line one<br>line   two", "line one\nline two"),
    ],
)
def test_plain_text_from_summary_html(value: str, expected: str) -> None:
    assert plain_text(value) == expected


def test_telegram_length_counts_text_after_entity_parsing_in_utf16_units() -> None:
    assert telegram_length('<b>a&amp;b</b> <a href="https://x.org">x</a>') == 5
    assert telegram_length("😀") == 2


# --- escaping ----------------------------------------------------------------------------------


def test_telegram_escapes_markup_in_title_and_summary() -> None:
    title = "Q&A: <script>alert(1)</script> & 1 < 2 > 0"
    post = make_post(title=title, summary="<p>Fish &amp; chips</p>")

    message = render_message(post, "telegram")

    assert "<b>Q&amp;A: &lt;script&gt;alert(1)&lt;/script&gt; &amp; 1 &lt; 2 &gt; 0</b>" in message.text
    assert {tag for tag, _ in Tags(message.text).found} == {"b", "a"}
    assert title in telegram_visible(message.text)
    assert "Fish & chips" in telegram_visible(message.text)


def test_plain_text_formats_keep_markup_characters_as_written() -> None:
    title = "Q&A: <MEK> & you"

    for fmt in ("twitter", "facebook", "email"):
        message = render_message(make_post(title=title), fmt)
        assert message.text.startswith(title)


def test_email_html_escapes_title_and_includes_sanitized_content() -> None:
    post = make_post(title="<script>x</script> & co", content="<p>Hello <em>world</em></p>")

    message = render_message(post, "email")

    assert "&lt;script&gt;x&lt;/script&gt; &amp; co" in message.html
    assert "<script>" not in message.html
    assert "<div><p>Hello <em>world</em></p></div>" in message.html
    assert message.subject == "<script>x</script> & co"


# --- editor's text ---------------------------------------------------------------------------


def test_telegram_text_override_is_escaped_and_gets_the_link() -> None:
    message = render_message(make_post(title="Title"), "telegram", text_override="Breaking: 1 < 2 & more")

    href = html.escape(utm_link(EN_URL, "telegram"))
    assert message.text == f'Breaking: 1 &lt; 2 &amp; more\n\n<a href="{href}">{href}</a>'


def test_text_override_that_already_has_the_link_is_not_given_it_twice() -> None:
    override = f"Read this: {EN_URL}"

    for fmt in ("telegram", "twitter", "email"):
        message = render_message(make_post(title="Title"), fmt, text_override=override)
        assert message.text == (html.escape(override) if fmt == "telegram" else override)


def test_long_tweet_override_is_cut_but_keeps_the_link() -> None:
    message = render_message(make_post(title="Title"), "twitter", text_override="editor words " * 60)

    text, link = message.text.split("\n\n")
    assert twitter_length(message.text) <= 280
    assert_cut_on_word_boundary(text, "editor words " * 60)
    assert link == utm_link(EN_URL, "twitter")


def test_facebook_and_email_overrides_replace_the_body() -> None:
    facebook = render_message(make_post(title="Title"), "facebook", text_override="My own words")
    email = render_message(make_post(title="Title"), "email", text_override="Para one\n\nPara two")

    assert facebook.text == "My own words"
    assert email.text == f"Para one\n\nPara two\n\n{utm_link(EN_URL, 'email')}"
    assert email.subject == "Title"
    assert "<p>Para one</p>" in email.html and "<p>Para two</p>" in email.html


# --- hashtags and UTM --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("categories", "limit", "expected"),
    [
        (["MEK"], 3, ["#MEK"]),
        (["Human Rights", "human rights", "HUMAN-RIGHTS"], 3, ["#HumanRights"]),
        (["العراق"], 3, ["#العراق"]),
        (["منظمة مجاهدي خلق"], 3, ["#منظمةمجاهديخلق"]),
        (["خانواده\u200cها"], 3, ["#خانواده_ها"]),  # ZWNJ becomes "_"
        (["اروپا", "Europe 2025"], 3, ["#اروپا", "#Europe2025"]),
        (["C++", "Q&A", "2025", "", "   ", "!!!", "🎉"], 3, ["#C", "#QA"]),
        (["a", "b", "c", "d"], 3, ["#a", "#b", "#c"]),
        (["a", "b"], 0, []),
        (["#MEK", "mek"], 3, ["#MEK"]),
        (["Cafe\u0301 Noir", "CAFÉ NOIR"], 3, ["#CaféNoir"]),
    ],
)
def test_hashtags_from_categories(categories: list[str], limit: int, expected: list[str]) -> None:
    assert hashtags(categories, limit) == expected


def test_hashtags_follow_each_networks_default() -> None:
    post = make_post(title="Title", categories=["MEK"])

    shown = {fmt: "#MEK" in render_message(post, fmt).text for fmt in FORMATS}

    assert shown == {fmt: text_rules(fmt).hashtags for fmt in FORMATS}
    # The defaults as the networks declare them today, so a change to one is seen here.
    assert {fmt for fmt, on in shown.items() if on} >= {"telegram", "twitter", "mastodon", "bluesky"}
    assert not shown["facebook"] and not shown["email"]
    assert "#MEK" not in render_message(post, "twitter", options={"hashtags": False}).text


UTM = {"utm_source": "twitter", "utm_medium": "social"}
ADDED = "utm_source=twitter&utm_medium=social"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://ex.org/post", f"https://ex.org/post?{ADDED}"),
        ("https://ex.org/?p=1", f"https://ex.org/?p=1&{ADDED}"),
        ("https://ex.org/?p=1#respond", f"https://ex.org/?p=1&{ADDED}#respond"),
        ("https://ex.org/post#top", f"https://ex.org/post?{ADDED}#top"),
        ("https://ex.org/?utm_source=newsletter", "https://ex.org/?utm_source=newsletter&utm_medium=social"),
        ("https://ex.org/?utm_source=a&utm_medium=b", "https://ex.org/?utm_source=a&utm_medium=b"),
        ("https://ex.org/?", f"https://ex.org/?{ADDED}"),
        ("https://ex.org/?a=1&", f"https://ex.org/?a=1&{ADDED}"),
        ("https://ex.org/#/route?x=1", f"https://ex.org/?{ADDED}#/route?x=1"),
        ("https://ex.org/a%20b?q=%E2%9C%93", f"https://ex.org/a%20b?q=%E2%9C%93&{ADDED}"),
        ("mailto:news@ex.org", "mailto:news@ex.org"),
        ("", ""),
    ],
)
def test_add_utm_keeps_query_fragment_and_existing_params(url: str, expected: str) -> None:
    assert add_utm(url, UTM) == expected


@pytest.mark.parametrize(
    ("utm", "expected"),
    [
        (False, EN_URL),
        ({"utm_campaign": "launch"}, f"{EN_URL}&utm_campaign=launch"),
        (True, f"{EN_URL}&utm_source=telegram&utm_medium=social"),
    ],
)
def test_utm_option(utm: object, expected: str) -> None:
    message = render_message(make_post(title="Title"), "telegram", options={"utm": utm})

    assert message.link == expected


# --- right to left -----------------------------------------------------------------------------


def test_farsi_post_is_rtl_with_title_latin_word_and_link_intact() -> None:
    post = feed_posts("nejat-fa.rss")[0]  # its title ends in the Latin "(MEK)"

    for fmt in FORMATS:
        rules = text_rules(fmt)
        message = render_message(post, fmt)
        visible = telegram_visible(message.text) if rules.markup == "html" else message.text
        assert message.direction == "rtl"
        shown = message.subject if rules.compose else visible
        assert "نمایندگان پارلمان اروپا و ماهیت سازمان (MEK)" in shown, fmt
        assert ("#اروپا" in visible) == rules.hashtags, fmt


def test_email_html_for_an_rtl_post_sets_dir_and_lang() -> None:
    post = feed_posts("nejat-ar.rss")[0]

    message = render_message(post, "email")

    assert '<html lang="ar" dir="rtl">' in message.html
    assert '<body dir="rtl"' in message.html


@pytest.mark.parametrize(
    ("title", "language", "direction"),
    [
        ("عودة ثلاثة أعضاء سابقين", "", "rtl"),  # detected from the title
        ("Title", "fa-IR", "rtl"),
        ("Title", "ur", "rtl"),
        ("The word العراق in English", "en", "ltr"),
        ("", "he", "rtl"),
    ],
)
def test_direction(title: str, language: str, direction: str) -> None:
    message = render_message(make_post(title=title, language=language), "twitter")

    assert message.direction == direction


def test_rtl_line_that_starts_with_a_latin_word_gets_an_rlm_and_stays_intact() -> None:
    title = "MEK در پارلمان اروپا"
    post = make_post(title=title, language="fa", summary="متن با https://example.org/x?y=1 وسط")

    tweet = render_message(post, "twitter")
    facebook = render_message(post, "facebook")

    assert tweet.text.split("\n")[0] == RLM + title
    assert "متن با https://example.org/x?y=1 وسط" in facebook.text
    assert render_message(post, "email").subject == RLM + title


# --- templates ---------------------------------------------------------------------------------


def test_template_override_replaces_the_file() -> None:
    overrides = {"twitter.txt.j2": "NEW: {{ title }} {{ link }}"}

    message = render_message(make_post(title="Title"), "twitter", template_overrides=overrides)

    assert message.text == f"NEW: Title {utm_link(EN_URL, 'twitter')}"


def test_telegram_override_is_autoescaped() -> None:
    overrides = {"telegram.html.j2": "<i>{{ title }}</i> {{ link }}"}

    message = render_message(make_post(title="a<b"), "telegram", template_overrides=overrides)

    assert message.text.startswith("<i>a&lt;b</i> ")


@pytest.mark.parametrize(
    ("fmt", "name"),
    [
        ("telegram", "telegram.html.j2"),
        ("twitter", "twitter.txt.j2"),
        ("facebook", "facebook.txt.j2"),
        ("email", "email.subject.j2"),
        ("email", "email.txt.j2"),
        ("email", "email.html.j2"),
    ],
)
@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ title.__class__.__subclasses__() }}",
        "{% if %}",
        "{{ no_such_variable }}",
        "{{ 1 / 0 }}",
    ],
    ids=["sandbox-mro", "sandbox-subclasses", "syntax", "undefined", "runtime"],
)
def test_broken_or_unsafe_override_raises_permanent_error_naming_the_template(
    fmt: str, name: str, source: str
) -> None:
    with pytest.raises(PermanentError, match=re.escape(name)):
        render_message(make_post(title="Title"), fmt, template_overrides={name: source})


def test_telegram_template_with_a_tag_telegram_refuses_raises_permanent_error() -> None:
    overrides = {"telegram.html.j2": "<p>{{ title }}</p><br>{{ link }}"}

    with pytest.raises(PermanentError, match=r"telegram\.html\.j2.*<p>"):
        render_message(make_post(title="Title"), "telegram", template_overrides=overrides)


def test_missing_template_file_raises_permanent_error(settings, tmp_path: Path) -> None:
    settings.SYNDICATOR_MESSAGE_TEMPLATES = tmp_path

    with pytest.raises(PermanentError, match=r"telegram\.html\.j2"):
        render_message(make_post(title="Title"), "telegram")


def test_templates_see_the_feed_name_when_the_post_has_a_feed() -> None:
    post = make_post(title="Title", feed=SimpleNamespace(name="Nejat Society"))

    message = render_message(post, "email")

    assert message.text.endswith("--\nNejat Society")


# --- odd input ---------------------------------------------------------------------------------


def test_post_with_only_title_and_url_renders_in_every_format() -> None:
    post = SimpleNamespace(title="Only a title", url=EN_URL)

    for fmt in FORMATS:
        assert "Only a title" in render_message(post, fmt).text


def test_empty_post_raises_permanent_error() -> None:
    with pytest.raises(PermanentError, match="empty"):
        render_message(make_post(url=""), "telegram")


def test_unknown_format_raises_permanent_error() -> None:
    with pytest.raises(PermanentError, match="unknown message format"):
        render_message(make_post(title="Title"), "myspace")


def test_utm_and_hashtag_options_as_the_cli_stores_them():
    post = SimpleNamespace(
        title="A title",
        url="https://site.example/p?id=1",
        summary="",
        content="",
        author="",
        categories=["World"],
        image_url="",
        language="en",
        published_at=None,
    )
    custom = render_message(post, "twitter", options={"utm": "utm_source=newsletter", "hashtags": False})
    assert "https://site.example/p?id=1&utm_source=newsletter" in custom.text and "#World" not in custom.text
    off = render_message(post, "twitter", options={"utm": False})
    assert "utm_" not in off.text and "#World" in off.text
