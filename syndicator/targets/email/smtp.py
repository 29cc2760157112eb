"""SMTP plumbing of the email adapter: opening a session, and what every reply and error means.

The one table of TARGETS.md §4 ("retry vs give up"), as ``connection_error`` (before any message)
and ``reply_outcome`` / ``condemns`` (for one subscriber's transaction):

    before the session (connect, EHLO, STARTTLS, AUTH)
      SMTPAuthenticationError 5xx (535), SMTPNotSupportedError   TargetBroken (configuration)
      other 5xx reply (EHLO, STARTTLS, AUTH refused)             TargetBroken
      SMTPConnectError (greeting not 220, e.g. 421), 4xx reply   TransientError
      SMTPServerDisconnected, TimeoutError, ConnectionError,
        DNS failure, ssl.SSLError (a bad certificate too)        TransientError
    per subscriber
      2xx after DATA                                             accepted
      4xx at RCPT or DATA                                        deferred
      4xx at MAIL (the sender deferred: so would all be)         deferred; stop the session
      4xx with a slow-down code (RATE_LIMIT_CODES)               deferred; stop; RateLimited
      421 (the server closes the channel)                        deferred; stop the session
      5xx at RCPT, or at DATA with a mailbox code (5.1.x/5.2.x)  refused; subscriber suppressed
      5xx at DATA otherwise (content, size, policy)              refused; subscriber kept
      5xx at MAIL (sender refused)                               TargetBroken (from_address)
      disconnect or timeout before the final "."                 deferred; stop
      disconnect or timeout after the final "."                  unknown; stop
    a failure of our own mid-send (the database dropped while a result was written, a bug)
      no message out without its answer recorded                 TransientError
      one out past its final ".", its answer not recorded        unknown (written ahead); as after a
                                                                   lost reply: TransientError while
                                                                   others wait, else OutcomeUnknown

(The package imports every module as an adapter except those starting with "_", like this one.)
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import smtplib
import ssl
from dataclasses import dataclass

from django.core.mail.utils import DNS_NAME

from syndicator.errors import DeliveryError, OutcomeUnknown, TargetBroken, TransientError
from syndicator.redact import redact

LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}
ENHANCED_CODE = re.compile(r"\s*([245]\.\d{1,3}\.\d{1,3})\b")
# SMTP has no Retry-After. These enhanced codes say "slow down" rather than "try again": RFC 3463
# X.4.5 "mail system congestion"; Gmail's 4.2.1 "receiving mail at a rate that prevents additional
# messages" and 4.7.28 "unusual rate" (support.google.com/a/answer/3726730, not verified here).
# Every other 4xx is a TransientError, which counts against the attempt budget, so a deferral that
# never clears ends in `failed` instead of waiting forever.
RATE_LIMIT_CODES = {"4.4.5", "4.2.1", "4.7.28"}
# Enhanced-code subjects of a 5xx after DATA that condemn the mailbox (X.1.x address, X.2.x
# mailbox); the others (X.6 content, X.3.4 size, X.7 policy) refuse this message, not the reader.
MAILBOX_SUBJECTS = {"1", "2"}


@dataclass(frozen=True)
class Server:
    """Where and how to reach an SMTP server (the password is never part of it)."""

    host: str
    port: int
    security: str  # starttls | tls | none
    username: str
    timeout: float
    ca_file: str = ""
    secret_env: str = ""  # the NAME of the variable holding the password, for error messages

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class Outcome:
    """One subscriber's result in a session, and whether the session must end after it."""

    status: str  # an EmailRecipientResult.Status
    code: int | None = None
    reply: str = ""
    stop: bool = False
    slow_down: bool = False


class _Tracked:
    """smtplib's client, noting when the final "." of DATA has gone out: after it, a lost reply
    leaves the outcome unknown (TARGETS.md §4); before it, nothing was delivered."""

    payload_sent = False

    def send(self, s: bytes | str) -> None:
        super().send(s)  # type: ignore[misc]
        if isinstance(s, bytes) and s.endswith(b"\r\n.\r\n"):  # only data() sends bytes
            self.payload_sent = True


class _SMTP(_Tracked, smtplib.SMTP):
    pass


class _SMTPS(_Tracked, smtplib.SMTP_SSL):
    pass


def open_session(server: Server, password: str) -> smtplib.SMTP:
    """A session past EHLO, STARTTLS or TLS, and AUTH; failures mapped by ``connection_error``."""
    context = ssl.create_default_context(cafile=server.ca_file or None) if server.security != "none" else None
    smtp: smtplib.SMTP | None = None
    try:
        if server.security == "tls":  # TLS from the first byte (RFC 8314)
            smtp = _SMTPS(
                server.host, server.port, DNS_NAME.get_fqdn(), timeout=server.timeout, context=context
            )
        else:
            smtp = _SMTP(server.host, server.port, DNS_NAME.get_fqdn(), timeout=server.timeout)
        smtp.ehlo_or_helo_if_needed()
        if server.security == "starttls":
            smtp.starttls(context=context)  # SMTPNotSupportedError when the server does not offer it
            smtp.ehlo()
        if server.username:
            smtp.login(server.username, password)
    except (smtplib.SMTPException, OSError) as exc:
        if smtp is not None:
            smtp.close()
        raise connection_error(exc, server, password) from None
    return smtp


