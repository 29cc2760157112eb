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

import dataclasses
import os
import smtplib
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import timezone
from django.utils.text import slugify

from syndicator.errors import DeliveryError, TargetBroken
from syndicator.mailing import PreparedMessage, Sender, ascii_address, make_message_id
from syndicator.targets.base import Adapter, Capabilities, SendResult, register
from syndicator.targets.config import Duration, Setting, TimeOfDay
from syndicator.targets.email import smtp as _smtp
from syndicator.targets.email.smtp import Outcome, Server
from syndicator.targets.email.text import RULES as TEXT_RULES

if TYPE_CHECKING:
    from syndicator.formatting import Message
    from syndicator.models import Delivery, Subscriber

SECURITY = ("starttls", "tls", "none")
MODES = ("per_post", "digest")  # one email per post, or one per period (syndicator/digest.py)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# One commit per this many subscribers instead of one per message: a durable commit costs 1-3 ms
# on this machine's PostgreSQL (bench/email_fanout.py), which alone capped a fan-out at ~300/s.
# The price: a worker killed mid-batch leaves up to this many "unknown" (docs/networks.md, email).
WRITE_AHEAD = 100


@dataclass(frozen=True)
class SmtpConfig:
    """A target's settings, checked and typed (the password is never part of it)."""

    server: Server
    sender: Sender
    rate_limit_wait: float
    batch_seconds: float
    connections: int = 1
    write_ahead: int = 1


class Recorder:
    """One session's per-subscriber results, written in batches without losing the write-ahead.

    Each "unknown" is still written before its DATA (a worker killed after it can never send that
    subscriber twice), but as one upsert that also carries every answer held since the previous
    one; the answers left at the end are written in one more. So a subscriber costs one statement
    where it cost two ``update_or_create`` transactions (38% of a fan-out's time, issue 16). An
    answer not written when the worker dies stays what was written ahead: "unknown" for a message
    that went out, nothing (pending, so the retry sends it) for one that did not.
    """

    HOLD = 500  # answers held at most (deferrals and refusals at MAIL/RCPT write nothing ahead)

    def __init__(self, delivery: Delivery, smtp: _smtp.TrackedSMTP) -> None:
        self.delivery, self.smtp = delivery, smtp
        self.held: dict[int, tuple[str, int | None, str, str]] = {}
        self.sent_held: set[int] = set()  # held answers of messages that went out past "."
        self.reserved: set[int] = set()  # written "unknown" ahead and not answered yet
        self.prior: dict[int, tuple[str, int | None, str, str]] = {}  # their rows before that

    @property
    def in_flight(self) -> bool:
        """A message went out past its final "." and its answer is not written yet."""
        return bool(self.sent_held) or bool(getattr(self.smtp, "payload_sent", False))

    def reserve(self, batch: list[tuple[int, str]]) -> None:
        """Write "unknown" ahead for the next batch of (subscriber id, Message-ID), with every
        answer held: one statement, one commit, before the first DATA of the batch."""
        from syndicator.models import EmailRecipientResult as Result

        pks = [pk for pk, _ in batch]
        before = Result.objects.filter(delivery=self.delivery, subscriber_id__in=pks)
        for pk, *row in before.values_list(
            "subscriber_id", "status", "smtp_code", "smtp_reply", "message_id"
        ):
            self.prior[pk] = tuple(row)  # type: ignore[assignment]
        rows = dict(self.held)
        for pk, message_id in batch:
            rows.setdefault(pk, (Result.Status.UNKNOWN, None, "no reply yet", message_id))
        self.write(rows)
        self.reserved.update(pk for pk, _ in batch)

    def ahead(self, subscriber: Subscriber, message_id: str) -> None:
        """Before DATA: the subscriber's "unknown" is written (reserved with its batch, or now)."""
        if subscriber.pk not in self.reserved:
            self.reserve([(subscriber.pk, message_id)])

    def answer(
        self, subscriber: Subscriber, message_id: str, outcome: Outcome, *, suppress: bool = False
    ) -> Outcome:
        """Hold one subscriber's answer (and suppress the address at once after a final refusal)."""
        from syndicator.models import Subscriber as Model

        reply = f"{outcome.code} {outcome.reply}".strip() if outcome.code else outcome.reply
        self.held[subscriber.pk] = (outcome.status, outcome.code, reply[:2000], message_id)
        self.reserved.discard(subscriber.pk)
        if getattr(self.smtp, "payload_sent", False):
            self.sent_held.add(subscriber.pk)
        self.smtp.payload_sent = False  # its answer is held, and written with the next statement
        if suppress:
            Model.objects.filter(pk=subscriber.pk, suppressed_at__isnull=True).update(
                suppressed_at=timezone.now(), suppressed_reason=reply[:2000]
            )
        if len(self.held) >= self.HOLD:
            self.flush()
        return outcome

    def flush(self) -> None:
        """Write the answers held, and take back the "unknown" of those the session never reached."""
        from syndicator.models import EmailRecipientResult as Result

        if self.held:
            self.write(dict(self.held))
        if self.reserved:  # their DATA never went: back to what they were (or none: pending)
            unreached, self.reserved = self.reserved, set()
            restore = {pk: self.prior[pk] for pk in unreached if pk in self.prior}
            if restore:
                self.write(restore)
            gone = Result.objects.filter(delivery=self.delivery, subscriber_id__in=unreached - set(restore))
            gone.filter(status=Result.Status.UNKNOWN).delete()

    def write(self, rows: dict[int, tuple[str, int | None, str, str]]) -> None:
        from syndicator.models import EmailRecipientResult as Result

        Result.objects.bulk_create(
            [
                Result(
                    delivery=self.delivery,
                    subscriber_id=pk,
                    status=status,
                    smtp_code=code,
                    smtp_reply=reply,
                    message_id=message_id,
                )
                for pk, (status, code, reply, message_id) in rows.items()
            ],
            update_conflicts=True,
            unique_fields=["delivery", "subscriber"],
            update_fields=["status", "smtp_code", "smtp_reply", "message_id", "updated_at"],
        )
        self.held.clear()
        self.sent_held.clear()


