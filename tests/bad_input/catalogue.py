"""The hostile-feed catalogue: how each feed is served, and what the feed and the log must show.

A case polls its feed once (or ``then`` changes the answer and it polls again), through
syndicator.watch.poll_feed, on a feed polled before (so new posts are delivered) unless
``first_poll``. test_catalogue.py checks, besides each case's own outcome, what holds for all:
nothing crashes (no "internal error", no ERROR log), every delivery renders and is sent, and no
stored post or rendered message carries script, event handlers, frames or javascript: links.

Decisions the cases pin down:
  - a guid seen twice in one body: the first item wins (identity is the guid);
  - a guid that changes on every fetch: the item is still the same post when its link and title
    match a stored one (syndicator/watch.py explains why), except when the link is the site's
    home page;
  - dates are kept as the feed gives them, 1970 and 2999 included (only a date that is not a
    date becomes none): the feed is the authority on when it published;
  - a truncated document, an entity bomb: the poll fails and nothing is stored; the next poll
    may get the whole document;
  - a redirect from https to http is followed (as browsers and feed readers do): the redirect
    comes from the https server, and every body is sanitized whatever the transport.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass

from syndicator.models import Post
from tests.bad_input import bodies as b
from tests.bad_input import rawserver as raw
from tests.bad_input.bodies import item, items, rss
from tests.feedserver import FeedServer

MB = 1 << 20
# The caps the catalogue runs with (test_limits.py proves the real defaults).
TIMEOUT = 1.5
MAX_BYTES = 2 * MB


@dataclass
class Servers:
    """The test's two loopback servers: a well-behaved one and a raw one."""

    feed: FeedServer
    raw: raw.RawServer


Serve = Callable[[Servers], str]  # sets the answers up, returns the URL to poll
Check = Callable[[list[Post], Servers], None]


@dataclass(frozen=True)
class Case:
    """One hostile feed: how it is served, and what the feed, the posts and the log must show."""

    name: str
    serve: Serve
    status: str  # Feed.last_status after the last poll: "ok", "error" or "not_modified"
    error: str = ""  # in Feed.last_error and in the poll's warning
    posts: int = 0  # stored after every poll
    then: Callable[[Servers], None] | None = None  # a change before a second poll
    first_poll: bool = False  # a new feed: its backlog is recorded, not delivered
    log: str = ""  # in some log line
    check: Check | None = None


def body(document: str | bytes, path: str = "/feed", **answer: object) -> Serve:
    """Serve document at path on the feed server."""

    def serve(servers: Servers) -> str:
        servers.feed.set(path, document, **answer)  # type: ignore[arg-type]
        return servers.feed.url(path)

    return serve


def change(document: str | bytes, path: str = "/feed") -> Callable[[Servers], None]:
    return lambda servers: servers.feed.set(path, document)


def script(run: raw.Script) -> Serve:
    """Answer with a raw script (no well-behaved HTTP server does this)."""

    def serve(servers: Servers) -> str:
        servers.raw.set("/feed", run)
        return servers.raw.url("/feed")

    return serve


def pointing_home(document: Callable[[str], str]) -> Serve:
    """Serve document(url of /secret on the same server): the parser must never fetch it."""

    def serve(servers: Servers) -> str:
        servers.feed.set("/secret", "secret-value", content_type="text/plain")
        return body(document(servers.feed.url("/secret")))(servers)

    return serve


def redirect_to(location: str) -> Serve:
    def serve(servers: Servers) -> str:
        servers.feed.set_redirect("/feed", location)
        return servers.feed.url("/feed")

    return serve


def chain(servers: Servers) -> str:
    """/feed → 301 /a → 302 /b → 307 /final/feed.xml, whose items link relatively."""
    servers.feed.set_redirect("/feed", "/a", status=301)
    servers.feed.set_redirect("/a", servers.feed.url("/b"), status=302)
    servers.feed.set_redirect("/b", "final/feed.xml", status=307)
    servers.feed.set("/final/feed.xml", rss(item(1, link="../posts/1")))
    return servers.feed.url("/feed")


