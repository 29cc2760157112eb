"""syndicator.feeds: fetching over real HTTP on 127.0.0.1, parsing the project's fixtures, sanitizing."""

from __future__ import annotations

import gzip
import hashlib
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from syndicator.errors import FeedFetchError, FeedParseError, FeedTooLarge
from syndicator.feeds import ParsedItem, fetch, parse, sanitize
from tests.feedserver import DEMO_FEEDS, FeedServer

FEED = (DEMO_FEEDS / "nejat-en-recent.rss").read_bytes()
# Small limits keep every failure case well under a second.
TIMEOUT = 0.5


def rss(items: str, *, channel: str = "", namespaces: str = "") -> bytes:
    """A minimal RSS 2.0 document around the given <item> elements."""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" {namespaces}><channel>'
        f"<title>Test</title><link>https://example.org/</link>{channel}{items}</channel></rss>"
    ).encode()


def one_item(item_xml: str, **kw: str) -> ParsedItem:
    """Parse a feed holding one <item> and return that item."""
    (item,) = parse(rss(f"<item>{item_xml}</item>", **kw)).items
    return item


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- fetch ---------------------------------------------------------------------------------------


def test_first_fetch_returns_the_body_its_hash_and_the_validators(feed_server: FeedServer) -> None:
    feed_server.set("/feed", FEED, last_modified="Wed, 31 Dec 2025 06:30:00 GMT")

    result = fetch(feed_server.url("/feed"), timeout=TIMEOUT)

    assert result.status == "ok"
    assert result.http_status == 200
    assert result.body == FEED
    assert result.body_hash == hashlib.sha256(FEED).hexdigest()
    assert result.etag.startswith('"')
    assert result.last_modified == "Wed, 31 Dec 2025 06:30:00 GMT"
    assert result.final_url == feed_server.url("/feed")


def test_conditional_get_with_the_etag_is_not_modified(feed_server: FeedServer) -> None:
    feed_server.set("/feed", FEED)
    first = fetch(feed_server.url("/feed"), timeout=TIMEOUT)

    result = fetch(feed_server.url("/feed"), etag=first.etag, previous_hash=first.body_hash, timeout=TIMEOUT)

    assert (result.status, result.http_status, result.body) == ("not_modified", 304, b"")
    assert result.etag == first.etag
    assert result.body_hash == first.body_hash
    assert feed_server.requests[-1]["headers"]["if-none-match"] == first.etag


def test_conditional_get_with_last_modified_is_not_modified(feed_server: FeedServer) -> None:
    stamp = "Wed, 31 Dec 2025 06:30:00 GMT"
    feed_server.set("/feed", FEED, etag=False, last_modified=stamp)

    result = fetch(feed_server.url("/feed"), last_modified=stamp, timeout=TIMEOUT)

    assert result.status == "not_modified"
    assert result.last_modified == stamp
    assert feed_server.requests[-1]["headers"]["if-modified-since"] == stamp


def test_same_body_without_validators_is_unchanged(feed_server: FeedServer) -> None:
    feed_server.set("/feed", FEED, etag=False)
    previous = hashlib.sha256(FEED).hexdigest()

    result = fetch(feed_server.url("/feed"), previous_hash=previous, timeout=TIMEOUT)

    assert (result.status, result.http_status, result.body) == ("unchanged", 200, b"")
    assert result.body_hash == previous


def test_changed_body_is_ok_with_new_validators(feed_server: FeedServer) -> None:
    feed_server.set("/feed", FEED)
    first = fetch(feed_server.url("/feed"), timeout=TIMEOUT)
    next_edition = (DEMO_FEEDS / "nejat-en-recent-next.rss").read_bytes()
    feed_server.set("/feed", next_edition)

    result = fetch(feed_server.url("/feed"), etag=first.etag, previous_hash=first.body_hash, timeout=TIMEOUT)

    assert result.status == "ok"
    assert result.body == next_edition
    assert result.etag != first.etag


