"""WordPress-like RSS bodies for the benchmarks: full content:encoded, categories, new guids on demand.

The shape follows what WordPress serves (dc:creator, several categories, an excerpt ending in
"[…]", content:encoded with paragraphs, a figure, links and the odd script tag), because parse and
sanitize cost depends on it: DESIGN.md's 30 ms / 200 ms figures are for such a 50-item feed.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from xml.sax.saxutils import escape

WORDS = [
    *("relief", "aid", "families", "shelter", "children", "winter", "kits", "volunteers"),
    *("distribution", "program", "community", "school", "health", "clinic", "water", "project"),
    *("donors", "report", "village", "support", "emergency", "training", "women", "season", "food"),
    *("campaign", "partners", "field", "team", "update", "region", "thanks", "week", "month"),
]
CATEGORIES = ("News", "Relief", "Education", "Health", "Winter Campaign", "Reports", "أخبار", "کمک‌رسانی")

HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"
  xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:atom="http://www.w3.org/2005/Atom">
<channel>
<title>Bench Feed {feed}</title>
<atom:link href="https://bench.example.org/{feed}/feed/" rel="self" type="application/rss+xml" />
<link>https://bench.example.org/{feed}/</link>
<description>Benchmark feed</description>
<lastBuildDate>{date}</lastBuildDate>
<language>en-US</language>
<generator>https://wordpress.org/?v=6.5</generator>
"""
ITEM = """<item>
<title>{title}</title>
<link>{link}</link>
<comments>{link}#respond</comments>
<dc:creator><![CDATA[{author}]]></dc:creator>
<pubDate>{date}</pubDate>
{categories}
<guid isPermaLink="false">https://bench.example.org/{feed}/?p={post_id}</guid>
<description><![CDATA[{excerpt} [&#8230;]]]></description>
<content:encoded><![CDATA[{content}]]></content:encoded>
</item>
"""


def _sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    return text[0].upper() + text[1:] + "."


def _content(rng: random.Random, link: str) -> str:
    paragraphs = [
        f"<p>{' '.join(_sentence(rng, rng.randint(8, 20)) for _ in range(rng.randint(3, 6)))}</p>"
        for _ in range(rng.randint(4, 7))
    ]
    image = rng.randint(1000, 9999)
    caption = _sentence(rng, 6)
    paragraphs.insert(
        1,
        f'<figure class="wp-block-image"><img src="https://bench.example.org/wp-content/{image}.jpg" '
        f'alt="photo {image}" width="1024" height="683" /><figcaption>{caption}</figcaption></figure>',
    )
    more = _sentence(rng, 5)
    paragraphs.append(
        f'<p><strong>Read more:</strong> <a href="{link}" target="_blank" rel="noopener">{more}</a>'
        '<script>window.tracker && tracker("view")</script></p>'
    )
    return "\n".join(paragraphs)


def wordpress_feed(feed: int, generation: int, items: int = 50) -> bytes:
    """A feed body whose items all have guids no earlier generation of this feed used."""
    rng = random.Random(feed * 1_000_003 + generation)
    now = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(hours=generation)
    parts = [HEAD.format(feed=feed, date=format_datetime(now))]
    for index in range(items):
        post_id = generation * items + index + 1
        link = f"https://bench.example.org/{feed}/{generation}/post-{post_id}/"
        parts.append(
            ITEM.format(
                title=escape(_sentence(rng, rng.randint(5, 12))),
                link=link,
                author=rng.choice(("Editor", "Field Team", "Communications")),
                date=format_datetime(now - timedelta(minutes=index)),
                categories="\n".join(
                    f"<category><![CDATA[{c}]]></category>" for c in rng.sample(CATEGORIES, 3)
                ),
                feed=feed,
                post_id=post_id,
                excerpt=" ".join(_sentence(rng, 12) for _ in range(3)),
                content=_content(rng, link),
            )
        )
    parts.append("</channel>\n</rss>\n")
    return "".join(parts).encode("utf-8")
