"""``syndicator queue``: what will go out, per target, in order, with the time and why it waits."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandParser

from syndicator import queueing
from syndicator.cli_util import SyndicatorCommand, get_targets


class Command(SyndicatorCommand):
    help = "Show the queue: waiting deliveries per target, in the order they will go out (docs/pacing.md)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--target", default="", help="only this target")
        parser.add_argument("--json", action="store_true", help="one JSON list, for scripts")

    def handle(self, *args: Any, target: str, json: bool, **options: Any) -> None:
        if target:
            get_targets([target])  # a clear error for an unknown name
        found = queueing.entries(target or None)
        if json:
            self.stdout.write(_dumps([e.as_json() for e in found]))
            return
        if not found:
            self.stdout.write("nothing waits")
            return
        current = None
        for entry in found:
            row = entry.as_json()
            if row["target"] != current:
                current = row["target"]
                self.stdout.write(f"{current}:")
            when = row["at"] or "next"
            lane = " [breaking]" if row["breaking"] else ""
            self.stdout.write(f"  {when}  delivery {row['delivery']}  {row['reason']}{lane}  {row['title']}")


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2)
