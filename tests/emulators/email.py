"""A loopback SMTP server (aiosmtpd) that records what it accepts and fails on request.

    with SmtpServer(auth=("user", "pw")) as smtp:
        smtp.refuse("gone@example.org", "550 5.1.1 no such user")   # every RCPT of that address
        smtp.fail_next_session(rcpt="451 4.3.0 try later")          # faults of the next connection
        ...
        smtp.messages                                               # what it accepted, in order

Faults are per SMTP session (one connection): ``greeting`` (a reply instead of 220), ``stall``
(seconds before the greeting), ``hang_up`` (close instead of greeting), ``auth`` (the reply to
AUTH), ``rcpt`` (every RCPT), ``data`` (the reply after the final "."), ``data_stall`` (seconds
of silence after the final "."), and ``drop_after_data`` (record the message, then close the
connection without a reply). aiosmtpd's
``Controller`` cannot take port 0 (its start-up self-connect fails, TARGETS.md §4), so a free
port is picked first. TLS (STARTTLS or implicit) uses a self-signed certificate made by openssl.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import socket
import ssl
import subprocess
import threading
import warnings
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from syndicator.errors import OutcomeUnknown, PermanentError, RateLimited, TargetBroken, TransientError
from tests.emulators.base import FaultPlan, NetworkHarness

AUTH_FAILED = "535 5.7.8 Authentication credentials invalid"


@dataclass
class Received:
    """One message the server accepted for one recipient."""

    mail_from: str
    rcpt: str
    message: EmailMessage
    raw: bytes

    @property
    def text(self) -> str:
        return self.message.get_body(("plain",)).get_content()

    @property
    def html(self) -> str:
        body = self.message.get_body(("html",))
        return body.get_content() if body is not None else ""


@dataclass
class Faults:
    """What goes wrong in one SMTP session."""

    greeting: str = ""
    stall: float = 0.0
    hang_up: bool = False
    auth: str = ""
    rcpt: str = ""
    data: str = ""
    data_stall: float = 0.0
    drop_after_data: bool = False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1 and localhost, made with the openssl command."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subject = ["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"]
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", *subject, *files],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


class _Session(SMTP):
    """aiosmtpd's protocol, holding the faults of its connection, and able to fail its greeting."""

    faults: Faults

    async def _handle_client(self) -> None:
        if self.faults.stall:
            await asyncio.sleep(self.faults.stall)
        if self.faults.greeting or self.faults.hang_up:
            if self.faults.greeting:
                await self.push(self.faults.greeting)
            assert self.transport is not None
            self.transport.close()
            return
        await super()._handle_client()


class _Controller(Controller):
    """Hands each new connection the faults scripted for the next session."""

    def __init__(self, server: SmtpServer, handler: _Handler, **kwargs: Any) -> None:
        self.emulator = server
        super().__init__(handler, **kwargs)

    def factory(self) -> SMTP:
        with warnings.catch_warnings():  # "AUTH without TLS": on purpose, on loopback
            warnings.simplefilter("ignore", UserWarning)
            session = _Session(self.handler, **self.SMTP_kwargs)
        session.faults = self.emulator._take_faults()
        return session