def test_gzip_body_is_decoded(feed_server: FeedServer) -> None:
    feed_server.set("/feed", FEED, gzip=True)

    result = fetch(feed_server.url("/feed"), timeout=TIMEOUT)

    assert result.body == FEED
    assert "gzip" in feed_server.requests[-1]["headers"]["accept-encoding"]


def test_body_over_the_cap_is_too_large(feed_server: FeedServer) -> None:
    feed_server.set("/feed", FEED)

    with pytest.raises(FeedTooLarge, match="larger than 1000 bytes"):
        fetch(feed_server.url("/feed"), max_bytes=1000, timeout=TIMEOUT)


def test_size_cap_counts_decoded_bytes(feed_server: FeedServer) -> None:
    bomb = b"<rss>" + b" " * 200_000 + b"</rss>"
    feed_server.set("/feed", bomb, gzip=True)
    assert len(gzip.compress(bomb)) < 10_000

    with pytest.raises(FeedTooLarge):
        fetch(feed_server.url("/feed"), max_bytes=10_000, timeout=TIMEOUT)


def test_trickling_body_is_cut_at_the_deadline(feed_server: FeedServer) -> None:
    feed_server.set("/feed", FEED, trickle=0.02)  # each read succeeds; only the deadline stops it
    started = time.monotonic()

    with pytest.raises(FeedFetchError, match="timed out"):
        fetch(feed_server.url("/feed"), timeout=TIMEOUT)

    assert time.monotonic() - started < TIMEOUT + 0.5


def test_trickling_headers_are_cut_at_the_deadline(feed_server: FeedServer) -> None:
    feed_server.set("/feed", FEED, trickle=0.05, trickle_headers=True)
    started = time.monotonic()

    with pytest.raises(FeedFetchError, match="timed out"):
        fetch(feed_server.url("/feed"), timeout=TIMEOUT)

    assert time.monotonic() - started < TIMEOUT + 0.5


def test_silent_server_times_out(feed_server: FeedServer) -> None:
    feed_server.set("/feed", FEED, delay=3)
    started = time.monotonic()

    with pytest.raises(FeedFetchError, match="timed out"):
        fetch(feed_server.url("/feed"), timeout=0.3)

    assert time.monotonic() - started < 1.0


def test_server_error_is_a_fetch_error_with_the_status(feed_server: FeedServer) -> None:
    feed_server.set("/feed", "oops", status=500, content_type="text/plain")

    with pytest.raises(FeedFetchError) as caught:
        fetch(feed_server.url("/feed"), timeout=TIMEOUT)

    assert caught.value.http_status == 500
    assert str(caught.value) == "HTTP 500 Internal Server Error"


def test_missing_feed_is_a_fetch_error_with_404(feed_server: FeedServer) -> None:
    with pytest.raises(FeedFetchError, match="HTTP 404 Not Found") as caught:
        fetch(feed_server.url("/nowhere"), timeout=TIMEOUT)

    assert caught.value.http_status == 404


def test_redirects_are_followed_to_the_final_url(feed_server: FeedServer) -> None:
    feed_server.set_redirect("/old", "/middle", status=301)
    feed_server.set_redirect("/middle", feed_server.url("/feed"))
    feed_server.set("/feed", FEED)

    result = fetch(feed_server.url("/old"), timeout=TIMEOUT)

    assert result.status == "ok"
    assert result.final_url == feed_server.url("/feed")


def test_redirect_loop_is_a_fetch_error(feed_server: FeedServer) -> None:
    feed_server.set_redirect("/a", "/b")
    feed_server.set_redirect("/b", "/a")

    with pytest.raises(FeedFetchError, match="too many redirects"):
        fetch(feed_server.url("/a"), max_redirects=3, timeout=TIMEOUT)

    assert feed_server.hits("/a") + feed_server.hits("/b") == 4


