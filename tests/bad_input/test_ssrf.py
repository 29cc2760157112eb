"""Private addresses (syndicator/netguard.py): no feed, and no redirect of one, reaches the machine
syndicator runs on or its network unless SYNDICATOR_FEED_ALLOW_PRIVATE says so; and the request
goes to the address that was checked, so DNS cannot swap it afterwards.

Host names are resolved by a stand-in for getaddrinfo (``resolver``): every connection a test
makes still goes to 127.0.0.1, and a refused address is refused before anything connects.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from syndicator import feedhttp
from syndicator.errors import FeedFetchError
from syndicator.feeds import fetch
from syndicator.models import Feed
from syndicator.netguard import Allowance, is_public
from syndicator.watch import poll_feed
from tests.bad_input.bodies import item, rss
from tests.emulators.email import self_signed_certificate
from tests.feedserver import FeedServer

pytestmark = pytest.mark.timeout(30)

FEED = rss(item(1))
LOOPBACK = ["127.0.0.0/8", "::1"]


def refusal(host: str) -> str:
    return f"refused: {host} resolves to a private address (set SYNDICATOR_FEED_ALLOW_PRIVATE to allow it)"


class Resolver:
    """getaddrinfo for the names a test sets (answers in turn, the last one repeated)."""

    def __init__(self) -> None:
        self.answers: dict[str, list[list[str]]] = {}
        self.asked: list[str] = []
        self._real = socket.getaddrinfo

    def __call__(self, host: str, port: object, *args: object, **kwargs: object) -> list:
        if host not in self.answers:
            return self._real(host, port, *args, **kwargs)  # type: ignore[arg-type]
        self.asked.append(host)
        turns = self.answers[host]
        addresses = turns.pop(0) if len(turns) > 1 else turns[0]
        family = {4: socket.AF_INET, 6: socket.AF_INET6}
        return [
            (family[ipaddress.ip_address(a).version], socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses
        ]


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Resolver:
    fake = Resolver()
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


@pytest.mark.django_db
def test_a_loopback_feed_is_refused_by_default_and_the_feed_says_why(feed_server: FeedServer, settings):
    settings.SYNDICATOR_FEED_ALLOW_PRIVATE = []  # the default; the test suite allows loopback
    feed_server.set("/feed", FEED)
    feed = Feed.objects.create(url=feed_server.url("/feed"))

    report = poll_feed(feed.pk)

    feed.refresh_from_db()
    assert (report.status, feed.last_status) == ("error", Feed.Status.ERROR)
    assert feed.last_error == f"FeedFetchError: {refusal('127.0.0.1')}"
    assert feed_server.hits("/feed") == 0


@pytest.mark.parametrize(
    "addresses",
    [["10.1.2.3"], ["93.184.215.14", "10.0.0.7"], ["2606:2800:21f:cb07:6820:80da:af6b:8b2c", "fd12::1"]],
    ids=["private", "one private among public ones", "an IPv6 ULA among public ones"],
)
def test_a_name_resolving_to_any_private_address_is_refused(resolver: Resolver, addresses: list[str]):
    resolver.answers["intranet.example"] = [addresses]

    with pytest.raises(FeedFetchError) as refused:
        fetch("http://intranet.example/feed", allow_private=LOOPBACK)

    assert str(refused.value) == refusal("intranet.example")


def test_every_redirect_hop_is_checked(resolver: Resolver, feed_server: FeedServer):
    resolver.answers["evil.example"] = [["169.254.169.254"]]
    feed_server.set_redirect("/feed", "http://evil.example/latest/meta-data/")

    with pytest.raises(FeedFetchError, match=re.escape(refusal("evil.example"))):
        fetch(feed_server.url("/feed"), allow_private=LOOPBACK)


@pytest.mark.parametrize("allow", ["feeds.internal", "127.0.0.0/8", "127.0.0.1/32, 10.0.0.0/8"])
def test_an_allowed_host_name_or_network_is_fetched_with_its_own_host_header(
    resolver: Resolver, feed_server: FeedServer, allow: str
):
    resolver.answers["feeds.internal"] = [["127.0.0.1"]]
    feed_server.set("/feed", FEED)
    port = feed_server.base_url.rsplit(":", 1)[1]

    result = fetch(f"http://feeds.internal:{port}/feed", allow_private=allow)

    assert (result.status, result.final_url) == ("ok", f"http://feeds.internal:{port}/feed")
    assert feed_server.requests[-1]["headers"]["host"] == f"feeds.internal:{port}"


def test_the_connection_goes_to_the_address_that_was_checked(resolver: Resolver, feed_server: FeedServer):
    # DNS rebinding: the first answer passes the check, the next would point elsewhere (here a
    # loopback address where nothing listens: a second lookup would fail the fetch).
    resolver.answers["rebind.example"] = [["127.0.0.1"], ["127.0.0.2"]]
    feed_server.set("/feed", FEED)
    port = feed_server.base_url.rsplit(":", 1)[1]

    result = fetch(f"http://rebind.example:{port}/feed", allow_private=LOOPBACK)

    assert result.status == "ok"
    assert resolver.asked == ["rebind.example"]


def test_the_checked_addresses_are_tried_in_turn(resolver: Resolver, feed_server: FeedServer):
    # As the system's connect does: the first address refuses (nothing listens on 127.0.0.2).
    resolver.answers["two.example"] = [["127.0.0.2", "127.0.0.1"]]
    feed_server.set("/feed", FEED)
    port = feed_server.base_url.rsplit(":", 1)[1]

    assert fetch(f"http://two.example:{port}/feed", allow_private=LOOPBACK).status == "ok"
    assert feed_server.hits("/feed") == 1


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),
        ("224.0.0.1", False),  # multicast, which ipaddress calls global
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("ff02::1", False),
        ("::ffff:10.0.0.1", False),  # IPv4-mapped
        ("2002:a00:1::", False),  # 6to4 of 10.0.0.1
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("64:ff9b::5db8:d70e", True),  # NAT64 of a public address
        ("::7f00:1", False),  # IPv4-compatible, deprecated
    ],
)
def test_which_addresses_are_public(address: str, public: bool):
    assert is_public(ipaddress.ip_address(address)) is public


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "fd00::/129", "not/a/network"])
def test_a_bad_allow_entry_is_a_clear_error(entry: str):
    with pytest.raises(FeedFetchError, match=r"SYNDICATOR_FEED_ALLOW_PRIVATE: .* is neither a network"):
        Allowance.parse(entry)


# --- TLS: pinning the address keeps the check of the certificate's name --------------------------


class TlsFeedServer(FeedServer):
    """The feed server behind TLS, with a certificate for localhost and 127.0.0.1."""

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__()
        self.context = context

    def start(self) -> TlsFeedServer:
        super().start()
        assert self._httpd is not None
        # The listening socket keeps its descriptor, so the serving thread goes on selecting on it.
        self._httpd.socket = self.context.wrap_socket(self._httpd.socket, server_side=True)
        self.base_url = self.base_url.replace("http://127.0.0.1", "https://localhost")
        return self


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_server(certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[TlsFeedServer]:
    """A TLS feed server, and feeds.fetch trusting its certificate (and nothing else)."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(*map(str, certificate))
    monkeypatch.setattr(
        feedhttp, "ssl_context", lambda: ssl.create_default_context(cafile=str(certificate[0]))
    )
    with TlsFeedServer(server_context) as server:
        yield server


