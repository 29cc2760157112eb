"""Email: one message per subscriber over SMTP (smtplib + email.message), with one-click unsubscribe.

Each attempt opens one SMTP session and sends every pending subscriber a personal copy (its own
List-Unsubscribe URL) with the low-level mail()/rcpt()/data() calls, so the final 250 reply (often a
queue id) is kept (TARGETS.md §4). The server's answer for each subscriber is recorded in
``EmailRecipientResult`` as it arrives, and the attempt's error is decided from all of them:

    every pending subscriber answered        accepted ≥ 1: sent ("accepted 12, refused 1")
                                             all refused: PermanentError; none at all: sent, 0
    some deferred (4xx), or the session      TransientError (RateLimited after a slow-down code
      broke before their message went          or a paused batch); the retry sends only to them
    nothing pending, some "unknown"          OutcomeUnknown: the delivery becomes uncertain

"unknown" is a subscriber whose message went out (the final "." of DATA) with no reply after it:
it may have arrived, so no automatic retry re-sends it, and while others are still deferred the
attempt stays a TransientError (they deserve their retries). Only when nothing else is pending is
the whole delivery uncertain; an admin's retry (a fresh retry budget) then re-sends to every
active subscriber not yet accepted: the unknown ones and those refused for the content.

What each SMTP reply and error means (TARGETS.md §4, "retry vs give up") is one table, in
syndicator/targets/email/smtp.py with the session plumbing.
"""

from __future__ import annotations

import os
import smtplib
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import timezone
from django.utils.text import slugify

from syndicator.errors import DeliveryError, TargetBroken
from syndicator.mailing import WIRE, Sender, ascii_address, build_message, make_message_id
from syndicator.targets.base import Adapter, Capabilities, SendResult, register
from syndicator.targets.config import Duration, Setting
from syndicator.targets.email import smtp as _smtp
from syndicator.targets.email.smtp import Outcome, Server
from syndicator.targets.email.text import RULES as TEXT_RULES

if TYPE_CHECKING:
    from syndicator.formatting import Message
    from syndicator.models import Delivery, Subscriber

SECURITY = ("starttls", "tls", "none")


@dataclass(frozen=True)
class SmtpConfig:
    """A target's settings, checked and typed (the password is never part of it)."""

    server: Server
    sender: Sender
    rate_limit_wait: float
    batch_seconds: float


@dataclass
class Progress:
    """How far an attempt got, for a failure of ours mid-send (``_smtp.own_failure``)."""

    session: _smtp.TrackedSMTP | None = None
    waiting: int = 0  # recipients of the attempt without a final answer yet (none, or deferred)

    @property
    def in_flight(self) -> bool:
        """A message went out past its final "." and its answer is not recorded yet."""
        return bool(getattr(self.session, "payload_sent", False))


