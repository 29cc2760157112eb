"""The catalogue's second half: feeds that arrive whole but whose items are odd or hostile
(identity, dates, links, markup, encodings, volume). Case and the helpers are in catalogue.py."""

from __future__ import annotations

from datetime import UTC, datetime

from syndicator.models import Post
from tests.bad_input import bodies as b
from tests.bad_input.bodies import SITE, cdata, item, items, rss
from tests.bad_input.catalogue import MB, Case, Servers, body, change, fields

HOME = SITE.rstrip("/")


def urls(*expected: str):
    def check(posts: list[Post], servers: Servers) -> None:
        assert sorted(p.url for p in posts) == sorted(expected)

    return check


def encoded(text: str, encoding: str, declared: str | None = None) -> bytes:
    """An RSS document with one item titled text, in encoding, declaring declared (None: nothing)."""
    head = "" if declared is None else f'<?xml version="1.0" encoding="{declared}"?>'
    return rss(item(1, title=text), declaration=head).encode(encoding)


def published(expected: datetime | None):
    return fields(published_at=expected)


def left_out(reason: str):
    """The log says why items were left out."""
    return f"items left out: 1 {reason}"


def no_nul(posts: list[Post], servers: Servers) -> None:
    assert all("\x00" not in f"{p.title}{p.summary}{p.content}{p.guid}" for p in posts)