def test_redirect_to_another_scheme_is_refused(feed_server: FeedServer) -> None:
    feed_server.set_redirect("/feed", "file:///etc/passwd")

    with pytest.raises(FeedFetchError, match="unsupported URL scheme 'file'"):
        fetch(feed_server.url("/feed"), timeout=TIMEOUT)


@pytest.mark.parametrize(
    "url", ["ftp://example.org/feed", "file:///etc/passwd", "javascript:alert(1)", "/feed"]
)
def test_only_http_and_https_urls_are_fetched(url: str) -> None:
    with pytest.raises(FeedFetchError, match="unsupported URL scheme"):
        fetch(url, timeout=TIMEOUT)


def test_connection_refused_is_a_fetch_error_without_credentials() -> None:
    url = f"http://alice:s3cret@127.0.0.1:{unused_port()}/feed"

    with pytest.raises(FeedFetchError, match="connection failed") as caught:
        fetch(url, timeout=TIMEOUT)

    assert "s3cret" not in str(caught.value)


def test_http_error_message_never_shows_url_credentials(feed_server: FeedServer) -> None:
    feed_server.set("/feed", "no", status=401, content_type="text/plain")
    url = feed_server.url("/feed").replace("http://", "http://alice:s3cret@")

    with pytest.raises(FeedFetchError) as caught:
        fetch(url, timeout=TIMEOUT)

    assert str(caught.value) == "HTTP 401 Unauthorized"
    assert feed_server.requests[-1]["headers"]["authorization"].startswith("Basic ")


def test_defaults_come_from_settings(feed_server: FeedServer, settings) -> None:
    settings.SYNDICATOR_USER_AGENT = "syndicator-test/1"
    settings.SYNDICATOR_FEED_MAX_BYTES = 100
    feed_server.set("/feed", FEED)

    with pytest.raises(FeedTooLarge):
        fetch(feed_server.url("/feed"))

    assert feed_server.requests[-1]["headers"]["user-agent"] == "syndicator-test/1"


# --- parse: the project's fixtures ----------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(DEMO_FEEDS.glob("*.rss")), ids=lambda p: p.name)
def test_every_fixture_parses_into_complete_items(path: Path) -> None:
    feed = parse(path.read_bytes(), base_url="https://www.nejatngo.org/feed/")

    assert feed.items
    assert feed.hub_url == "https://pubsubhubbub.appspot.com"
    assert len({item.guid for item in feed.items}) == len(feed.items)
    for item in feed.items:
        assert item.url.startswith("https://www.nejatngo.org/")
        assert item.title and item.content and item.categories
        assert item.published_at is not None and item.published_at.tzinfo is UTC


def test_english_2005_archive_fields() -> None:
    feed = parse((DEMO_FEEDS / "nejat-en-2005.rss").read_bytes())

    assert (feed.title, feed.link, feed.language) == ("Nejat Society", "https://www.nejatngo.org/en/", "en")
    assert len(feed.items) == 10
    first = feed.items[0]
    assert first.guid == "https://www.nejatngo.org/?p=31010"
    assert first.url == "https://www.nejatngo.org/en/?p=31010"
    assert first.title == "Oh where, O where have the terrorists gone?"
    assert first.author == "Linaelin"
    assert first.categories == ["Mujahedin Khalq; A proxy force"]
    assert first.summary.startswith("Remember those terrorists")
    assert first.content.startswith("<p>Remember those terrorists")
    assert first.language == "en"
    assert first.published_at == datetime(2005, 8, 23, 14, 40, tzinfo=UTC)
    pars_brief = feed.items[2]
    assert pars_brief.title == "Pars Brief – Issue No.17"
    assert pars_brief.enclosures == [
        {
            "url": "https://www.nejatngo.org/wp-content/uploads/2005/08/pars-brief-17.pdf",
            "type": "application/pdf",
            "length": 412337,
        }
    ]
    assert pars_brief.image_url == ""  # a PDF is not an image
    assert feed.items[3].title == "Americans’ Positive Stance in Fighting Terrorism"
    assert feed.items[7].categories == ["Iraqi Authorities' stance on the MEK"]


