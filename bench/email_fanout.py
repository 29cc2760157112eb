"""Email fan-out: recipients per second of one delivery to N subscribers, to a local SMTP server.

    .venv/bin/python bench/email_fanout.py [--sizes 10000,100000] [--connections 1,4] [--sink fast|aiosmtpd]
        [--old-code DIR --old-sizes 10000] [--database-url postgres://…/NAME]

Each run is a subprocess of its own (Django reads its settings once): a fresh database (NAME_fanout,
dropped and created, migrated), one email target with N subscribers, one post, then one
``adapter.send`` timed, with ``batch_seconds`` out of the way so the figure is the raw rate. The SMTP
server is a minimal asyncio sink (``fast_sink_server``; ``--sink aiosmtpd`` for aiosmtpd, which
answers slower than we send) in a separate process that counts and discards what it accepts (the test
emulator keeps every message, which would measure its memory, not ours). It prints recipients/s and
the sending process's peak RSS (ru_maxrss) before and after the send.

``--old-code DIR`` runs the same measurement against another checkout's ``syndicator`` package (e.g.
``git archive main | tar -x -C /tmp/old``), so the old path is measured side by side on the same
machine and database. Issue 16's baseline: 10,000 in 43 s (231/s).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sink_server(port: int) -> None:
    """An SMTP server that accepts everything and keeps only a count."""
    import asyncio

    from aiosmtpd.controller import Controller

    class Sink:
        count = 0

        async def handle_DATA(self, server, session, envelope) -> str:
            Sink.count += 1
            return f"250 2.0.0 queued as {Sink.count}"

    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        asyncio.run(asyncio.sleep(10**6))
    finally:
        controller.stop()


def fast_sink_server(port: int) -> None:
    """A minimal SMTP server that accepts everything and keeps only a count: EHLO, MAIL, RCPT,
    DATA (to the lone "."), RSET, NOOP, QUIT, one asyncio protocol, no parsing beyond that.

    aiosmtpd parses every command and header: on this machine it answers ~700 messages a second
    and is what a large send waits for (the sender spent ~70% of its wall time in recv, the sink
    one busy core), so it measured itself, not us. A real MTA (Postfix's smtp-sink, a relay) is
    faster still; this one is what a benchmark can ship without installing one.
    """
    import asyncio

    class Sink(asyncio.Protocol):
        count = 0

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # type: ignore[assignment]
            self.buffer, self.in_data = b"", False
            self.transport.write(b"220 sink ESMTP\r\n")

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while True:
                if self.in_data:
                    end = self.buffer.find(b"\r\n.\r\n")
                    if end < 0:
                        return
                    self.buffer, self.in_data = self.buffer[end + 5 :], False
                    Sink.count += 1
                    self.transport.write(b"250 2.0.0 queued as %d\r\n" % Sink.count)
                    continue
                line, found, rest = self.buffer.partition(b"\r\n")
                if not found:
                    return
                self.buffer, verb = rest, line[:4].upper()
                if verb == b"EHLO":
                    self.transport.write(b"250-sink\r\n250-8BITMIME\r\n250 SIZE 100000000\r\n")
                elif verb == b"DATA":
                    self.in_data = True
                    # The message starts right after the DATA line: its "\r\n." end needs the CRLF.
                    self.buffer = b"\r\n" + self.buffer
                    self.transport.write(b"354 end with <CRLF>.<CRLF>\r\n")
                elif verb == b"QUIT":
                    self.transport.write(b"221 bye\r\n")
                    self.transport.close()
                    return
                else:  # HELO, MAIL, RCPT, RSET, NOOP
                    self.transport.write(b"250 ok\r\n")

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(Sink, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


def wait_listening(port: int, timeout: float = 30.0) -> None:
    """Until the sink accepts connections (with a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def one_run(size: int, connections: int, smtp_port: int, database_url: str) -> dict:
    """In a fresh process: set up, send once, measure."""
    import django

    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "syndicator.settings")
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.conf import settings

    settings.SYNDICATOR_PUBLIC_URL = "https://news.example.org"
    from syndicator.models import Delivery, Subscriber, Target
    from syndicator.targets import get_adapter
    from tests.helpers import demo_post

    target = Target.objects.create(
        kind="email",
        name="bench",
        settings={
            "host": "127.0.0.1",
            "port": smtp_port,
            "security": "none",
            "from_address": "news@nejat.example",
            "from_name": "Nejat News",
            "timeout": 30,
            "batch_seconds": 10**6,
            "connections": connections,
        },
    )
    Subscriber.objects.bulk_create(
        [Subscriber(target=target, email=f"reader{n}@example.org") for n in range(size)], batch_size=5000
    )
    post = demo_post("nejat-en-recent.rss")
    delivery = Delivery.objects.create(post=post, target=target, origin="manual")
    adapter = get_adapter(target)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    result = adapter.send(adapter.render(delivery), delivery)
    seconds = time.perf_counter() - started
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "recipients": size,
        "seconds": round(seconds, 2),
        "per_second": round(size / seconds),
        "peak_rss_mb_before_send": round(rss_before),
        "peak_rss_mb": round(rss_after),
        "result": result.external_id,
    }


