"""A network namespace for one worker, whose link a test can cut and restore (test_network_partition.py).

Every other fault test runs its workers on this host's loopback, where no link can fail. Here a
worker runs in a namespace of its own (``ip netns``), joined to the host by a veth pair: it
reaches PostgreSQL, the broker and the emulators only over that pair, at the host end's address.
PostgreSQL listens on 127.0.0.1 only: an nftables rule (``Namespace.expose``) translates the
host end's address to it and the worker's to 127.0.0.1, so the server's own TCP stack holds the
connection to the worker and sees the cut, as across a real network (a forwarder in this process
would answer for the worker, and the server would never learn that its peer is gone). The
emulators and the test broker (a unix socket, which a namespace does not separate) are reached
through forwarders in this process. Setting the host end down is a pulled cable: the worker's
connections stay open, their packets go nowhere, and when the link is up again TCP retransmits
what waited, as after a real partition.

Needs root (CAP_NET_ADMIN), iproute2 and nftables (scripts/ensure-nft). A run killed before its
finalizer leaves a namespace and a table named after its pid; the next run removes those of dead
pids.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from tests.faults.support import Worker

PREFIX = "synd-part-"
NAT_PREFIX = "synd_part_"  # nftables table names: no dash
# A /30 per run, inside 10.231.0.0/16 (no route of this machine's), chosen by the test process's
# pid: runs at the same time (CI, other checkouts) never share one.
SUBNETS = ipaddress.ip_network("10.231.0.0/16")


class NotPermitted(Exception):
    """This machine does not let the test make a namespace (not root, or a container without
    CAP_NET_ADMIN)."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS`` (iproute2)."""
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=10)


def remove_stale() -> None:
    """Delete the namespaces that runs which died before their finalizer left (their pid is gone)."""
    listing = ip("netns", "list", check=False).stdout
    for name in re.findall(rf"^({re.escape(PREFIX)}(\d+))", listing, re.M):
        if not Path(f"/proc/{name[1]}").exists():
            ip("netns", "delete", name[0], check=False)  # its veth end goes with it, and so the pair
    if shutil.which("nft"):
        tables = nft("list", "tables", check=False).stdout
        for table, pid in re.findall(rf"^table ip ({NAT_PREFIX}(\d+))$", tables, re.M):
            if not Path(f"/proc/{pid}").exists():
                nft("delete", "table", "ip", table, check=False)


