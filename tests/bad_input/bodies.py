"""Feed bodies for the catalogue: a well-formed RSS builder and the hostile documents."""

from __future__ import annotations

from xml.sax.saxutils import escape

SITE = "https://news.example/"
HOSTILE_HTML = (
    '<p onclick="steal()">Read <script>alert(1)</script><style>body{display:none}</style>'
    '<img src="https://news.example/a.jpg" onerror="alert(2)">'
    '<img src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9ImFsZXJ0KDMpIi8+">'
    '<iframe src="https://evil.example/"></iframe><object data="https://evil.example/x.swf"></object>'
    '<svg onload="alert(4)"><circle r="1"/></svg>'
    '<a href="javascript:alert(5)">this</a> <a href="JaVaScRiPt&#58;alert(6)">that</a>'
    '<a href="data:text/html,&lt;script&gt;alert(7)&lt;/script&gt;">data</a>'
    '<a href="https://news.example/more">more</a></p>'
)
# What must never reach a stored post or a rendered message (compared in lower case).
FORBIDDEN = ("<script", "onerror", "onload", "onclick", "<iframe", "<object", "<style", "<svg")
FORBIDDEN += ("javascript:", "data:text/html", "data:image/svg")


def item(
    n: int,
    *,
    guid: str | None = None,
    title: str | None = None,
    link: str | None = None,
    raw: str = "",
    **extra: str,
) -> str:
    """One RSS item: guid, title, link and description unless given ("" leaves a field out),
    other fields as keywords, and raw XML at the end."""
    fields = {
        "guid": f"{SITE}?p={n}" if guid is None else guid,
        "title": f"Post number {n}" if title is None else title,
        "link": f"{SITE}posts/{n}" if link is None else link,
        "description": extra.pop("description", f"The text of post {n}."),
        **extra,
    }
    return "<item>" + "".join(f"<{k}>{v}</{k}>" for k, v in fields.items() if v) + raw + "</item>"


def items(*numbers: int, **fields: str) -> str:
    return "".join(item(n, **fields) for n in numbers)


def rss(
    body: str = "", *, declaration: str = '<?xml version="1.0" encoding="utf-8"?>', doctype: str = ""
) -> str:
    """An RSS 2.0 document around body (items, mostly), with the content and media namespaces."""
    return (
        f'{declaration}{doctype}<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/" '
        'xmlns:media="http://search.yahoo.com/mrss/"><channel><title>Hostile test feed</title>'
        f"<link>{SITE}</link><description>x</description>{body}</channel></rss>"
    )


def cdata(html: str) -> str:
    return f"<![CDATA[{html}]]>"


def text(value: str) -> str:
    """value escaped for an XML text node."""
    return escape(value)


def billion_laughs() -> str:
    """Ten levels of ten references: a thousand million "lol"s, if expanded."""
    levels = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    )
    return rss(item(1, title="&lol9;", description="&lol9;"), doctype=f"<!DOCTYPE rss [{levels}]>")


def quadratic_blowup() -> str:
    """One 50 kB entity referenced 20,000 times: a gigabyte of text from a megabyte of XML."""
    doctype = f'<!DOCTYPE rss [<!ENTITY a "{"x" * 50_000}">]>'
    return rss(item(1, description="&a;" * 20_000), doctype=doctype)


def external_entity(system_id: str) -> str:
    """XXE: an entity whose text is whatever system_id points at."""
    doctype = f'<!DOCTYPE rss [<!ENTITY xxe SYSTEM "{system_id}">]>'
    return rss(item(1, title="Before &xxe; after", description="&xxe;"), doctype=doctype)


def parameter_entity(system_id: str) -> str:
    doctype = f'<!DOCTYPE rss [<!ENTITY % remote SYSTEM "{system_id}"> %remote;]>'
    return rss(item(1), doctype=doctype)


def atom(entries: str, *, base: str = "") -> str:
    xml_base = f' xml:base="{base}"' if base else ""
    return (
        f'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"{xml_base}>'
        f'<title>Atom test</title><id>urn:test</id><link href="{SITE}"/>{entries}</feed>'
    )


RDF = (
    '<?xml version="1.0"?><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
    'xmlns="http://purl.org/rss/1.0/"><channel rdf:about="https://news.example/"><title>RDF</title>'
    "<link>https://news.example/</link><description>x</description></channel>"
    '<item rdf:about="https://news.example/rdf/1"><title>RDF one</title><link>https://news.example/rdf/1</link>'
    "</item></rdf:RDF>"
)


def nested(depth: int) -> str:
    return "<div>" * depth + "deep" + "</div>" * depth
