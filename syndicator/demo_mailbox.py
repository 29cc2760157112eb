"""The demo mailbox: a catch-all SMTP server on loopback that `syndicator run` starts, and its reader.

The demo's email target really sends, to this server (aiosmtpd), which keeps every message it
accepts as an .eml file in the data directory; the web UI's "demo mailbox" page shows them as a
subscriber would get them: the multipart message, its right-to-left layout, the unsubscribe link.
Nothing leaves the machine: the server listens on 127.0.0.1 only and relays nothing.
"""

from __future__ import annotations

import email
import email.policy
import logging
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAILBOX_DIRNAME = "demo-mailbox"
KEEP_MESSAGES = 200  # the oldest go first: the demo runs for days on a newcomer's laptop
MAX_MESSAGE_BYTES = 2 << 20
_MESSAGE_ID = re.compile(r"\A[0-9]{17}-[0-9]+\Z")


def mailbox_dir(data_dir: Path | str | None = None) -> Path:
    """Where the messages are kept (under the data directory the web app and the worker share)."""
    # Imported here: `syndicator run`'s supervisor runs the server and imports no Django.
    from django.conf import settings

    return Path(data_dir or settings.DATA_DIR) / MAILBOX_DIRNAME


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (aiosmtpd's Controller cannot take port 0: its
    start-up self-connect would go to port 0, tests/emulators/smtp.py)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class _Keeper:
    """aiosmtpd handler: accept every recipient, store each message once with its envelope."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        if len(raw) > MAX_MESSAGE_BYTES:
            return "552 message too big for the demo mailbox"
        self.count += 1
        stamp = time.strftime("%Y%m%d%H%M%S") + f"{int(time.time() * 1000) % 1000:03d}"
        name = f"{stamp}-{self.count}"
        # The envelope's recipients are not in the message (Bcc-like): kept as a header of ours.
        head = f"X-Demo-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n".encode()
        partial = self.directory / f".{name}.tmp"
        partial.write_bytes(head + raw)
        partial.replace(self.directory / f"{name}.eml")  # whole or not at all for the reader
        _prune(self.directory)
        return "250 kept in the demo mailbox"


def _prune(directory: Path) -> None:
    files = sorted(directory.glob("*.eml"))
    for old in files[:-KEEP_MESSAGES]:
        old.unlink(missing_ok=True)


class DemoMailbox:
    """The SMTP server; ``start`` returns the port it listens on."""

    def __init__(self, directory: Path, host: str = "127.0.0.1") -> None:
        self.directory = directory
        self.host = host
        self.port = 0
        self._controller: Any = None

    def start(self, port: int | None = None) -> int:
        """Listen on port (a free one if None) and return it."""
        from aiosmtpd.controller import Controller

        # aiosmtpd logs every connection at INFO; the run's terminal should show the app's logs.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port(self.host)
        self._controller = Controller(
            _Keeper(self.directory), hostname=self.host, port=self.port, data_size_limit=MAX_MESSAGE_BYTES
        )
        self._controller.start()
        return self.port

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@dataclass
class MailboxMessage:
    """One kept message, parsed as a mail reader would."""

    id: str
    envelope_to: str
    sender: str
    to: str
    subject: str
    date: str
    list_unsubscribe: str
    text: str
    html: str
    parts: list[str] = field(default_factory=list)  # the MIME tree, e.g. "multipart/alternative"
    headers: list[tuple[str, str]] = field(default_factory=list)
    size: int = 0

    @property
    def unsubscribe_url(self) -> str:
        """The HTTPS (or HTTP, in the demo) link of List-Unsubscribe."""
        found = re.search(r"<(https?://[^>]+)>", self.list_unsubscribe)
        return found.group(1) if found else ""


def list_messages(directory: Path | None = None, limit: int = 50) -> list[MailboxMessage]:
    """The newest messages first."""
    folder = directory or mailbox_dir()
    if not folder.is_dir():
        return []
    files = sorted(folder.glob("*.eml"), reverse=True)[:limit]
    return [read_message(path.stem, folder) for path in files]


def read_message(message_id: str, directory: Path | None = None) -> MailboxMessage:
    """One message by its id; FileNotFoundError if there is none (or the id is not one of ours)."""
    if not _MESSAGE_ID.match(message_id):
        raise FileNotFoundError(message_id)
    path = (directory or mailbox_dir()) / f"{message_id}.eml"
    raw = path.read_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    text = parsed.get_body(preferencelist=("plain",))
    html = parsed.get_body(preferencelist=("html",))
    return MailboxMessage(
        id=message_id,
        envelope_to=str(parsed.get("X-Demo-Envelope-To", "")),
        sender=str(parsed.get("From", "")),
        to=str(parsed.get("To", "")),
        subject=str(parsed.get("Subject", "")),
        date=str(parsed.get("Date", "")),
        list_unsubscribe=str(parsed.get("List-Unsubscribe", "")),
        text=text.get_content() if text is not None else "",
        html=html.get_content() if html is not None else "",
        parts=[part.get_content_type() for part in parsed.walk()],
        headers=[(k, str(v)) for k, v in parsed.items() if k != "X-Demo-Envelope-To"],
        size=len(raw),
    )