def database(url: str, name: str) -> str:
    """Drop and create NAME on the server of url; its URL."""
    import psycopg

    base = url.rsplit("/", 1)[0]
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    return f"{base}/{name}"


def measure(code: Path, size: int, connections: int, port: int, url: str) -> dict:
    fresh = database(url, url.rsplit("/", 1)[1] + "_fanout")
    env = {**os.environ, "PYTHONPATH": f"{code}{os.pathsep}{ROOT}", "SYNDICATOR_DATA_DIR": "/tmp/fanout-data"}
    args = [sys.executable, __file__, "--one", json.dumps([size, connections, port, fresh])]
    out = subprocess.run(args, env=env, cwd=code, capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--connections", default="1,4")
    parser.add_argument("--old-code", type=Path)
    parser.add_argument("--old-sizes", default="10000")
    default_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/mail")
    parser.add_argument("--database-url", default=default_url)
    parser.add_argument("--one")
    parser.add_argument(
        "--sink", choices=("fast", "aiosmtpd"), default="fast", help="the local SMTP server (default fast)"
    )
    args = parser.parse_args()
    if args.one:
        size, connections, port, url = json.loads(args.one)
        print(json.dumps(one_run(size, connections, port, url)))
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    here = str(ROOT / "bench")
    serve = "fast_sink_server" if args.sink == "fast" else "sink_server"
    sink = f"import sys; sys.path.insert(0, {here!r}); import email_fanout as b; b.{serve}({port})"
    server = subprocess.Popen([sys.executable, "-c", sink])
    try:
        wait_listening(port)
        rows = []
        if args.old_code:
            for size in map(int, args.old_sizes.split(",")):
                row = measure(args.old_code, size, 1, port, args.database_url)
                rows.append(("old (per recipient)", 1, row))
        for size in map(int, args.sizes.split(",")):
            for connections in map(int, args.connections.split(",")):
                rows.append(("new", connections, measure(ROOT, size, connections, port, args.database_url)))
        columns = f"{'path':22} {'conns':>5} {'recipients':>10} {'seconds':>8} {'per s':>7}"
        print(f"SMTP server: {args.sink} sink on 127.0.0.1:{port} (--sink); {os.cpu_count()} CPUs")
        print(f"{columns} peak RSS MB (before send)")
        for label, connections, row in rows:
            print(
                f"{label:22} {connections:>5} {row['recipients']:>10} {row['seconds']:>8} "
                f"{row['per_second']:>7} {row['peak_rss_mb']:>12} ({row['peak_rss_mb_before_send']})"
                f"  {row['result']}"
            )
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
