"""The outbox (dry-run) target: renders exactly what a network would get, and sends it nowhere.

For exercising retries end to end it can fail on purpose: ``settings["fail"]`` names the error
(transient, rate_limited, permanent, unknown, broken) and ``settings["fail_next"]`` how many of
the next calls fail; the counter lives in the database, so every worker process shares it.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from django.db import transaction

from syndicator.errors import OutcomeUnknown, PermanentError, RateLimited, TargetBroken, TransientError
from syndicator.targets.base import Adapter, SendResult, register
from syndicator.targets.config import Duration, Setting
from syndicator.targets.registry import OUTBOX, formats

if TYPE_CHECKING:
    from syndicator.formatting import Message
    from syndicator.models import Delivery

FAILURES = {
    "transient": lambda s: TransientError("injected transient failure", http_status=503),
    "rate_limited": lambda s: RateLimited(
        "injected rate limit", retry_after=float(s.get("fail_retry_after", 1)), http_status=429
    ),
    "permanent": lambda s: PermanentError("injected permanent failure", http_status=400),
    "unknown": lambda s: OutcomeUnknown("injected timeout after the request left"),
    "broken": lambda s: TargetBroken("injected dead token", http_status=401),
}


@register
class OutboxAdapter(Adapter):
    """Dry run: the rendered message is stored in the delivery log and published nowhere."""

    kind = OUTBOX
    label = "outbox (dry run)"
    idempotent = True  # nothing is published, so sending again is harmless
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

    def verify(self, delivery: Delivery) -> SendResult | None:
        """Send again: nothing is published, so a second send is the honest answer to "did it go out"."""
        return self.send(self.render(delivery), delivery)

    def check(self) -> str:
        """Nothing to log in to; an injected dead token fails the check as a real one would."""
        settings = self.target.settings
        if settings.get("fail") == "broken" and int(settings.get("fail_next", 0) or 0) > 0:
            raise FAILURES["broken"](settings)
        return f"dry run: renders {self.target.message_format} messages and sends them nowhere"

    def _maybe_fail(self) -> None:
        from syndicator.models import Target

        with transaction.atomic():
            # no_key: a plain FOR UPDATE waits on every open transaction inserting deliveries for
            # this target (they hold FOR KEY SHARE on it), stalling sends behind a poll.
            target = Target.objects.select_for_update(no_key=True).get(pk=self.target.pk)
            remaining = int(target.settings.get("fail_next", 0) or 0)
            kind = target.settings.get("fail")
            if remaining <= 0 or kind not in FAILURES:
                return
            target.settings["fail_next"] = remaining - 1
            target.save(update_fields=["settings"])
        raise FAILURES[kind](target.settings)
