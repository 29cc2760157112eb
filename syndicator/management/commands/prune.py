"""``syndicator prune``: apply SYNDICATOR_RETENTION now (the beat task does it daily)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from syndicator.cli_util import SyndicatorCommand, local_time
from syndicator.retention import prune


class Command(SyndicatorCommand):
    help = (
        "Clear the message text of attempts older than SYNDICATOR_RETENTION days and delete the "
        "per-recipient email results of settled deliveries as old; deliveries and outcomes stay."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """--dry-run."""
        parser.add_argument("--dry-run", action="store_true", help="print what would go, change nothing")

    def handle(self, *args: Any, dry_run: bool, **options: Any) -> None:
        """Prune, or count what a prune would do."""
        done = prune(dry_run=dry_run)
        verb = ("would clear", "would delete") if dry_run else ("cleared", "deleted")
        since = local_time(done.cutoff)
        self.stdout.write(
            f"{verb[0]} the messages of {done.attempt_messages} attempts finished before {since}"
        )
        self.stdout.write(
            f"{verb[1]} {done.email_results} per-recipient email results of settled deliveries "
            f"last changed before {since}"
        )