def connection_error(exc: BaseException, server: Server, password: str = "") -> DeliveryError:
    """The error class of a failure to open or authenticate a session (the table above)."""
    where = f"SMTP {server.where}"
    text = clean(str(exc), password)
    code = getattr(exc, "smtp_code", None)
    reply = clean(getattr(exc, "smtp_error", b""), password)
    match exc:
        case smtplib.SMTPAuthenticationError() if code and code >= 500:
            return TargetBroken(
                f"{where}: login as {server.username!r} refused ({code} {reply}): check the username "
                f"and the password in ${server.secret_env or '(no secret env set)'}",
                http_status=code,
            )
        case smtplib.SMTPNotSupportedError():
            return TargetBroken(f"{where}: {text} (security={server.security})")
        case smtplib.SMTPConnectError():
            return TransientError(f"{where} did not greet us ({code} {reply}): retry later", http_status=code)
        case smtplib.SMTPResponseException() if code and 500 <= code < 600:
            return TargetBroken(f"{where} refused the session ({code} {reply})", http_status=code)
        case smtplib.SMTPResponseException():
            return TransientError(f"{where} answered {code} {reply}: retry later", http_status=code)
        case smtplib.SMTPServerDisconnected():
            return TransientError(f"{where} closed the connection: {text}")
        case smtplib.SMTPException():  # e.g. no AUTH mechanism in common
            return TargetBroken(f"{where}: {text}")
        case ssl.SSLError():
            return TransientError(f"{where}: TLS failed: {text} (check the host name, or set ca_file)")
        case _:  # OSError: refused, unreachable, DNS, timeout; nothing was sent
            return TransientError(f"{where} unreachable: {type(exc).__name__}: {text or 'timed out'}")


def own_failure(exc: BaseException, server: Server, *, in_flight: bool, others_waiting: int) -> DeliveryError:
    """The error class of a failure of ours mid-send (the table above). Nothing unrecorded went out
    unless ``in_flight``: a message past its final "." whose answer could not be written; its row
    already says "unknown", so the retry never re-sends it."""
    text = f"{type(exc).__name__}: {clean(str(exc))}"
    if not in_flight:
        return TransientError(
            f"email: interrupted by {text}; every message that went out is recorded with its answer, "
            "so the retry sends only to those still pending"
        )
    lost = f"SMTP {server.where}: a message went out and its answer could not be recorded ({text})"
    if others_waiting:
        return TransientError(f"email: {lost}, so it may have arrived; the retry sends only to those waiting")
    return OutcomeUnknown(
        f"email: {lost}, so it may have arrived; retrying the delivery re-sends to everyone not accepted"
    )


def reply_outcome(code: int, reply: str, stage: str) -> Outcome:
    """One subscriber's status from the reply that ended its transaction at MAIL, RCPT or DATA."""
    from syndicator.models import EmailRecipientResult

    Status = EmailRecipientResult.Status
    if 200 <= code < 300:
        return Outcome(Status.ACCEPTED, code, reply)
    if 500 <= code < 600:
        return Outcome(Status.REFUSED, code, reply)
    # 4xx, or a reply smtplib could not parse (-1): try again later. The session ends after a 421
    # (the server closes the channel), a slow-down code, or a deferred sender (every message
    # would be deferred alike).
    slow_down = enhanced_code(reply) in RATE_LIMIT_CODES
    stop = code == 421 or code < 0 or slow_down or stage == "MAIL"
    return Outcome(Status.DEFERRED, code, reply, stop=stop, slow_down=slow_down)


def condemns(code: int, reply: str, stage: str) -> bool:
    """Whether a reply condemns the mailbox (suppress the address) rather than this one message."""
    if not 500 <= code < 600:
        return False
    if stage == "RCPT":
        return True
    enhanced = enhanced_code(reply)
    return bool(enhanced) and enhanced.split(".")[1] in MAILBOX_SUBJECTS


def enhanced_code(reply: str) -> str:
    """The RFC 3463 enhanced status code at the start of a reply, or ""."""
    match = ENHANCED_CODE.match(reply)
    return match.group(1) if match else ""


def clean(value: bytes | str, password: str = "") -> str:
    """A server reply or an error as one redacted line, never containing the password."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    text = " ".join(text.split())
    if password:
        text = text.replace(password, "<redacted>")
    return redact(text)[:500]


def rset(smtp: smtplib.SMTP) -> None:
    """End the open transaction; a failure shows at the next MAIL anyway."""
    with contextlib.suppress(smtplib.SMTPException, OSError):
        smtp.rset()


def close_session(smtp: smtplib.SMTP) -> None:
    """End a session politely; what was accepted is accepted whatever QUIT says."""
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        smtp.close()


def is_loopback(host: str) -> bool:
    """Whether a host name or address is this machine (clear text is only allowed there)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