def test_arabic_feed_keeps_its_text_and_language() -> None:
    feed = parse((DEMO_FEEDS / "nejat-ar.rss").read_bytes())

    assert feed.title == "Nejat Society – عربي"
    assert feed.language == "ar"
    first = feed.items[0]
    assert first.title == "مستشار الأمن الوطني العراقي: يجب محاكمة عناصر المنظمة"
    assert first.categories == ["العراق"]
    assert feed.items[1].categories == ["منظمة مجاهدي خلق"]
    assert all(item.language == "ar" for item in feed.items)


def test_farsi_feed_keeps_its_text_and_zero_width_non_joiner() -> None:
    feed = parse((DEMO_FEEDS / "nejat-fa.rss").read_bytes())

    assert feed.language == "fa"
    assert feed.items[0].title == "نمایندگان پارلمان اروپا و ماهیت سازمان (MEK)"
    assert feed.items[0].categories == ["اروپا"]
    assert "خانواده\u200cهای" in feed.items[1].content
    assert feed.items[1].published_at == datetime(2025, 12, 23, 5, 30, tzinfo=UTC)


def test_recent_feed_guids_and_utc_dates() -> None:
    feed = parse((DEMO_FEEDS / "nejat-en-recent.rss").read_bytes())

    assert [item.guid for item in feed.items] == [
        f"https://www.nejatngo.org/?p={n}" for n in range(90005, 90000, -1)
    ]
    # "Wed, 31 Dec 2025 10:00:00 +0330"
    assert feed.items[0].published_at == datetime(2025, 12, 31, 6, 30, tzinfo=UTC)


def test_next_edition_adds_one_new_guid() -> None:
    before = {item.guid for item in parse((DEMO_FEEDS / "nejat-en-recent.rss").read_bytes()).items}
    after = parse((DEMO_FEEDS / "nejat-en-recent-next.rss").read_bytes()).items

    assert [item.guid for item in after if item.guid not in before] == ["https://www.nejatngo.org/?p=90006"]


def test_fetched_feed_parses_with_its_final_url(feed_server: FeedServer) -> None:
    feed_server.set_file("/feed", "nejat-en-recent.rss")
    result = fetch(feed_server.url("/feed"), timeout=TIMEOUT)

    feed = parse(result.body, base_url=result.final_url)

    assert len(feed.items) == 5


# --- parse: identity, links, images, dates ---------------------------------------------------------


def test_item_without_guid_is_identified_by_its_link() -> None:
    item = one_item("<title>T</title><link>https://example.org/a</link>")

    assert item.guid == "https://example.org/a"


def test_item_without_guid_or_link_is_identified_by_a_stable_hash() -> None:
    body = rss("<item><title>Only a title</title><description>Some text</description></item>")

    first = parse(body, base_url="https://one.example/feed").items[0]
    again = parse(body, base_url="https://two.example/feed").items[0]
    other = one_item("<title>Another title</title><description>Some text</description>")

    assert first.guid.startswith("sha256:") and len(first.guid) == len("sha256:") + 64
    assert again.guid == first.guid
    assert other.guid != first.guid
    assert first.url == ""


def test_relative_guid_is_not_rewritten_by_the_fetch_url() -> None:
    body = rss('<item><title>T</title><guid isPermaLink="false">post-42</guid><link>/p/42</link></item>')

    item = parse(body, base_url="http://127.0.0.1:8000/feed").items[0]

    assert item.guid == "post-42"
    assert item.url == "http://127.0.0.1:8000/p/42"


def test_relative_link_resolves_against_the_feed_link_without_base_url() -> None:
    assert one_item("<title>T</title><link>/p/1</link>").url == "https://example.org/p/1"


