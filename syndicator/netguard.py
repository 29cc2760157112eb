"""Which addresses feeds may be fetched from: public ones, and private ones only where allowed.

Whoever adds a feed chooses its URL, and the feed's server chooses every redirect, so without a
check a feed could make syndicator fetch from the machine it runs on or from its network (cloud
metadata at 169.254.169.254, an admin page on 10.0.0.5, Redis on 127.0.0.1:6379) and show the
answer in the feed's error or its posts (server-side request forgery). Before each request,
redirects included, the host is resolved here and every address it resolves to must be public,
or inside ``SYNDICATOR_FEED_ALLOW_PRIVATE`` (CIDRs and host names, comma-separated).

The request then goes to an address that was checked (``pin``), not to a second lookup, so a
DNS server that answers a public address to the check and a private one to the connection (DNS
rebinding) gains nothing. The caller tries the checked addresses in order, as the system's own
connect would (an unreachable IPv6 address then falls back to IPv4).
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from syndicator.errors import FeedFetchError

if TYPE_CHECKING:  # only in annotations: the callers that fetch have imported httpx already
    import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# RFC 6052: IPv6 addresses a NAT64 gateway translates to the IPv4 address in their last 32 bits.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# Threads for lookups with a timeout; few, since each hung lookup holds one until the system gives up.
_RESOLVERS = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="resolve")


@dataclass(frozen=True)
class Allowance:
    """The private networks and host names a setting allows besides public addresses."""

    networks: tuple[Network, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, entries: str | Iterable[str] | None) -> Allowance:
        """From "127.0.0.0/8,::1,intranet.example" or a list of such entries."""
        if isinstance(entries, str):
            entries = entries.split(",")
        networks: list[Network] = []
        hosts: set[str] = set()
        for raw in entries or ():
            entry = raw.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                if "/" in entry or ":" in entry:  # meant as a network, and wrong: say so
                    raise FeedFetchError(
                        f"SYNDICATOR_FEED_ALLOW_PRIVATE: {entry!r} is neither a network nor a host name"
                    ) from None
                hosts.add(_host_key(entry))
        return cls(tuple(networks), frozenset(hosts))

    def allows(self, host: str, address: IPAddress) -> bool:
        """Whether a request to host, at address, may go ahead."""
        if _host_key(host) in self.hosts or is_public(address):
            return True
        return any(address.version == net.version and address in net for net in self.networks)


def is_public(address: IPAddress) -> bool:
    """Whether an address is globally reachable: not private, loopback, link-local, multicast,
    reserved or unspecified (IPv4 inside IPv6 is judged as the IPv4 address it reaches)."""
    if isinstance(address, ipaddress.IPv6Address):
        # ::ffff:10.0.0.1, 2002:0a00:0001:: (6to4) and 64:ff9b::a00:1 (NAT64) all reach 10.0.0.1.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public(embedded)
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_unspecified or address.is_link_local
    )


def check(
    url: httpx.URL,
    allowance: Allowance,
    *,
    timeout: float | None = None,
    allow_setting: str = "SYNDICATOR_FEED_ALLOW_PRIVATE",
) -> list[str]:
    """The addresses to connect to for url's host, once every address the host resolves to passed.

    ``allow_setting`` names the setting that would allow a refused host, for the message.
    """
    host = url.raw_host.decode("ascii")
    addresses = resolve(host, url.port or (443 if url.scheme == "https" else 80), timeout=timeout)
    refused = [address for address in addresses if not allowance.allows(host, address)]
    if refused:
        raise FeedFetchError(
            f"refused: {host} resolves to a private address (set {allow_setting} to allow it)"
        )
    return [str(address) for address in addresses]


def resolve(host: str, port: int, *, timeout: float | None = None) -> list[IPAddress]:
    """Every address host resolves to, in the resolver's order (an address resolves to itself).

    getaddrinfo has no timeout of its own, so with ``timeout`` it runs in a small pool of resolver
    threads and the caller stops waiting after that long (a hung lookup keeps its thread until the
    system resolver gives up; the pool bounds how many can).
    """
    try:
        return [_plain(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        if timeout is None:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        else:
            lookup = _RESOLVERS.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
            infos = lookup.result(timeout=max(timeout, 0.001))
    except concurrent.futures.TimeoutError:
        raise FeedFetchError(
            f"connection failed: resolving {host} took longer than {timeout:.1f} s"
        ) from None
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise FeedFetchError(f"connection failed: cannot resolve {host} ({reason})") from None
    addresses: list[IPAddress] = []
    for info in infos:
        # A link-local IPv6 address may come with its zone ("fe80::1%eth0").
        address = _plain(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise FeedFetchError(f"connection failed: {host} resolves to no address")
    return addresses


def pin(url: httpx.URL, address: str) -> tuple[httpx.URL, dict[str, str], dict[str, str]]:
    """url with its host replaced by the checked address, and the Host header and TLS server
    name that keep the request what it was (virtual hosts, certificate checks)."""
    host = url.raw_host.decode("ascii")
    if host == address:
        return url, {}, {}
    extensions = {"sni_hostname": host} if url.scheme == "https" else {}
    return url.copy_with(host=address), {"Host": url.netloc.decode("ascii")}, extensions


def _plain(address: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address (::ffff:10.0.0.1) as the IPv4 address it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _host_key(host: str) -> str:
    """A host name as compared: lower case, no trailing dot."""
    return host.strip().lower().rstrip(".")
