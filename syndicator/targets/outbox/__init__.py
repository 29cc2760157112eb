"""The outbox (dry-run) target: renders exactly what a network would get, and sends it nowhere.

For exercising retries end to end it can fail on purpose: ``settings["fail"]`` names the error
(transient, rate_limited, permanent, unknown, broken) and ``settings["fail_next"]`` how many of
the next calls fail; the counter lives in the database, so every worker process shares it.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from django.db import transaction

from syndicator.errors import (
    DeliveryError,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    TargetBroken,
    TransientError,
)
from syndicator.targets.base import Adapter, Capabilities, SendResult, register
from syndicator.targets.config import Duration, Setting
from syndicator.targets.faults import Rule
from syndicator.targets.registry import OUTBOX, formats

if TYPE_CHECKING:
    from syndicator.formatting import Message
    from syndicator.models import Delivery

# The injected failures, each the rule and HTTP status a real network's error table would give,
# built the same way (Adapter.network_error, so faults.as_delivery_error): they carry http_status
# and retry_after like real ones, and "unknown" only from a publishing call.
FAILURES: dict[str, tuple[Rule, int | None]] = {
    "transient": (Rule(TransientError, "injected transient failure", "retrying later"), 503),
    "rate_limited": (Rule(RateLimited, "injected rate limit"), 429),
    "permanent": (Rule(PermanentError, "injected permanent failure"), 400),
    "unknown": (
        Rule(OutcomeUnknown, "injected timeout after the request left", "it may have been posted"),
        None,
    ),
    "broken": (Rule(TargetBroken, "injected dead token"), 401),
}


@register
class OutboxAdapter(Adapter):
    """Dry run: the rendered message is stored in the delivery log and published nowhere."""

    kind = OUTBOX
    label = "outbox (dry run)"
    idempotent = True  # nothing is published, so sending again is harmless
    # Both, so its on_update / on_unpublish settings take every choice; what one outbox can do is
    # that of the format it imitates (``abilities``).
    capabilities = Capabilities(edit=True, delete=True, note="imitates the format it renders")
    settings_spec = (
        # Any network's format; the first registered one when none is set.
        Setting("format", "Network whose format to render", choices=formats),
        Setting("fail", "Fail on purpose with this error class", choices=tuple(FAILURES)),
        Setting("fail_next", "How many of the next sends fail on purpose", type=int, default=0, minimum=0),
        Setting(
            "fail_retry_after",
            "retry_after of an injected rate limit, seconds",
            type=Duration,
            default=1.0,
            minimum=0,
        ),
    )

    def send(self, message: Message, delivery: Delivery) -> SendResult:
        """Store nothing beyond the log: answer with a deterministic id, or an injected failure."""
        self._maybe_fail()
        digest = hashlib.sha256(f"{delivery.pk}:{message.as_log_text()}".encode()).hexdigest()[:16]
        return SendResult(external_id=f"outbox-{delivery.pk}-{digest}")

    def network_label(self) -> str:
        from syndicator.targets.registry import network

        return f"{network(self.target.message_format).label} (dry run)"

    def abilities(self) -> Capabilities:
        """The edit and delete abilities of the network whose format this outbox renders."""
        from syndicator.targets.registry import network

        imitated = network(self.target.message_format).capabilities
        return Capabilities(
            edit=imitated.edit,
            delete=imitated.delete,
            edit_window=imitated.edit_window,
            delete_window=imitated.delete_window,
            max_edits=imitated.max_edits,
            note=imitated.note,
        )

    def edit(self, message: Message, delivery: Delivery) -> SendResult:
        """A dry-run edit, recorded like a real one (the log's text before and after); fails on
        purpose like a send. The imitated network's window and edit count are the machinery's to
        check (syndicator/followup.py), as they are before a real network is asked."""
        self._maybe_fail("edit")
        return SendResult(external_id=delivery.external_id, external_url=delivery.external_url)

    def delete(self, delivery: Delivery) -> None:
        """A dry-run delete; fails on purpose like a send."""
        self._maybe_fail("delete")

    def verify(self, delivery: Delivery) -> SendResult | None:
        """Send again: nothing is published, so a second send is the honest answer to "did it go out"."""
        return self.send(self.render(delivery), delivery)

    def check(self) -> str:
        """Nothing to log in to; an injected dead token fails the check as a real one would."""
        if self.setting("fail") == "broken" and self.setting("fail_next") > 0:
            raise self.failure("broken", "check", publishing=False)
        return f"dry run: renders {self.target.message_format} messages and sends them nowhere"

    def failure(self, kind: str, action: str, *, publishing: bool) -> DeliveryError:
        """The injected failure ``kind``, as a real network's error answer would be built."""
        rule, status = FAILURES[kind]
        wait = self.setting("fail_retry_after") if rule.error is RateLimited else None
        error = self.network_error(rule, action, publishing=publishing, http_status=status, retry_after=wait)
        if wait is not None:
            # The wait is the imitated network's, set on purpose: 0 means "at once" (a test of the
            # retry policy), where a real answer without a wait gets the base's fallback.
            error.retry_after = wait
        return error

    def _maybe_fail(self, action: str = "send") -> None:
        from syndicator.models import Target

        if not (self.setting("fail") in FAILURES and self.setting("fail_next") > 0):
            # No fault configured in the target as this delivery read it (with its claim): no
            # lock, no transaction. The counter is only ever taken under the lock below.
            return
        with transaction.atomic():
            # no_key: a plain FOR UPDATE waits on every open transaction inserting deliveries for
            # this target (they hold FOR KEY SHARE on it), stalling sends behind a poll.
            target = Target.objects.select_for_update(no_key=True).get(pk=self.target.pk)
            # The locked row's values, typed as every setting is (a bad one pauses the target).
            locked = type(self)(target)
            remaining, kind = locked.setting("fail_next"), locked.setting("fail")
            if remaining <= 0 or kind not in FAILURES:
                return
            target.settings["fail_next"] = remaining - 1
            target.save(update_fields=["settings"])
        raise locked.failure(kind, action, publishing=action == "send")