def loop(servers: Servers) -> str:
    servers.feed.set_redirect("/feed", "/other")
    servers.feed.set_redirect("/other", "/feed")
    return servers.feed.url("/feed")


def fields(**expected: object) -> Check:
    """The first stored post has these field values."""

    def check(posts: list[Post], servers: Servers) -> None:
        for name, value in expected.items():
            assert getattr(posts[0], name) == value, (name, getattr(posts[0], name))

    return check


def nothing_fetched_from(path: str) -> Check:
    def check(posts: list[Post], servers: Servers) -> None:
        assert servers.feed.hits(path) == 0, f"the parser fetched {path}"
        assert all("secret-value" not in f"{p.title} {p.summary} {p.content}" for p in posts)

    return check


def no_local_file(posts: list[Post], servers: Servers) -> None:
    assert all("root:" not in f"{p.title}{p.summary}{p.content}" for p in posts), "read /etc/passwd"


def cut_early(path: str = "/feed", most: int = 16 * MB) -> Check:
    """The client left long before the server sent everything (sockets buffer a few MB)."""
    return lambda posts, servers: _below(servers.raw.sent(path), most)


def _below(value: int, most: int) -> None:
    assert value < most, f"{value} bytes went out"


def closed_port(servers: Servers) -> str:
    """A loopback URL nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/feed"


FULL = rss(items(1, 2, description="A long description of the post that the truncation cuts."))
# fmt: off
CASES: list[Case] = [
    # --- not a feed ---------------------------------------------------------------------------
    Case("not XML at all", body("Hello, this is plain text.\n", content_type="text/plain"), "error",
         "not an RSS/Atom feed"),
    Case("an HTML error page with status 200", body(
        "<!doctype html><html><head><title>Error</title></head><body><h1>Database error</h1></body></html>",
        content_type="text/html"), "error", "not an RSS/Atom feed"),
    Case("JSON with status 200", body('{"version": "https://jsonfeed.org/version/1.1", "items": []}',
         content_type="application/json"), "error", "not an RSS/Atom feed"),
    Case("an empty body", body(b""), "error", "empty body"),
    Case("only whitespace", body(b" \r\n\t\n"), "error", "empty body"),
    Case("binary garbage", body(bytes(range(256)) * 40, content_type="image/png"), "error",
         "not an RSS/Atom feed"),
    Case("truncated inside an item", body(FULL[: FULL.index("that the truncation")]), "error", "truncated"),
    Case("truncated before </channel></rss>", body(FULL[: FULL.index("</channel>")]), "error", "truncated"),
    Case("truncated inside a tag", body(FULL[: FULL.index("<guid>", 200) + 4]), "error", "truncated"),
    Case("junk after the root element", body(FULL + "\n<b>Warning</b>: PHP notice in feed.php"), "ok",
         posts=2),
    Case("undefined HTML entities", body(rss(item(1, title="A&nbsp;B &copy; C"))), "ok", posts=1,
         check=fields(title="A B © C")),
    # --- entities ----------------------------------------------------------------------------------
    Case("billion laughs", body(b.billion_laughs()), "error", "entity bomb"),
    Case("quadratic blowup", body(b.quadratic_blowup()), "error", "entity bomb"),
    Case("XXE reading a local file", body(b.external_entity("file:///etc/passwd")), "ok", posts=1,
         check=no_local_file),
    Case("XXE fetching from loopback", pointing_home(b.external_entity), "ok", posts=1,
         check=nothing_fetched_from("/secret")),
    Case("external parameter entity", pointing_home(b.parameter_entity), "ok", posts=1,
         check=nothing_fetched_from("/secret")),
    Case("external DTD", pointing_home(lambda url: rss(item(1), doctype=f'<!DOCTYPE rss SYSTEM "{url}">')),
         "ok", posts=1, check=nothing_fetched_from("/secret")),
    # --- size and time -----------------------------------------------------------------------------
    Case("a 50 MB body, declared", script(raw.sized(50 * MB, b"<!-- padding -->" * 4096)), "error",
         "larger than", check=cut_early()),
    Case("a 50 MB body, undeclared", script(raw.sized(50 * MB, b"<!-- padding -->" * 4096, declare=False)),
         "error", "larger than", check=cut_early()),
    Case("a body that never ends", script(raw.endless(items(*range(50)).encode())), "error", "larger than",
         check=cut_early()),
    Case("a body that never ends, slowly", script(raw.endless(item(1).encode(), every=0.05)), "error",
         "timed out"),
    Case("a server that trickles bytes", body(FULL, trickle=0.01), "error", "timed out"),
    Case("a server that trickles its headers", body(FULL, trickle=0.05, trickle_headers=True), "error",
         "timed out"),
    Case("a server that never answers", body(FULL, delay=10), "error", "timed out"),
    Case("a gzip bomb", script(raw.gzip_bomb(50 * MB)), "error", "larger than"),
    Case("Content-Length larger than the body", script(raw.lying_length(50_000, FULL.encode())), "error",
         "peer closed connection"),
    Case("not HTTP at all", script(raw.send(b"SSH-2.0-OpenSSH_9.6\r\n")), "error", "RemoteProtocolError"),
    Case("a hang-up instead of an answer", script(raw.hang_up), "error", "disconnected"),
    Case("deflate with the zlib header", script(raw.encoded(FULL.encode(), "deflate")), "ok", posts=2),
    Case("deflate without the zlib header", script(raw.encoded(FULL.encode(), "deflate", raw_deflate=True)),
         "ok", posts=2),
    Case("an encoding never asked for", script(raw.encoded(FULL.encode(), "br")), "error",
         "unsupported content encoding 'br'"),
    Case("gzip declared, not compressed", body(FULL, headers={"Content-Encoding": "gzip"}), "error",
         "could not decode"),
    Case("nothing listening", closed_port, "error", "connection failed"),
    # --- statuses and redirects --------------------------------------------------------------------
    Case("404", body("gone", status=404, content_type="text/plain"), "error", "HTTP 404 Not Found"),
    Case("500", body("<h1>oops</h1>", status=500, content_type="text/html"), "error", "HTTP 500"),
    Case("410", body("", status=410), "error", "HTTP 410 Gone"),
    Case("429 with Retry-After", body("slow down", status=429, headers={"Retry-After": "3600"}), "error",
         "HTTP 429"),
    Case("a redirect loop", loop, "error", "too many redirects"),
    Case("a 301 → 302 → 307 chain, relative links", chain, "ok", posts=1,
         check=lambda posts, s: _equal(posts[0].url, s.feed.url("/posts/1"))),
    Case("a redirect without Location", body("", status=302), "error", "HTTP 302"),
    Case("a redirect to file://", redirect_to("file:///etc/passwd"), "error",
         "unsupported URL scheme 'file'"),
    Case("a redirect to gopher://", redirect_to("gopher://127.0.0.1:70/"), "error", "unsupported URL scheme"),
    Case("a redirect to a private address", redirect_to("http://10.0.0.1/feed"), "error",
         "refused: 10.0.0.1 resolves to a private address (set SYNDICATOR_FEED_ALLOW_PRIVATE to allow it)"),
    Case("a redirect to cloud metadata", redirect_to("http://169.254.169.254/latest/meta-data/"), "error",
         "refused: 169.254.169.254 resolves to a private address"),
    Case("a redirect to 0.0.0.0", redirect_to("http://0.0.0.0:6379/"), "error", "refused: 0.0.0.0"),
    Case("a redirect to IPv4-mapped IPv6", redirect_to("http://[::ffff:192.168.1.1]/"), "error",
         "refused: ::ffff:192.168.1.1"),
    Case("a redirect to an IPv6 ULA", redirect_to("http://[fd00::1]/"), "error", "refused: fd00::1"),
    Case("a 304 to an unconditional GET", body("", status=304), "not_modified"),
]
# fmt: on


def _equal(actual: object, expected: object) -> None:
    assert actual == expected, (actual, expected)
