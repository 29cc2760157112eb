"""SMTP plumbing of the email adapter: opening a session, and what every reply and error means.

The one table of TARGETS.md §4 ("retry vs give up"): the errors it raises are the rules of
``ERRORS`` (built by ``fault`` through faults.as_delivery_error), chosen by ``connection_error``
(before any message), ``own_failure`` and the adapter's verdict; each subscriber's own status is
``reply_outcome`` / ``condemns`` (for one subscriber's transaction):

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

from syndicator.errors import (
    DeliveryError,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    TargetBroken,
    TransientError,
)
from syndicator.redact import redact
from syndicator.targets.faults import ErrorTable, Rule, as_delivery_error

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


# The delivery-level errors of the table above, in one place: a session's reply code decides by
# its class (4xx: try later; 5xx: the server refuses this configuration), a failure that is not a
# reply by its kind (the keys), and an attempt's verdict over all subscribers by its kind too.
# (Each subscriber's own status is ``reply_outcome``/``condemns``: a result, not an error.)
ERRORS = ErrorTable(
    by_code={
        # opening the session
        "login": Rule(
            TargetBroken, "login as {username!r} refused", "check the username and the password in {env}"
        ),
        "unsupported": Rule(
            TargetBroken, "not offered by the server", "check security={security} and username"
        ),
        "greeting": Rule(TransientError, "did not greet us", "retry later"),
        "disconnected": Rule(TransientError, "closed the connection", "retry later"),
        "smtp": Rule(TargetBroken, "the session could not be set up", "check the server's settings"),
        "tls": Rule(TransientError, "TLS failed", "check the host name, or set ca_file"),
        "unreachable": Rule(TransientError, "unreachable", "retry later"),
        # one subscriber's transaction: a refused sender refuses every reader alike
        "sender": Rule(TargetBroken, "refuses the sender {sender}", "check from_address and the login"),
        # the attempt's verdict from every subscriber's answer
        "slow_down": Rule(RateLimited, "the server asks to slow down", "the retry sends only to them"),
        "paused": Rule(RateLimited, "paused to stay within the task time", "the next attempt goes on"),
        "deferred": Rule(TransientError, "deferred", "the retry sends only to them"),
        "unknown": Rule(
            OutcomeUnknown,
            "the connection was lost after the message was sent to {unknown}, so it may have arrived",
            "retrying the delivery re-sends to everyone not accepted",
        ),
        "all_refused": Rule(PermanentError, "all {refused} recipients refused"),
        # a failure of our own mid-send (the database dropped while a result was written, a bug)
        "interrupted": Rule(
            TransientError,
            "interrupted",
            "every message that went out is recorded with its answer, so the retry sends only to those "
            "still pending",
        ),
        "lost_others_waiting": Rule(
            TransientError,
            "a message went out and its answer could not be recorded, so it may have arrived",
            "the retry sends only to those waiting",
        ),
        "lost": Rule(
            OutcomeUnknown,
            "a message went out and its answer could not be recorded, so it may have arrived",
            "retrying the delivery re-sends to everyone not accepted",
        ),
    },
    # A session refused with a reply (EHLO, STARTTLS, AUTH): 5xx is the configuration, the rest
    # (4xx, or a reply smtplib could not parse) a passing state of the server.
    unlisted_3xx=Rule(TransientError, "answered", "retry later"),
    unlisted_4xx=Rule(TransientError, "answered", "retry later"),
    unlisted_5xx=Rule(TargetBroken, "refused the session", "check the server's settings"),
)


def fault(
    kind: str | int,
    subject: str,
    *,
    said: str = "",
    code: int | None = None,
    publishing: bool = False,
    retry_after: float | None = None,
    **values: object,
) -> DeliveryError:
    """The error of one row of ``ERRORS`` (a kind, or a session's reply code), with its message:
    "<subject>: <server's words> (<code>): <reason>; <advice>" (as Adapter.network_error words it).

    ``publishing``: only a failure after a message went out can be OutcomeUnknown.
    """
    rule = ERRORS.by_code[kind] if isinstance(kind, str) else ERRORS.rule(kind)
    reason, advice = rule.reason.format(**values), rule.advice.format(**values)
    status = f" ({code})" if code is not None else ""
    text = f"{subject}: {said}{status}: {reason}" if said else f"{subject}: {reason}{status}"
    if advice:
        text += f"; {advice}"
    return as_delivery_error(rule, text, publishing=publishing, http_status=code, retry_after=retry_after)


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


class TrackedSMTP(smtplib.SMTP):
    """smtplib's client, noting when the final "." of DATA has gone out: after it, a lost reply
    leaves the outcome unknown (TARGETS.md §4); before it, nothing was delivered."""

    payload_sent = False

    # The stub takes any buffer (_typeshed.ReadableBuffer, a name tests/test_packaging.py's import
    # scan would take for an undeclared package); smtplib itself sends only str and bytes.
    def send(self, s: bytes | str) -> None:  # type: ignore[override]
        super().send(s)
        if isinstance(s, bytes) and s.endswith(b"\r\n.\r\n"):  # only data() sends bytes
            self.payload_sent = True


class _SMTP(TrackedSMTP, smtplib.SMTP):
    pass


class _SMTPS(TrackedSMTP, smtplib.SMTP_SSL):
    pass


def open_session(server: Server, password: str) -> TrackedSMTP:
    """A session past EHLO, STARTTLS or TLS, and AUTH; failures mapped by ``connection_error``."""
    context = ssl.create_default_context(cafile=server.ca_file or None) if server.security != "none" else None
    smtp: TrackedSMTP | None = None
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
    """The error of a failure to open or authenticate a session (``ERRORS``, the table above)."""
    where = f"SMTP {server.where}"
    text = clean(str(exc), password)
    code = getattr(exc, "smtp_code", None)
    reply = clean(getattr(exc, "smtp_error", b""), password)
    env = f"${server.secret_env}" if server.secret_env else "(no secret env set)"
    match exc:
        case smtplib.SMTPAuthenticationError() if code and code >= 500:
            kind: str | int = "login"
        case smtplib.SMTPNotSupportedError():
            return fault("unsupported", where, said=text, security=server.security)
        case smtplib.SMTPConnectError():
            kind = "greeting"
        case smtplib.SMTPResponseException():
            kind = code if isinstance(code, int) else -1
        case smtplib.SMTPServerDisconnected():
            return fault("disconnected", where, said=text)
        case smtplib.SMTPException():  # e.g. no AUTH mechanism in common
            return fault("smtp", where, said=text)
        case ssl.SSLError():
            return fault("tls", where, said=text)
        case _:  # OSError: refused, unreachable, DNS, timeout; nothing was sent
            return fault("unreachable", where, said=f"{type(exc).__name__}: {text or 'timed out'}")
    return fault(kind, where, said=reply, code=code, username=server.username, env=env)


def own_failure(exc: BaseException, server: Server, *, in_flight: bool, others_waiting: int) -> DeliveryError:
    """The error of a failure of ours mid-send (the table above). Nothing unrecorded went out
    unless ``in_flight``: a message past its final "." whose answer could not be written; its row
    already says "unknown", so the retry never re-sends it."""
    said = f"{type(exc).__name__}: {clean(str(exc))}"
    if not in_flight:
        return fault("interrupted", "email", said=said)
    kind = "lost_others_waiting" if others_waiting else "lost"
    return fault(kind, f"email: SMTP {server.where}", said=said, publishing=True)


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