@dataclass
class Progress:
    """How far an attempt got, for a failure of ours mid-send (``_smtp.own_failure``)."""

    recorders: list[Recorder] = dataclasses.field(default_factory=list)
    waiting: int = 0  # recipients of the attempt without a final answer yet (none, or deferred)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    @property
    def in_flight(self) -> bool:
        """A message went out past its final "." and its answer is not recorded yet."""
        return any(recorder.in_flight for recorder in self.recorders)

    def track(self, recorder: Recorder) -> None:
        with self.lock:
            self.recorders.append(recorder)

    def done(self, answered: bool) -> None:
        with self.lock:
            self.waiting -= answered

    def salvage(self) -> None:
        """Write the answers held in memory after a failure of ours (the database dropped, say),
        on a fresh connection when the old one is dead; if that fails too, they stay as written
        ahead. Only in autocommit: inside a transaction a new connection would not see its rows."""
        from django.db import connection

        for recorder in self.recorders:
            if not recorder.held and not recorder.reserved:
                continue
            try:
                if not connection.in_atomic_block and not connection.is_usable():
                    connection.close()
                recorder.flush()
            except Exception:  # best effort: the write-ahead already holds the guarantee
                return


@dataclass(frozen=True)
class _DigestKey:
    """What a digest's Message-IDs derive from (``make_message_id`` reads a guid and a feed id):
    its target and period, never its first post, whose own email may exist on another list."""

    guid: str
    feed_id: int = 0


