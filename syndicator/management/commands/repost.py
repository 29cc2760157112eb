"""``syndicator repost``: queue a post again, by hand, to some or all targets."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from syndicator import delivery, queueing
from syndicator.cli_util import SyndicatorCommand, find_post, get_targets, os_user, split_list
from syndicator.errors import UserError
from syndicator.models import Delivery, Target
from syndicator.reposting import text_problems


class Command(SyndicatorCommand):
    help = "Repost a post (by id or exact URL) to targets: creates manual deliveries that a worker sends."

    def add_arguments(self, parser: CommandParser) -> None:
        """The post, the targets, an optional text and who asked."""
        parser.add_argument("post", metavar="POST_ID_OR_URL", help="the post's id or its exact URL")
        parser.add_argument(
            "--to", default="", help="target names, comma-separated (default: every enabled one)"
        )
        parser.add_argument("--text", default="", help="send this text instead of the rendered message")
        parser.add_argument("--user", default="", help="who asked, for the log (default: your user name)")
        parser.add_argument(
            "--breaking", action="store_true", help="the breaking lane: skip quiet hours and spacing"
        )
        parser.add_argument(
            "--at",
            default="",
            metavar="YYYY-MM-DDTHH:MM",
            help="send at this time: in the target's timezone setting (else the site's TIME_ZONE), "
            "or with an offset (…+03:30)",
        )

    def handle(
        self,
        *args: Any,
        post: str,
        to: str,
        text: str,
        user: str,
        breaking: bool = False,
        at: str = "",
        **options: Any,
    ) -> None:
        """Create the deliveries and print their ids."""
        found = find_post(post)
        if names := split_list(to):
            targets = get_targets(names)
            if disabled := [t.name for t in targets if not t.enabled]:
                raise UserError(f"target {', '.join(map(repr, disabled))} is disabled: nothing would send it")
        else:
            targets = list(Target.objects.filter(enabled=True).order_by("name"))
            if not targets:
                raise UserError("no enabled target to repost to (add one with `syndicator targets add`)")
        # The check the Repost page and the API make: a text too long is refused, never cut.
        if problems := text_problems(found, targets, text):
            reasons = "; ".join(f"{name}: {reason}" for name, reason in problems.items())
            raise UserError(f"the text does not fit, nothing was queued: {reasons}")
        requested_by = (user.strip() or os_user())[: Delivery._meta.get_field("requested_by").max_length]
        created = []
        for target in targets:  # each target's own time zone reads --at
            when = queueing.scheduled_time(at, target) if at else None
            created += delivery.repost(
                found, [target], text=text, requested_by=requested_by, breaking=breaking, at=when
            )
        self.stdout.write(f"post {found.pk}: {found.title or found.url}")
        for d in created:
            if d.next_attempt_at:
                self.stdout.write(f"delivery {d.pk} → {d.target.name} at {d.next_attempt_at.isoformat()}")
                continue
            note = " (target paused: it waits until `targets resume`)" if d.target.paused_at else ""
            self.stdout.write(f"delivery {d.pk} → {d.target.name}{note}")
        count = len(created)
        self.stdout.write(
            f"{count} {'delivery' if count == 1 else 'deliveries'} queued; a worker will send "
            f"{'it' if count == 1 else 'them'} (see `syndicator log`)"
        )