def test_https_goes_to_the_checked_address_and_verifies_the_name(
    resolver: Resolver, tls_server: TlsFeedServer
):
    resolver.answers["localhost"] = [["127.0.0.1"], ["127.0.0.2"]]
    tls_server.set("/feed", FEED)

    result = fetch(tls_server.url("/feed"), allow_private=LOOPBACK)

    assert result.status == "ok" and resolver.asked == ["localhost"]


def test_a_certificate_for_another_name_is_refused(resolver: Resolver, tls_server: TlsFeedServer):
    resolver.answers["feeds.example"] = [["127.0.0.1"]]
    tls_server.set("/feed", FEED)
    url = tls_server.url("/feed").replace("localhost", "feeds.example")

    with pytest.raises(FeedFetchError, match="certificate verify failed"):
        fetch(url, allow_private=LOOPBACK)


def test_a_redirect_from_https_to_http_is_followed(tls_server: TlsFeedServer, feed_server: FeedServer):
    # A decision (see catalogue.py): the redirect comes from the authenticated server, and every
    # body is sanitized whatever the transport.
    feed_server.set("/feed", FEED)
    tls_server.set_redirect("/feed", feed_server.url("/feed"))

    result = fetch(tls_server.url("/feed"), allow_private=LOOPBACK)

    assert (result.status, result.final_url) == ("ok", feed_server.url("/feed"))


# --- images a network downloads take the same guarded, pinned path -------------------------------

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000")


def test_an_image_download_connects_to_the_address_that_was_checked(
    resolver: Resolver, feed_server: FeedServer, settings
):
    from syndicator.targets.images import download_image

    # DNS rebinding: the check sees 127.0.0.1 (allowed here); a second lookup would say 127.0.0.2,
    # where nothing listens, and the download would fail.
    settings.SYNDICATOR_FEED_ALLOW_PRIVATE = LOOPBACK
    resolver.answers["images.rebind.example"] = [["127.0.0.1"], ["127.0.0.2"]]
    feed_server.set("/a.png", PNG, content_type="image/png")
    port = feed_server.base_url.rsplit(":", 1)[1]

    body, content_type = download_image(
        f"http://images.rebind.example:{port}/a.png", timeout=5, max_bytes=1_000_000
    )

    assert (body, content_type) == (PNG, "image/png")
    assert resolver.asked == ["images.rebind.example"], "looked up once, connected to what was checked"
    assert feed_server.requests[-1]["headers"]["host"] == f"images.rebind.example:{port}"


def test_an_image_on_a_private_address_is_refused(resolver: Resolver, settings):
    from syndicator.targets.images import download_image

    settings.SYNDICATOR_FEED_ALLOW_PRIVATE = []
    resolver.answers["images.internal.example"] = [["10.1.2.3"]]
    with pytest.raises(ValueError, match="private address"):
        download_image("http://images.internal.example/a.png", timeout=5, max_bytes=1_000)