def test_javascript_link_is_dropped() -> None:
    item = one_item("<title>T</title><guid>g1</guid><link>javascript:alert(1)</link>")

    assert item.url == ""


def test_same_guid_twice_keeps_the_first_item() -> None:
    body = rss(
        "<item><guid>g</guid><title>First</title></item><item><guid>g</guid><title>Second</title></item>"
    )

    assert [item.title for item in parse(body).items] == ["First"]


def test_title_is_plain_text() -> None:
    item = one_item("<title>  Tom &amp;amp; Jerry\n  &lt;b&gt;return&lt;/b&gt;  </title><guid>g</guid>")

    assert item.title == "Tom & Jerry return"


MEDIA = 'xmlns:media="http://search.yahoo.com/mrss/"'


def test_image_from_media_content() -> None:
    item = one_item(
        '<guid>g</guid><media:content url="https://cdn.example/v.mp4" medium="video"/>'
        '<media:content url="https://cdn.example/a.jpg" medium="image"/>',
        namespaces=MEDIA,
    )

    assert item.image_url == "https://cdn.example/a.jpg"


def test_image_from_media_thumbnail() -> None:
    item = one_item('<guid>g</guid><media:thumbnail url="/thumbs/t.png"/>', namespaces=MEDIA)

    assert item.image_url == "https://example.org/thumbs/t.png"


def test_image_from_an_image_enclosure() -> None:
    item = one_item(
        '<guid>g</guid><enclosure url="https://example.org/talk.mp3" type="audio/mpeg" length="0"/>'
        '<enclosure url="https://example.org/cover.jpg" type="image/jpeg" length="1234"/>'
    )

    assert item.image_url == "https://example.org/cover.jpg"
    assert item.enclosures[0] == {"url": "https://example.org/talk.mp3", "type": "audio/mpeg", "length": None}


def test_image_from_the_first_usable_img_in_content() -> None:
    html = (
        '<p><img src="data:image/gif;base64,R0lGOD" alt=""> text '
        "<img class='x' src='/uploads/a.jpg?w=1&amp;h=2'><img src=\"https://example.org/b.jpg\"></p>"
    )
    item = one_item(f"<guid>g</guid><description><![CDATA[{html}]]></description>")

    assert item.image_url == "https://example.org/uploads/a.jpg?w=1&h=2"


def test_item_without_image() -> None:
    assert one_item("<guid>g</guid><description>text</description>").image_url == ""


def test_content_falls_back_to_summary() -> None:
    item = one_item("<guid>g</guid><description><![CDATA[<p>Only a summary</p>]]></description>")

    assert item.content == item.summary == "<p>Only a summary</p>"


def test_item_language_overrides_the_feed_language() -> None:
    item = one_item(
        "<guid>g</guid><dc:language>fa</dc:language>",
        channel="<language>en</language>",
        namespaces='xmlns:dc="http://purl.org/dc/elements/1.1/"',
    )

    assert item.language == "fa"


def test_default_language_applies_when_the_feed_has_none() -> None:
    feed = parse(rss("<item><guid>g</guid></item>"), default_language="sq")

    assert feed.language == "sq"
    assert feed.items[0].language == "sq"


def test_offset_date_converts_to_aware_utc() -> None:
    item = one_item("<guid>g</guid><pubDate>Wed, 31 Dec 2025 10:00:00 +0330</pubDate>")

    assert item.published_at == datetime(2025, 12, 31, 6, 30, tzinfo=UTC)
    assert item.published_at.utcoffset().total_seconds() == 0


def test_garbage_date_is_none() -> None:
    assert one_item("<guid>g</guid><pubDate>the day after tomorrow</pubDate>").published_at is None