class _Handler:
    """The aiosmtpd hooks: refuse what the test asked for, record the rest."""

    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_RCPT(
        self, server: _Session, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self.server.refusals.get(address.lower()) or server.faults.rcpt
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: _Session, session: Session, envelope: Envelope) -> str:
        faults = server.faults
        if faults.data_stall:  # silence after the final ".": the client times out, we drop it
            await asyncio.sleep(faults.data_stall)
            return "451 4.3.0 too late"
        if faults.data:
            return faults.data
        queue_id = self.server._record(envelope)
        if faults.drop_after_data:
            assert server.transport is not None
            server.transport.abort()  # the message is kept, the reply never leaves
        return f"250 2.0.0 Ok: queued as {queue_id}"

    def authenticate(
        self, server: _Session, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        expected = self.server.auth
        if server.faults.auth:
            return AuthResult(success=False, handled=False, message=server.faults.auth)
        if expected is None or not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        ok = (data.login.decode(), data.password.decode()) == expected
        return AuthResult(success=ok, handled=False)


class SmtpServer:
    """An aiosmtpd server on 127.0.0.1: AUTH, STARTTLS or implicit TLS when asked, scripted faults."""

    def __init__(
        self,
        *,
        auth: tuple[str, str] | None = None,
        starttls: bool = False,
        implicit_tls: bool = False,
        certificate: tuple[Path, Path] | None = None,
    ) -> None:
        self.auth = auth
        self.starttls = starttls
        self.implicit_tls = implicit_tls
        self.certificate = certificate
        self.host = "127.0.0.1"
        self.port = 0
        self.messages: list[Received] = []
        self.refusals: dict[str, str] = {}
        self._faults: list[Faults] = []
        self._lock = threading.Lock()
        self._controller: _Controller | None = None
        self._queue_ids = 0

    def start(self) -> SmtpServer:
        """Listen on a free loopback port."""
        kwargs: dict[str, Any] = {"server_hostname": "smtp.emulator.test", "ready_timeout": 10}
        if self.starttls or self.implicit_tls:
            assert self.certificate, "TLS needs a certificate (self_signed_certificate)"
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*map(str, self.certificate))
            kwargs["ssl_context" if self.implicit_tls else "tls_context"] = context
        handler = _Handler(self)
        if self.auth:
            # Plain loopback tests log in without TLS, which aiosmtpd refuses unless told.
            kwargs.update(auth_required=True, auth_require_tls=False, authenticator=handler.authenticate)
        self.port = free_port()
        self._controller = _Controller(self, handler, hostname=self.host, port=self.port, **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        """Stop listening; stalled sessions are cancelled."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- faults ---------------------------------------------------------------------------------

    def fail_next_session(self, **faults: Any) -> None:
        """The next SMTP connection goes wrong this way (see the module docstring)."""
        with self._lock:
            self._faults.append(Faults(**faults))

    def refuse(self, address: str, reply: str) -> None:
        """Answer every RCPT of this address with this reply (e.g. "550 5.1.1 no such user")."""
        self.refusals[address.lower()] = reply

    def clear(self) -> None:
        """Forget refusals, unused faults and recorded messages."""
        with self._lock:
            self._faults.clear()
            self.refusals.clear()
            self.messages.clear()

    def _take_faults(self) -> Faults:
        with self._lock:
            return self._faults.pop(0) if self._faults else Faults()

    def _record(self, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        with self._lock:
            self._queue_ids += 1
            queue_id = f"Q{self._queue_ids:06d}"
            for rcpt in envelope.rcpt_tos:
                self.messages.append(Received(envelope.mail_from or "", rcpt, message, raw))  # type: ignore[arg-type]
        return queue_id


DEFERRAL = "451 4.3.0 Mail server temporarily rejected message"


class Harness(NetworkHarness):
    """The email adapter's conformance harness: an SMTP server with AUTH and one subscriber."""

    writes_while_sending = True  # per-recipient results

    kind = "email"
    USERNAME = "syndicator"
    PASSWORD = "smtp-Pa55word-never-logged"
    SECRET_ENV = "SYNDICATOR_TEST_SMTP_PASSWORD"
    SUBSCRIBER = "reader@example.org"
    expected: dict[str, type[Exception]] = {
        "server_error": TransientError,  # "421 4.3.2" instead of the greeting: nothing was sent
        # SMTP has no retry hint: "451 4.4.5" (RFC 3463 congestion) at RCPT is a slow-down code,
        # so RateLimited with retry_after = the target's rate_limit_wait (2 s here, 300 by default).
        "rate_limited": RateLimited,
        "timeout": OutcomeUnknown,  # silence after the final "." of DATA: it may have arrived
        "bad_token": TargetBroken,  # "535 5.7.8" at AUTH
        # "554 5.7.1" after DATA for every recipient: all refused, none suppressed (content, not mailbox)
        "rejected_content": PermanentError,
        # Network-specific modes.
        "defer_all": TransientError,  # "451 4.3.0" at RCPT for every recipient
        "stall_greeting": TransientError,  # no greeting before the client's timeout: nothing was sent
        "drop_after_data": OutcomeUnknown,  # message kept, connection closed before the 250
        "refuse_recipient": PermanentError,  # "550 5.1.1" at RCPT: the only subscriber is suppressed
    }
    FAULTS: dict[str, dict[str, Any]] = {
        "server_error": {"greeting": "421 4.3.2 Service not available, closing transmission channel"},
        "rate_limited": {"rcpt": "451 4.4.5 Too many messages, slow down"},
        "timeout": {"data_stall": 30.0},
        "bad_token": {"auth": AUTH_FAILED},
        "rejected_content": {"data": "554 5.7.1 Message content rejected"},
        "defer_all": {"rcpt": "451 4.3.0 Mail server temporarily rejected message"},
        "stall_greeting": {"stall": 30.0},
        "drop_after_data": {"drop_after_data": True},
        "refuse_recipient": {"rcpt": "550 5.1.1 The email account that you tried to reach does not exist"},
    }

    def __init__(self) -> None:
        self.server = SmtpServer(auth=(self.USERNAME, self.PASSWORD))
        self._old_env: str | None = None

    def __enter__(self) -> Harness:
        self._old_env = os.environ.get(self.SECRET_ENV)
        os.environ[self.SECRET_ENV] = self.PASSWORD
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
        if self._old_env is None:
            os.environ.pop(self.SECRET_ENV, None)
        else:
            os.environ[self.SECRET_ENV] = self._old_env

    def make_target(self, name: str = "email-test", **settings: Any) -> Any:
        """A saved email target pointing at the server, with one active subscriber."""
        from syndicator.models import Subscriber, Target

        target = Target.objects.create(
            kind="email",
            name=name,
            secret_env=self.SECRET_ENV,
            settings={
                "host": self.server.host,
                "port": self.server.port,
                "security": "none",  # loopback only; TLS has tests of its own
                "username": self.USERNAME,
                "from_address": "news@nejat.example",
                "from_name": "Nejat News",
                "timeout": 1,
                "rate_limit_wait": 2,
                **settings,
            },
        )
        Subscriber.objects.create(target=target, email=self.SUBSCRIBER, name="A Reader")
        return target

    def external_id(self, sent: dict[str, Any]) -> str:
        return ""  # a mailing list has no id of its own for a message

    def install_faults(self, plan: FaultPlan) -> None:
        """Flaky: a recipient deferred ("451", retried later); paced: the session stalls."""
        take = self.server._take_faults

        def faults() -> Faults:
            scripted = take()  # faults a test scripted come first
            if scripted == Faults():
                if plan.flaky_now(self.kind):
                    return Faults(rcpt=DEFERRAL)
                if plan.pace:
                    return Faults(stall=plan.pace)
            return scripted

        self.server._take_faults = faults  # type: ignore[method-assign]

    def script_outage(self, hang: float) -> None:
        busy = "421 4.3.2 Service not available, closing transmission channel"
        self.server.fail_next_session(greeting=busy)
        self.server.fail_next_session(greeting=busy)
        self.server.fail_next_session(rcpt="451 4.4.5 Too many messages, slow down")
        self.server.fail_next_session(data_stall=hang)  # silence after the message: it may have arrived

    def outage_served(self) -> bool:
        return not self.server._faults

    public_urls = False

    def secrets(self) -> list[str]:
        return [self.PASSWORD]

    def sent(self) -> list[dict[str, Any]]:
        """What the server accepted: plain text body, recipient, subject and headers of each."""
        return [
            {
                "text": received.text,
                "html": received.html,
                "to": received.rcpt,
                "subject": str(received.message["Subject"]),
                "headers": {name: str(value) for name, value in received.message.items()},
            }
            for received in self.server.messages
        ]

    def inject(self, mode: str) -> None:
        """Make the next SMTP session fail this way."""
        self.server.fail_next_session(**self.FAULTS[mode])
