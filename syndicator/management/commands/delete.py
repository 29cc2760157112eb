"""``syndicator delete``: delete a post on the networks it went to (#12); asks first."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import CommandParser

from syndicator import followup
from syndicator.cli_util import FollowupCommand, stdin_is_a_terminal
from syndicator.errors import UserError
from syndicator.models import Delivery, Post

YES = ("y", "yes")


class Command(FollowupCommand):
    help = (
        "Delete a post (by id or exact URL) everywhere: on every target it went to whose network "
        "allows it, and cancel its deliveries not sent yet. A deletion is not undone: asks first, "
        "on a terminal, or needs --yes. A worker makes the deletions (see `syndicator log`)."
    )
    action = Delivery.Followup.DELETE
    words = {
        (False, True): "delete asked",
        (False, False): "not deleted",
        (True, True): "would be deleted",
        (True, False): "would not be deleted",
    }

    def add_arguments(self, parser: CommandParser) -> None:
        """The shared options, and --yes."""
        super().add_arguments(parser)
        parser.add_argument("--yes", action="store_true", help="delete without asking for confirmation")

    def act(
        self, post: Post, targets: list[str] | None, *, dry_run: bool, yes: bool = False, **options: Any
    ) -> tuple[list[followup.Plan], str]:
        """Delete, once confirmed: --yes, or a "y" typed at the terminal after the plan."""
        if dry_run or yes:
            return super().act(post, targets, dry_run=dry_run, **options)
        if not stdin_is_a_terminal():
            # A script or a pipe cannot answer: refusing is the safe default for what is not undone.
            raise UserError(
                "a deletion is not undone and nobody can confirm it here (standard input is not a "
                "terminal): pass --yes to delete, or --dry-run to see what it would do"
            )
        plans = followup.preview(post, self.action, targets=targets)
        if not any(plan.asked for plan in plans):
            return plans, "nothing to delete, nothing changed"  # nor to cancel: nothing to confirm
        # The question and its plan go to stderr, as a prompt does: stdout stays the result (--json).
        self.write_plans(post, plans, unchanged="not yet: confirm below", to_stderr=True)
        names = ", ".join(plan.target for plan in plans if plan.asked)
        self.stderr.write(f"Delete post {post.pk} on {names}? It cannot be undone. [y/N] ", ending="")
        self.stderr.flush()
        answer = sys.stdin.readline().strip().lower()
        if answer not in YES:
            raise UserError("not confirmed: nothing was deleted")
        return super().act(post, targets, dry_run=False, **options)