def test_atom_feed() -> None:
    body = b"""<?xml version="1.0" encoding="utf-8"?>
    <feed xmlns="http://www.w3.org/2005/Atom" xml:lang="en">
      <title>Atom Example</title>
      <link rel="alternate" href="https://atom.example/"/>
      <link rel="hub" href="https://hub.example/"/>
      <id>urn:uuid:feed</id>
      <updated>2025-12-31T10:00:00+03:30</updated>
      <entry xml:lang="fa">
        <title type="html">First &amp;amp; best</title>
        <id>urn:uuid:entry-1</id>
        <link rel="alternate" href="https://atom.example/1"/>
        <updated>2025-12-31T10:00:00+03:30</updated>
        <author><name>Ann</name><email>ann@atom.example</email></author>
        <category term="news"/>
        <summary>Short</summary>
        <content type="html">&lt;p&gt;Long &lt;img src="/i.png"&gt;&lt;/p&gt;</content>
      </entry>
      <entry><title>Second</title><id>urn:uuid:entry-2</id><updated>2025-12-30T00:00:00Z</updated></entry>
    </feed>"""

    feed = parse(body)

    assert (feed.title, feed.link, feed.language, feed.hub_url) == (
        "Atom Example",
        "https://atom.example/",
        "en",
        "https://hub.example/",
    )
    first, second = feed.items
    assert first.guid == "urn:uuid:entry-1"
    assert first.url == "https://atom.example/1"
    assert first.title == "First & best"
    assert first.author == "Ann"  # the name, never the address
    assert first.categories == ["news"]
    assert (first.summary, first.content) == ("Short", '<p>Long <img src="/i.png"></p>')
    assert first.image_url == "https://atom.example/i.png"
    assert first.language == "fa"
    assert first.published_at == datetime(2025, 12, 31, 6, 30, tzinfo=UTC)
    assert (second.guid, second.url, second.language) == ("urn:uuid:entry-2", "", "en")


# --- parse: what is not a feed ---------------------------------------------------------------------


def test_html_page_served_as_200_is_a_parse_error(feed_server: FeedServer) -> None:
    page = "<!doctype html><html><head><title>Welcome</title></head><body><p>Hi</p></body></html>"
    feed_server.set("/feed", page, content_type="text/html; charset=utf-8")
    result = fetch(feed_server.url("/feed"), timeout=TIMEOUT)

    with pytest.raises(FeedParseError, match="not an RSS/Atom feed"):
        parse(result.body, base_url=result.final_url)


@pytest.mark.parametrize("body", [b"", b"garbage \x00\xff", b"<rss><channel><title>cut", b"/etc/passwd"])
def test_bodies_that_are_not_feeds_are_parse_errors(body: bytes) -> None:
    with pytest.raises(FeedParseError, match="not an RSS/Atom feed"):
        parse(body)


def test_valid_feed_without_items_has_an_empty_list() -> None:
    feed = parse(rss(""))

    assert (feed.title, feed.items) == ("Test", [])


def test_feed_with_entries_and_an_encoding_mismatch_is_accepted() -> None:
    body = rss("<item><guid>g</guid><title>Café</title></item>").replace(b"Caf\xc3\xa9", b"Caf\xe9")

    (item,) = parse(body).items

    assert item.title == "Café"


# --- sanitize --------------------------------------------------------------------------------------


def test_parse_leaves_html_raw_for_the_caller_to_sanitize() -> None:
    item = one_item("<guid>g</guid><description><![CDATA[<p>x<script>alert(1)</script></p>]]></description>")

    assert "<script>" in item.content


