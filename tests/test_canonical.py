"""syndicator.canonical: one article's identity across the feeds of a site (#12)."""

from __future__ import annotations

import pytest

from syndicator.canonical import canonical_url, guid_key, site_of


@pytest.mark.parametrize(
    ("a", "b"),
    [
        # scheme and host case
        ("HTTPS://Site.Example/Story", "https://site.example/Story"),
        # the default port
        ("https://site.example:443/story", "https://site.example/story"),
        ("http://site.example:80/story", "http://site.example/story"),
        # a trailing slash
        ("https://site.example/story/", "https://site.example/story"),
        ("https://site.example/", "https://site.example"),
        # tracking parameters
        ("https://site.example/s?utm_source=rss&utm_medium=x&UTM_Campaign=y", "https://site.example/s"),
        ("https://site.example/s?fbclid=1&gclid=2&mc_cid=3&mc_eid=4&ref=5", "https://site.example/s"),
        ("https://site.example/s?_ga=1&msclkid=2&igshid=3&pk_campaign=4", "https://site.example/s"),
        # the fragment
        ("https://site.example/s#comments", "https://site.example/s"),
        # the order of the remaining parameters, which stay
        ("https://site.example/?p=12&lang=en", "https://site.example/?lang=en&p=12"),
        # user info is no part of it
        ("https://user:secret@site.example/s", "https://site.example/s"),
        # a trailing dot on the host
        ("https://site.example./s", "https://site.example/s"),
        # IDN: Unicode and A-label forms
        ("https://bücher.example/s", "https://xn--bcher-kva.example/s"),
        # IPv6 literals and their default port
        ("http://[2001:DB8::1]:80/s", "http://[2001:db8::1]/s"),
    ],
)
def test_links_that_name_the_same_page_have_one_canonical_form(a: str, b: str) -> None:
    assert canonical_url(a) == canonical_url(b) != ""


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("https://site.example/s?p=1", "https://site.example/s?p=2"),  # a parameter that names the page
        ("https://site.example/a", "https://site.example/b"),
        ("https://site.example:8443/s", "https://site.example/s"),  # another port is another server
        ("https://site.example/S", "https://site.example/s"),  # paths are case-sensitive
        ("https://a.example/s", "https://b.example/s"),
    ],
)
def test_links_to_other_pages_stay_apart(a: str, b: str) -> None:
    assert canonical_url(a) != canonical_url(b)


def test_surrounding_whitespace_is_no_part_of_a_link() -> None:
    assert canonical_url("  https://site.example/s\n") == "https://site.example/s"


def test_the_canonical_form_is_stable() -> None:
    once = canonical_url("HTTPS://Site.Example:443/a/?utm_source=x&b=2&a=1#f")
    assert once == "https://site.example/a?a=1&b=2"
    assert canonical_url(once) == once


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "   ",
        "not a url",
        "javascript:alert(1)",
        "mailto:a@b.example",
        "ftp://site.example/file",
        "https://",
        "https:///path",
        "http://site.example:99999/",  # port out of range
        "http://site.example:abc/",
        "http://[::1/",  # an unclosed IPv6 literal
        "https://site.example/a b",  # a space
        "https://site.example/\x00",
        "https://site.example/a\nb",
    ],
)
def test_garbage_has_no_canonical_form(garbage: str) -> None:
    assert canonical_url(garbage) == ""


def test_huge_urls_have_no_canonical_form_and_cost_little() -> None:
    assert canonical_url("https://site.example/" + "a" * 2000) == ""
    assert canonical_url("https://site.example/?" + "&".join(f"utm_{i}=x" for i in range(100_000))) == ""
    # Under the cap once the tracking parameters are gone is still too long as sent: refused early.
    assert canonical_url("https://site.example/s?" + "utm_x=" + "y" * 1990) == ""


def test_a_non_ascii_host_that_idna_refuses_has_no_canonical_form() -> None:
    assert canonical_url("https://" + "ü" * 70 + ".example/") == ""  # a label over 63 octets


def test_wordpress_guid_and_shortlink_meet_whatever_the_feed_links() -> None:
    site = site_of("https://site.example/category/news/feed/")
    assert site == "site.example"
    assert guid_key("https://site.example/?p=123", site) == canonical_url("https://SITE.example/?p=123#x")
    assert guid_key("https://site.example/?p=123", site) == "https://site.example?p=123"


def test_a_guid_that_is_not_a_link_is_unique_only_within_its_site() -> None:
    assert guid_key("tag:site,2026:42", "site.example") == "guid:site.example:tag:site,2026:42"
    assert guid_key("42", "a.example") != guid_key("42", "b.example")
    assert guid_key("", "a.example") == ""
    assert guid_key("x" * 3000, "a.example") == ""