@register
class EmailAdapter(Adapter):
    """A mailing list: every active subscriber of the target gets the post by SMTP."""

    kind = "email"
    label = "email"
    documented_secrets = ("SMTP_PASSWORD",)  # README: connecting the networks
    per_recipient_results = True
    text = TEXT_RULES
    errors = _smtp.ERRORS
    capabilities = Capabilities(note="a sent email cannot be changed or taken back")
    settings_spec = (
        Setting("host", "SMTP server host name", required=True),
        Setting("port", "SMTP port (default 587, or 465 with security=tls)", type=int, minimum=1),
        Setting("security", "TLS mode; none only to a loopback host", default="starttls", choices=SECURITY),
        Setting("username", "SMTP login; the password comes from the target's secret env variable"),
        Setting("from_address", "Sender address (From and envelope)", required=True),
        Setting("from_name", "Sender display name"),
        Setting("reply_to", "Reply-To address"),
        Setting("list_id", "List-Id (default <target-name>.syndicator)"),
        Setting("unsubscribe_mailto", "Address for a mailto: List-Unsubscribe beside the HTTPS one"),
        Setting(
            "timeout",
            "Seconds per SMTP operation (default SYNDICATOR_TARGET_TIMEOUT)",
            type=Duration,
            minimum=0.001,
        ),
        Setting(
            "allow_insecure", "Allow security=none to a host that is not loopback", type=bool, default=False
        ),
        Setting("ca_file", "CA bundle to verify the server's certificate (default: the system's)"),
        Setting(
            "rate_limit_wait",
            "Seconds to wait after the server says to slow down",
            type=Duration,
            default=300.0,
            minimum=0,
        ),
        Setting(
            "batch_seconds",
            "Sending time per attempt; the rest follows in the next",
            type=Duration,
            default=45.0,
            minimum=0,
        ),
    )

    # --- configuration --------------------------------------------------------------------------

    def config(self) -> SmtpConfig:
        """The settings, typed and validated; TargetBroken naming the first bad one."""
        name = self.target.name
        host = str(self.setting("host")).strip()  # required: Adapter.setting pauses when unset
        security = str(self.setting("security"))  # one of SECURITY, or Adapter.setting pauses
        allow_insecure = self.setting("allow_insecure")  # read always: a bad value pauses alike
        if security == "none" and not _smtp.is_loopback(host) and not allow_insecure:
            raise TargetBroken(
                f"email target {name!r}: security=none would send mail and password in clear text to "
                f"{host}; use starttls or tls (allow_insecure=true overrides this)"
            )
        from_address = str(self.setting("from_address")).strip()
        for field in ("from_address", "reply_to", "unsubscribe_mailto"):
            value = str(self.setting(field) or "").strip()
            if value or field == "from_address":
                try:
                    validate_email(value)
                except ValidationError:
                    raise TargetBroken(
                        f"email target {name!r}: {field} {value!r} is not an address"
                    ) from None
        ca_file = str(self.setting("ca_file") or "")
        if ca_file and not os.path.isfile(ca_file):
            raise TargetBroken(f"email target {name!r}: ca_file {ca_file} does not exist")
        return SmtpConfig(
            server=Server(
                host=host,
                port=self.setting("port") or (465 if security == "tls" else 587),
                security=security,
                username=str(self.setting("username") or ""),
                timeout=self.setting("timeout") or settings.SYNDICATOR_TARGET_TIMEOUT,
                ca_file=ca_file,
                secret_env=self.target.secret_env,
            ),
            sender=Sender(
                address=from_address,
                name=str(self.setting("from_name") or ""),
                reply_to=str(self.setting("reply_to") or ""),
                list_id=str(self.setting("list_id") or f"{slugify(name) or 'list'}.syndicator"),
                unsubscribe_mailto=str(self.setting("unsubscribe_mailto") or ""),
            ),
            rate_limit_wait=self.setting("rate_limit_wait"),
            batch_seconds=self.setting("batch_seconds"),
        )

    # --- check and send -------------------------------------------------------------------------

    def check(self) -> str:
        """Connect, EHLO, STARTTLS or TLS, log in if configured, QUIT: one verdict line."""
        server = self.config().server
        _smtp.close_session(_smtp.open_session(server, self.password(server)))
        if server.username:
            verdict = f"SMTP login to {server.where} as {server.username}, {server.security}"
        else:
            verdict = f"SMTP connection to {server.where} (no login configured), {server.security}"
        active = self.target.subscribers.active().count()
        verdict += f"; {active} active subscriber{'' if active == 1 else 's'}"
        if not settings.SYNDICATOR_PUBLIC_URL.lower().startswith("https://"):
            verdict += "; warning: SYNDICATOR_PUBLIC_URL is not https, so one-click unsubscribe is ignored"
        return verdict

    def password(self, server: Server) -> str:
        """The SMTP password from the target's environment variable ("" without a username)."""
        return self.secret() if server.username else ""

    def send(self, message: Message, delivery: Delivery) -> SendResult:
        """Send to every pending subscriber in one session; decide from all their answers."""
        config = self.config()
        progress = Progress()
        try:
            return self.send_all(message, delivery, config, progress)
        except DeliveryError:
            raise
        except Exception as exc:  # ours, not the server's: the database dropped while recording, say
            in_flight = progress.in_flight
            others = progress.waiting - in_flight
            raise _smtp.own_failure(exc, config.server, in_flight=in_flight, others_waiting=others) from exc

    def send_all(
        self, message: Message, delivery: Delivery, config: SmtpConfig, progress: Progress
    ) -> SendResult:
        """The session of ``send``, noting its progress as it goes."""
        # A fresh retry budget (first attempt, or an admin's retry) re-sends to all not accepted;
        # automatic retries only to the deferred and the never tried.
        fresh = delivery.attempts <= delivery.budget_start + 1
        recipients = self.pending(delivery, fresh=fresh)
        progress.waiting = len(recipients)
        slow_down = paused = False
        if recipients:
            started = time.monotonic()
            password = self.password(config.server)
            smtp = progress.session = _smtp.open_session(config.server, password)
            try:
                for number, subscriber in enumerate(recipients, start=1):
                    outcome = self.send_one(smtp, config, message, delivery, subscriber, password)
                    smtp.payload_sent = False  # its answer is recorded
                    progress.waiting -= outcome.status != "deferred"
                    if outcome.stop:
                        slow_down = outcome.slow_down
                        break
                    # The task has a time limit: pause between messages, the next attempt goes on.
                    if number < len(recipients) and time.monotonic() - started > config.batch_seconds:
                        paused = True
                        break
            finally:
                _smtp.close_session(smtp)
        return self.verdict(delivery, config, slow_down=slow_down, paused=paused)

    def pending(self, delivery: Delivery, *, fresh: bool = False) -> list[Subscriber]:
        """Active subscribers still to be sent this delivery, in a stable order."""
        from syndicator.models import EmailRecipientResult as Result

        final = (
            [Result.Status.ACCEPTED]
            if fresh
            else [Result.Status.ACCEPTED, Result.Status.REFUSED, Result.Status.UNKNOWN]
        )
        done = Result.objects.filter(delivery=delivery, status__in=final).values("subscriber_id")
        return list(self.target.subscribers.active().exclude(pk__in=done).order_by("pk"))

    def send_one(
        self,
        smtp: _smtp.TrackedSMTP,
        config: SmtpConfig,
        message: Message,
        delivery: Delivery,
        subscriber: Subscriber,
        password: str,
    ) -> Outcome:
        """MAIL, RCPT, DATA for one subscriber; its result is recorded before this returns."""
        from syndicator.models import EmailRecipientResult as Result

        Status = Result.Status
        sender, where = config.sender.address, config.server.where
        message_id = make_message_id(delivery.post, subscriber.email, sender)
        address = ascii_address(subscriber.email)
        if address is None:  # an internationalised local part needs SMTPUTF8, which we do not speak
            return self.record(
                delivery, subscriber, message_id, Outcome(Status.REFUSED, reply="non-ASCII address")
            )
        payload = build_message(config.sender, message, subscriber, message_id).as_bytes(policy=WIRE)
        smtp.payload_sent = False  # set by TrackedSMTP.send
        stage = "MAIL"
        reply: bytes | str  # bytes from smtplib's replies, bytes | str in SMTPResponseException
        try:
            code, reply = smtp.mail(sender)
            if 500 <= code < 600:  # the sender, not this reader, is refused: configuration
                said = _smtp.clean(reply, password)
                raise _smtp.fault("sender", f"SMTP {where}", said=said, code=code, sender=sender)
            if code == 250:
                stage = "RCPT"
                code, reply = smtp.rcpt(address)
            if code in (250, 251):
                stage = "DATA"
                # Written ahead: a worker killed from here on leaves "unknown", never a false "deferred".
                self.record(delivery, subscriber, message_id, Outcome(Status.UNKNOWN, reply="no reply yet"))
                code, reply = smtp.data(payload)
        except smtplib.SMTPDataError as exc:  # DATA itself refused: the message never went
            code, reply = exc.smtp_code, exc.smtp_error
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            status = Status.UNKNOWN if getattr(smtp, "payload_sent", False) else Status.DEFERRED
            text = f"{type(exc).__name__} at {stage}: {_smtp.clean(str(exc), password)}"
            return self.record(delivery, subscriber, message_id, Outcome(status, reply=text, stop=True))
        outcome = _smtp.reply_outcome(code, _smtp.clean(reply, password), stage)
        if outcome.status != Status.ACCEPTED and not outcome.stop:
            _smtp.rset(smtp)  # end the open transaction before the next MAIL
        suppress = _smtp.condemns(code, outcome.reply, stage)
        return self.record(delivery, subscriber, message_id, outcome, suppress=suppress)

    def record(
        self,
        delivery: Delivery,
        subscriber: Subscriber,
        message_id: str,
        outcome: Outcome,
        *,
        suppress: bool = False,
    ) -> Outcome:
        """Store one subscriber's result (and suppress the address after a final refusal)."""
        from syndicator.models import EmailRecipientResult, Subscriber

        reply = f"{outcome.code} {outcome.reply}".strip() if outcome.code else outcome.reply
        EmailRecipientResult.objects.update_or_create(
            delivery=delivery,
            subscriber=subscriber,
            defaults={
                "status": outcome.status,
                "smtp_code": outcome.code,
                "smtp_reply": reply[:2000],
                "message_id": message_id,
            },
        )
        if suppress:
            Subscriber.objects.filter(pk=subscriber.pk, suppressed_at__isnull=True).update(
                suppressed_at=timezone.now(), suppressed_reason=reply[:2000]
            )
        return outcome

    def verdict(self, delivery: Delivery, config: SmtpConfig, *, slow_down: bool, paused: bool) -> SendResult:
        """The attempt's result from every recorded answer of the delivery (see the module docstring)."""
        from syndicator.models import EmailRecipientResult as Result

        results = Result.objects.filter(delivery=delivery).order_by("updated_at", "pk")
        rows = list(results.values_list("status", "smtp_reply"))
        counts = Counter(status for status, _ in rows)
        pending = len(self.pending(delivery))
        waiting = f"{pending} recipient{'' if pending == 1 else 's'}"
        parts = [f"accepted {counts[Result.Status.ACCEPTED]}"]
        parts += [
            f"{label} {n}"
            for label, n in (("refused", counts["refused"]), ("unknown", counts["unknown"]))
            if n
        ]
        summary = ", ".join(parts)
        last = next(
            (reply for status, reply in reversed(rows) if status == Result.Status.DEFERRED), "not tried yet"
        )
        if pending and (slow_down or paused):
            kind = "slow_down" if slow_down else "paused"
            said = f"{waiting} wait ({last})" if slow_down else f"{waiting} wait"
            wait = config.rate_limit_wait if slow_down else 1.0
            raise _smtp.fault(kind, "email", said=f"{said}; {summary}", retry_after=wait)
        if pending:
            raise _smtp.fault("deferred", "email", said=f"{waiting} ({last}); {summary}")
        if counts[Result.Status.UNKNOWN]:
            raise _smtp.fault("unknown", "email", said=summary, publishing=True, unknown=counts["unknown"])
        if not counts[Result.Status.ACCEPTED] and counts[Result.Status.REFUSED]:
            first = next(reply for status, reply in rows if status == Result.Status.REFUSED)
            raise _smtp.fault("all_refused", "email", said=first, refused=counts["refused"])
        details: dict[str, object]  # counts, and a note when there was no one to send to
        details = {"recipients": len(rows), **{status: counts[status] for status in Result.Status.values}}
        if not rows:
            details["note"] = "no active subscribers: nothing to send"
            summary = "accepted 0 (no active subscribers)"
        return SendResult(external_id=summary, details=details)