def test_sanitize_strips_scripts_handlers_iframes_and_javascript_links() -> None:
    dirty = (
        '<p dir="rtl" onclick="steal()">Hello <script>alert(1)</script><style>p{}</style>'
        '<img src="https://example.org/a.jpg" onerror="alert(2)">'
        '<iframe src="https://evil.example/"></iframe>'
        '<a href="javascript:alert(3)">bad</a> <a href="https://example.org/">good</a>'
        '<a href="mailto:info@example.org">mail</a></p>'
    )
    item = one_item(f"<guid>g</guid><description><![CDATA[{dirty}]]></description>")

    clean = sanitize(item)

    assert clean.content == clean.summary
    for forbidden in ("<script", "alert", "onclick", "onerror", "<iframe", "javascript:", "<style"):
        assert forbidden not in clean.content
    assert '<p dir="rtl">' in clean.content
    assert '<img src="https://example.org/a.jpg">' in clean.content
    assert '<a href="https://example.org/" rel="noopener">good</a>' in clean.content
    assert 'href="mailto:info@example.org"' in clean.content
    assert "<script>" in item.content  # a copy: the parsed item is untouched


def test_sanitize_keeps_a_plain_summary_plain() -> None:
    item = one_item("<guid>g</guid><description>Plain words, nothing else.</description>")

    assert sanitize(item).summary == "Plain words, nothing else."


def test_a_callers_client_is_used_and_left_open(feed_server: FeedServer) -> None:
    feed_server.set("/feed", FEED)
    feed_server.set("/slow", FEED, trickle=0.02)

    with httpx.Client() as client:
        assert fetch(feed_server.url("/feed"), timeout=TIMEOUT, client=client).status == "ok"
        with pytest.raises(FeedFetchError, match="timed out"):
            fetch(feed_server.url("/slow"), timeout=TIMEOUT, client=client)
        assert fetch(feed_server.url("/feed"), timeout=TIMEOUT, client=client).status == "ok"


def test_relative_links_and_images_in_content_become_absolute() -> None:
    body = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><link>https://news.example/</link>
    <item><title>One</title><link>https://news.example/2026/01/one/</link><guid>1</guid>
    <description><![CDATA[<p><a href="/about/">About</a> <img src="img/a.jpg" alt="a"></p>]]></description>
    </item></channel></rss>"""
    (item,) = parse(body, base_url="https://news.example/feed/").items

    clean = sanitize(item)

    # Relative to the feed document (RSS has no xml:base here), as feed readers resolve them.
    assert '<a href="https://news.example/about/"' in clean.summary
    assert '<img src="https://news.example/feed/img/a.jpg"' in clean.summary


def test_atom_xml_base_decides_what_content_links_are_relative_to() -> None:
    body = b"""<?xml version="1.0" encoding="utf-8"?>
    <feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://news.example/fa/">
    <title>t</title><id>urn:t</id><updated>2026-01-01T00:00:00Z</updated>
    <entry><title>One</title><id>urn:1</id><updated>2026-01-01T00:00:00Z</updated>
    <link href="2026/one/"/>
    <content type="html" xml:base="https://cdn.example/media/">&lt;img src="x.jpg"&gt;
    &lt;a href="mailto:desk@news.example"&gt;desk&lt;/a&gt;
    &lt;a href="javascript:alert(1)"&gt;bad&lt;/a&gt;</content>
    </entry></feed>"""
    (item,) = parse(body, base_url="https://news.example/feed/").items

    clean = sanitize(item)

    assert item.url == "https://news.example/fa/2026/one/"
    assert '<img src="https://cdn.example/media/x.jpg">' in clean.content
    assert 'href="mailto:desk@news.example"' in clean.content  # absolute links stay as they are
    assert "javascript" not in clean.content  # and the scheme check still applies after resolving


def test_a_hung_name_lookup_fails_the_fetch_at_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    real_lookup = socket.getaddrinfo
    released = threading.Event()

    def hung_resolver(host: str, *args: object, **kwargs: object) -> list:
        if host == "hung-resolver.example":
            released.wait(10)  # a resolver that does not answer (released at the end of the test)
        return real_lookup(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", hung_resolver)
    started = time.monotonic()
    try:
        with pytest.raises(FeedFetchError, match=r"resolving hung-resolver\.example took longer than"):
            fetch("http://hung-resolver.example/feed", timeout=0.5)
    finally:
        released.set()
    assert time.monotonic() - started < 2
