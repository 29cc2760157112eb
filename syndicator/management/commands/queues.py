"""``syndicator queues``: the Celery queues a worker consumes, from the registry of networks.

A worker started without ``-Q`` consumes all of them; to split work across machines, give each
worker some of these, e.g. ``celery -A celeryproject worker -Q $(syndicator queues --deliveries)``.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from syndicator.targets.registry import all_queues, delivery_queues


class Command(BaseCommand):
    help = "Print the Celery queues (comma-separated, for a worker's -Q)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--deliveries", action="store_true", help="only the networks' delivery queues")
        parser.add_argument("--lines", action="store_true", help="one queue per line")

    def handle(self, *args: Any, **options: Any) -> None:
        queues = delivery_queues() if options["deliveries"] else all_queues()
        self.stdout.write("\n".join(queues) if options["lines"] else ",".join(queues))