# RSS 2.0 reads a guid as the item's link unless it says otherwise.
NO_LINK = '<guid isPermaLink="false">urn:empty</guid>'
LONG_GUID = f"{SITE}?long=" + "g" * 3000
# fmt: off
CONTENT_CASES: list[Case] = [
    # --- identity ----------------------------------------------------------------------------------
    Case("no guids: the link is the identity", body(rss(items(1, 2, guid=""))), "ok", posts=3,
         then=change(rss(items(3, 1, 2, guid="")))),
    Case("no guid and no link: a hash of title and text", body(rss(items(1, 2, guid="", link=""))), "ok",
         posts=3, then=change(rss(items(3, 1, 2, guid="", link="")))),
    Case("duplicate guids within a feed", body(rss(item(1) + item(2, guid=f"{SITE}?p=1"))), "ok", posts=1,
         log=left_out("same guid as an earlier item"), check=fields(title="Post number 1")),
    Case("guids that change on every poll", body(rss(item(1, guid="a1") + item(2, guid="a2"))), "ok", posts=2,
         then=change(rss(item(1, guid="s-b-1") + item(2, guid="s-b-2"))),
         log="2 with a new guid and the link and title of a stored post"),
    Case("one item twice under two guids", body(rss(item(1, guid="a") + item(1, guid="b"))), "ok", posts=1,
         log="1 with a new guid and the link and title of a stored post"),
    Case("same title and home-page link, new guid", body(rss(item(1, title="Daily update", link=SITE))), "ok",
         posts=2, then=change(rss(item(2, title="Daily update", link=SITE)))),
    Case("a guid longer than the column", body(rss(item(1, guid=LONG_GUID))), "ok", posts=2,
         then=change(rss(item(2) + item(1, guid=LONG_GUID)))),
    Case("empty items", body(rss(item(1, guid="", title="", link="", description="", raw=NO_LINK) + item(2))),
         "ok", posts=1, log=left_out("empty (no title, link or text)")),
    Case("items without titles", body(rss(items(1, 2, title=""))), "ok", posts=2),
    # --- dates -------------------------------------------------------------------------------------
    Case("dated in the future", body(rss(item(1, pubDate="Fri, 01 Jan 2999 00:00:00 GMT"))), "ok", posts=1,
         check=published(datetime(2999, 1, 1, tzinfo=UTC))),
    Case("dated 1970", body(rss(item(1, pubDate="Thu, 01 Jan 1970 00:00:00 GMT"))), "ok", posts=1,
         check=published(datetime(1970, 1, 1, tzinfo=UTC))),
    Case("dates that are not dates", body(rss(item(1, pubDate="yesterday") + item(2, pubDate="99/99/99"))),
         "ok", posts=2, check=lambda posts, s: _all(p.published_at is None for p in posts)),
    # --- links -------------------------------------------------------------------------------------
    Case("relative links", body(rss(item(1, link="/posts/1") + item(2, link="posts/2"))), "ok", posts=2,
         check=lambda posts, s: urls(s.feed.url("/posts/1"), s.feed.url("/posts/2"))(posts, s)),
    Case("javascript: links", body(rss(item(1, link="javascript:alert(1)"))), "ok", posts=1,
         check=fields(url="")),
    Case("data: links, enclosures and media", body(rss(item(
        1, link="data:text/html,&lt;script&gt;alert(1)&lt;/script&gt;",
        raw='<enclosure url="data:image/png;base64,AAAA" type="image/png"/>'
            '<media:content url="data:image/png;base64,AAAA" medium="image"/>'))),
        "ok", posts=1, check=fields(url="", image_url="", enclosures=[])),
    Case("an enclosure without a type", body(rss(item(1, raw=f'<enclosure url="{SITE}a.mp3" length="0"/>'))),
         "ok", posts=1, check=fields(enclosures=[{"url": f"{SITE}a.mp3", "type": "", "length": None}],
                                     image_url="")),
    Case("Atom with a relative xml:base", body(b.atom(
        '<entry xml:base="posts/"><id>urn:e1</id><title>Based</title><link href="one.html"/>'
        "<updated>2025-01-01T00:00:00Z</updated></entry>", base=f"{SITE}blog/"),
        content_type="application/atom+xml"), "ok", posts=1, check=fields(url=f"{SITE}blog/posts/one.html")),
    Case("RSS 1.0 (RDF)", body(b.RDF), "ok", posts=1, check=fields(url=f"{SITE}rdf/1")),
    # --- markup ------------------------------------------------------------------------------------
    Case("script, onerror, iframe in content", body(rss(item(1, description=cdata(b.HOSTILE_HTML),
         raw=f"<content:encoded>{cdata(b.HOSTILE_HTML)}</content:encoded>"))), "ok", posts=1),
    Case("escaped markup in the description", body(rss(item(1, description=b.text(b.HOSTILE_HTML)))), "ok",
         posts=1),
    Case("CDATA tricks", body(rss(item(1, description="<![CDATA[<p>a]]>]]&gt;<![CDATA[<scr]]>"
                                                      "<![CDATA[ipt>alert(1)</script><iframe src=x>]]>"))),
         "ok", posts=1),
    Case("markup in the title", body(rss(item(1, title=cdata("<b>Bold</b> & <script>alert(1)</script> x")))),
         "ok", posts=1),
    Case("deeply nested HTML", body(rss(item(1, description=cdata(b.nested(5000))))), "ok", posts=1),
    # --- encodings ---------------------------------------------------------------------------------
    Case("declared ISO-8859-1, sent as UTF-8", body(encoded("Café über", "utf-8", "iso-8859-1")), "ok",
         posts=1, check=fields(title="Café über")),
    Case("declared UTF-8, sent as windows-1252", body(encoded("Café – “quoted”", "cp1252", "utf-8")), "ok",
         posts=1, check=fields(title="Café – “quoted”")),
    Case("declared KOI8-R, sent as UTF-8", body(encoded("Привет мир", "utf-8", "koi8-r")), "ok", posts=1,
         check=fields(title="Привет мир")),
    Case("charset in Content-Type only", body(encoded("Привет мир", "cp1251"),
         content_type="application/rss+xml; charset=windows-1251"), "ok", posts=1,
         check=fields(title="Привет мир")),
    Case("a byte order mark", body("\ufeff".encode() + encoded("Café", "utf-8", "utf-8")), "ok", posts=1,
         check=fields(title="Café")),
    Case("UTF-16 with a byte order mark", body(encoded("Café", "utf-16", "utf-16")), "ok", posts=1,
         check=fields(title="Café")),
    Case("Shift_JIS, declared", body(encoded("日本語のニュース", "shift_jis", "shift_jis")), "ok", posts=1,
         check=fields(title="日本語のニュース")),
    Case("character references to nothing", body(rss(item(1, title="A&#xD800;B&#0;C&#1114112;D"))), "ok",
         posts=1, check=no_nul),
    Case("NUL bytes in the text", body(rss(item(1, title="Nul\x00here", description="a\x00b"))), "ok",
         posts=1, check=no_nul),
    Case("a feed served as image/png", body(rss(item(1)), content_type="image/png"), "ok", posts=1),
    # --- volume ------------------------------------------------------------------------------------
    Case("10,000 items", body(rss(items(*range(10_000)))), "ok", posts=10_000, first_poll=True,
         log="first poll: backlog recorded"),
    Case("zero items", body(rss()), "ok"),
    Case("one huge item", body(rss(item(1, description=cdata("<p>" + "word " * (MB // 4) + "</p>")))), "ok",
         posts=1),
]
# fmt: on


def _all(values: object) -> None:
    assert all(values)  # type: ignore[call-overload]
