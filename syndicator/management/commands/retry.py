"""``syndicator retry``: requeue failed, uncertain or cancelled deliveries with a fresh retry budget."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from syndicator import decisions
from syndicator.cli_util import SyndicatorCommand, os_user, parse_ids, plural
from syndicator.delivery_states import RETRYABLE
from syndicator.errors import UserError
from syndicator.models import Delivery


class Command(SyndicatorCommand):
    help = "Retry deliveries that failed, are uncertain or were cancelled; a worker sends them again."

    def add_arguments(self, parser: CommandParser) -> None:
        """One or more delivery ids."""
        parser.add_argument(
            "delivery_ids", nargs="+", metavar="DELIVERY_ID", help="ids from `syndicator log`"
        )

    def handle(self, *args: Any, delivery_ids: list[str], **options: Any) -> None:
        """Requeue the retryable ones and say what happened to the others."""
        ids = list(dict.fromkeys(parse_ids(delivery_ids, "delivery")))
        found = {d.pk: d for d in Delivery.objects.filter(pk__in=ids)}
        if missing := [str(i) for i in ids if i not in found]:
            raise UserError(f"no delivery with id {', '.join(missing)}")
        # An uncertain delivery may already be public: retrying it is the admin's explicit decision.
        # Credited in the timeline to the OS user, as a repost's requested_by is.
        requeued = decisions.retry((found[i] for i in ids), by=f"{os_user()} (command line)")
        for pk in ids:
            if found[pk].status not in RETRYABLE:
                self.stdout.write(f"delivery {pk} not retried: it is {found[pk].status}")
        summary = f"{requeued} of {plural(len(ids), 'delivery', 'deliveries')} requeued"
        self.stdout.write(summary + ("; a worker will send them" if requeued else ""))