def nft(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``nft ARGS`` (nftables)."""
    return subprocess.run(["nft", *args], capture_output=True, text=True, check=check, timeout=10)


class Namespace:
    """A network namespace joined to the host by a veth pair: host end .1, namespace end .2."""

    def __init__(self, pid: int | None = None) -> None:
        pid = os.getpid() if pid is None else pid
        self.name = f"{PREFIX}{pid}"
        self.host_if, self.ns_if = f"sp{pid}h", f"sp{pid}n"  # interface names: 15 bytes at most
        subnet = list(SUBNETS.subnets(new_prefix=30))[pid % 2**14]
        self.host_address, self.ns_address = (str(a) for a in list(subnet.hosts())[:2])
        self.prefixlen = subnet.prefixlen
        self.nat_table = f"{NAT_PREFIX}{pid}"

    def create(self) -> Namespace:
        """Make the namespace and the pair, both ends up; NotPermitted when the kernel refuses."""
        if shutil.which("ip") is None:
            raise AssertionError("the partition test needs iproute2's `ip` (apt-get install iproute2)")
        remove_stale()
        made = ip("netns", "add", self.name, check=False)
        if made.returncode != 0:
            raise NotPermitted(f"`ip netns add` is not permitted here: {made.stderr.strip()}")
        try:
            ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            ip("link", "set", self.ns_if, "netns", self.name)
            ip("addr", "add", f"{self.host_address}/{self.prefixlen}", "dev", self.host_if)
            ip("-n", self.name, "addr", "add", f"{self.ns_address}/{self.prefixlen}", "dev", self.ns_if)
            ip("-n", self.name, "link", "set", "lo", "up")
            ip("-n", self.name, "link", "set", self.ns_if, "up")
            ip("link", "set", self.host_if, "up")
        except subprocess.CalledProcessError as exc:
            self.destroy()
            raise NotPermitted(f"a veth pair is not permitted here: {exc.stderr.strip()}") from exc
        return self

    def expose(self, port: int) -> int:
        """Make 127.0.0.1:port reachable from the namespace at host_address:port, by NAT.

        The connection is the server's own, not a relay's: incoming packets are translated to
        127.0.0.1 (and so is their source, which the server's loopback-only access rules accept),
        the answers back to the namespace, over the veth pair. When the link is down, the server's
        unacknowledged answers and keepalive probes go nowhere, and its TCP timers decide.
        """
        if shutil.which("nft") is None:
            raise AssertionError("the partition test needs nftables' `nft` (scripts/ensure-nft)")
        # Packets from a non-loopback interface may not be routed to 127.0.0.1 without it.
        Path(f"/proc/sys/net/ipv4/conf/{self.host_if}/route_localnet").write_text("1\n")
        table, match = self.nat_table, f"iifname {self.host_if} tcp dport {port}"
        nft("add", "table", "ip", table)
        nft("add", "chain", "ip", table, "in_dst", "{ type nat hook prerouting priority -100; }")
        nft("add", "chain", "ip", table, "in_src", "{ type nat hook input priority 100; }")
        nft("add", "rule", "ip", table, "in_dst", *f"{match} ip daddr {self.host_address}".split(),
            "dnat", "to", f"127.0.0.1:{port}")  # fmt: skip
        nft("add", "rule", "ip", table, "in_src", *match.split(), "snat", "to", "127.0.0.1")
        return port

    def cut(self) -> None:
        """Pull the cable: the host end goes down, nothing passes either way; sockets stay open."""
        ip("link", "set", self.host_if, "down")

    def restore(self) -> None:
        """Plug it back in: what TCP kept for retransmission goes through."""
        ip("link", "set", self.host_if, "up")

    def destroy(self) -> None:
        """Remove the pair and the namespace (idempotent)."""
        ip("link", "delete", self.host_if, check=False)
        ip("netns", "delete", self.name, check=False)
        if shutil.which("nft"):
            nft("delete", "table", "ip", self.nat_table, check=False)

    def reaches(self, host: str, port: int, timeout: float = 2.0) -> bool:
        """Whether a TCP connection from inside the namespace to host:port succeeds now."""
        code = f"import socket; socket.create_connection(({host!r}, {port}), timeout={timeout}).close()"
        run = subprocess.run(
            ["ip", "netns", "exec", self.name, sys.executable, "-c", code],
            capture_output=True,
            timeout=timeout + 10,
        )
        return run.returncode == 0


class Forwarder:
    """Listens on host:<free port> and pipes each connection to an upstream TCP address or unix
    socket, in a thread of this process (an asyncio loop)."""

    def __init__(self, host: str, upstream: tuple[str, int] | Path) -> None:
        self.host, self.upstream = host, upstream
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-forwarder", daemon=True)

    def start(self) -> Forwarder:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self._server = future.result(timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._accept, self.host, 0)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if isinstance(self.upstream, Path):
                up_reader, up_writer = await asyncio.open_unix_connection(str(self.upstream))
            else:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            self._tasks.discard(task)
            return
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except asyncio.CancelledError:
            pass  # stop(): a task that ends cancelled makes asyncio's stream callback log an error
        finally:
            for each in (writer, up_writer):
                each.close()
            self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of file, then pass the half-close on."""
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


class NamespacedWorker(Worker):
    """A fault test's worker (support.Worker), started inside a network namespace."""

    def __init__(self, namespace: Namespace, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.namespace = namespace

    def command(self) -> list[str]:
        # `ip netns exec` enters the namespace and execs the command: the pid is the worker's,
        # so Worker.stop and kill reach it and its pool, as for a worker on the host.
        return ["ip", "netns", "exec", self.namespace.name, *super().command()]