def message_key(delivery: Delivery) -> object:
    """The post, or the digest, each subscriber's Message-ID is derived from."""
    from syndicator import digest

    period = digest.of(delivery)
    if period is None:
        return delivery.post
    return _DigestKey(f"digest:{period.target_id}:{period.period}")


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
        Setting(
            "connections",
            "Parallel SMTP sessions per send (ask your provider how many it allows)",
            type=int,
            default=1,
            minimum=1,
        ),
        Setting(
            "write_ahead",
            "Subscribers marked unknown per commit before their messages go out (1: one by one); "
            "a worker killed mid-batch leaves at most this many unknown, never sent twice",
            type=int,
            default=WRITE_AHEAD,
            minimum=1,
        ),
        Setting(
            "mode",
            "per_post: one email per post; digest: one email a day (or week) with the posts since the last",
            default="per_post",
            choices=MODES,
        ),
        Setting(
            "digest_at",
            "With mode=digest: when the digest goes out, local time in the target's timezone",
            type=TimeOfDay,
            default="07:00",
        ),
        Setting(
            "digest_day",
            "With mode=digest: the weekday of a weekly digest (mon..sun); empty: daily",
            choices=WEEKDAYS,
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
            connections=self.setting("connections"),
            write_ahead=self.setting("write_ahead"),
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

    def render(self, delivery: Delivery) -> Message:
        """A digest's email (every post of its period), or the post's own."""
        from syndicator import digest

        if (period := digest.of(delivery)) is not None:
            return digest.render(period, self.target)
        return super().render(delivery)

    def password(self, server: Server) -> str:
        """The SMTP password from the target's environment variable ("" without a username)."""
        return self.secret() if server.username else ""

    def send(self, message: Message, delivery: Delivery) -> SendResult:
        """Send to every pending subscriber in one session (or ``connections``); decide from all answers."""
        config = self.config()
        progress = Progress()
        try:
            return self.send_all(message, delivery, config, progress)
        except DeliveryError:
            raise
        except Exception as exc:  # ours, not the server's: the database dropped while recording, say
            progress.salvage()  # the answers known in memory, on a fresh connection if it can
            in_flight = progress.in_flight
            others = progress.waiting - in_flight
            raise _smtp.own_failure(exc, config.server, in_flight=in_flight, others_waiting=others) from exc

    def send_all(
        self, message: Message, delivery: Delivery, config: SmtpConfig, progress: Progress
    ) -> SendResult:
        """The sessions of ``send``, noting their progress as they go."""
        # A fresh retry budget (first attempt, or an admin's retry) re-sends to all not accepted;
        # automatic retries only to the deferred and the never tried.
        fresh = delivery.attempts <= delivery.budget_start + 1
        recipients = self.pending(delivery, fresh=fresh)
        progress.waiting = len(recipients)
        stops: list[tuple[bool, bool]] = []
        if recipients:
            # Built once per post: each subscriber's copy differs only in a few headers and the link.
            prepared = PreparedMessage(config.sender, message)
            deadline = time.monotonic() + config.batch_seconds
            count = min(config.connections, len(recipients))
            shares = [recipients[i::count] for i in range(count)]
            if count == 1:
                stops.append(self.session(config, prepared, delivery, shares[0], progress, deadline))
            else:
                stops += self.parallel(config, prepared, delivery, shares, progress, deadline)
        slow_down = any(stop[0] for stop in stops)
        paused = any(stop[1] for stop in stops)
        return self.verdict(delivery, config, slow_down=slow_down, paused=paused)

    def parallel(
        self,
        config: SmtpConfig,
        prepared: PreparedMessage,
        delivery: Delivery,
        shares: list[list[Subscriber]],
        progress: Progress,
        deadline: float,
    ) -> list[tuple[bool, bool]]:
        """One session per share, each in a thread with its own database connection."""
        from django.db import connection

        def run(share: list[Subscriber]) -> tuple[bool, bool]:
            try:
                return self.session(config, prepared, delivery, share, progress, deadline)
            except Exception:
                progress.salvage()  # in this thread, whose connection holds these answers
                raise
            finally:
                connection.close()  # this thread's own; Django opens one per thread

        with ThreadPoolExecutor(max_workers=len(shares), thread_name_prefix="smtp") as pool:
            futures = [pool.submit(run, share) for share in shares]
            wait(futures)
        errors = [e for e in (f.exception() for f in futures) if e is not None]
        if errors:
            # A session's own error (a refused sender, a lost server) first: it says more than ours.
            raise next((e for e in errors if isinstance(e, DeliveryError)), errors[0])
        return [f.result() for f in futures]

    def session(
        self,
        config: SmtpConfig,
        prepared: PreparedMessage,
        delivery: Delivery,
        recipients: list[Subscriber],
        progress: Progress,
        deadline: float,
    ) -> tuple[bool, bool]:
        """One SMTP session through its recipients: (asked to slow down, paused at the deadline)."""
        password = self.password(config.server)
        smtp = _smtp.open_session(config.server, password)
        recorder = Recorder(delivery, smtp)
        progress.track(recorder)
        sender = config.sender.address
        key = message_key(delivery)
        try:
            for number, subscriber in enumerate(recipients, start=1):
                if (number - 1) % config.write_ahead == 0 and config.write_ahead > 1:
                    batch = recipients[number - 1 : number - 1 + config.write_ahead]
                    recorder.reserve([(s.pk, make_message_id(key, s.email, sender)) for s in batch])
                outcome = self.send_one(smtp, config, prepared, delivery, subscriber, password, recorder)
                progress.done(outcome.status != "deferred")
                if outcome.stop:
                    return outcome.slow_down, False
                # The task has a time limit: pause between messages, the next attempt goes on.
                if number < len(recipients) and time.monotonic() > deadline:
                    return False, True
            return False, False
        finally:
            try:
                recorder.flush()
            finally:
                _smtp.close_session(smtp)

    def resumable(self, delivery: Delivery) -> bool:
        """A lost send with subscribers never tried (no result, or deferred) is resumed: the
        automatic retry sends only to them; the "unknown" ones wait for an admin."""
        return bool(self.pending(delivery))

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
        prepared: PreparedMessage,
        delivery: Delivery,
        subscriber: Subscriber,
        password: str,
        recorder: Recorder,
    ) -> Outcome:
        """MAIL, RCPT, DATA for one subscriber; its "unknown" is written before DATA, its answer
        is handed to the recorder (written with the next write-ahead, or at the end)."""
        from syndicator.models import EmailRecipientResult as Result

        Status = Result.Status
        sender, where = config.sender.address, config.server.where
        message_id = make_message_id(message_key(delivery), subscriber.email, sender)
        address = ascii_address(subscriber.email)
        if address is None:  # an internationalised local part needs SMTPUTF8, which we do not speak
            return recorder.answer(subscriber, message_id, Outcome(Status.REFUSED, reply="non-ASCII address"))
        payload = prepared.payload(subscriber, message_id)
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
                # Written ahead (one statement, with the answers held since the last one): a worker
                # killed from here on leaves "unknown", never a false "deferred".
                recorder.ahead(subscriber, message_id)
                code, reply = smtp.data(payload)
        except smtplib.SMTPDataError as exc:  # DATA itself refused: the message never went
            code, reply = exc.smtp_code, exc.smtp_error
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            status = Status.UNKNOWN if getattr(smtp, "payload_sent", False) else Status.DEFERRED
            text = f"{type(exc).__name__} at {stage}: {_smtp.clean(str(exc), password)}"
            return recorder.answer(subscriber, message_id, Outcome(status, reply=text, stop=True))
        outcome = _smtp.reply_outcome(code, _smtp.clean(reply, password), stage)
        if outcome.status != Status.ACCEPTED and not outcome.stop:
            _smtp.rset(smtp)  # end the open transaction before the next MAIL
        suppress = _smtp.condemns(code, outcome.reply, stage)
        return recorder.answer(subscriber, message_id, outcome, suppress=suppress)

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
