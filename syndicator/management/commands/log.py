"""``syndicator log``: the delivery log, newest first, as a table or as JSON lines."""

from __future__ import annotations

import logging
from typing import Any

from django.core.management.base import CommandParser
from django.db.models import QuerySet
from django.utils import timezone

from syndicator import followup
from syndicator.cli_util import (
    SyndicatorCommand,
    get_target,
    iso,
    local_time,
    new_table,
    parse_since,
    plain,
    relative,
    split_list,
    styled,
)
from syndicator.errors import UserError
from syndicator.models import Delivery, DeliveryAttempt, Digest
from syndicator.targets import get_adapter

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 50


def delivery_text(delivery: Delivery) -> str:
    """The text as sent, or, before the first attempt, the text it would be sent with ("" if unrenderable)."""
    if delivery.rendered_text:
        return delivery.rendered_text
    try:
        return get_adapter(delivery.target).render(delivery).as_log_text()
    except Exception as exc:  # a broken template must not hide the rest of the log
        log.debug("delivery %s: cannot render a preview: %r", delivery.pk, exc)
        return ""


def attempt_action(kind: str) -> str:
    """What an attempt was about: "send", "edit" or "delete" (#12). A look-up (did an uncertain
    send go out?) and a person's verdict (marked sent or not sent, retried, cancelled) belong to
    the send, so they count as "send"."""
    if kind in (DeliveryAttempt.Kind.EDIT, DeliveryAttempt.Kind.DELETE):
        return str(kind)
    return "send"


def attempt_row(attempt: DeliveryAttempt) -> dict[str, Any]:
    """One attempt as ``log --json`` prints it inside its delivery's row (``attempt_log``)."""
    return {
        "number": attempt.number,
        "action": attempt_action(attempt.kind),
        "kind": attempt.kind,
        "outcome": attempt.outcome,
        "started_at": iso(attempt.started_at),
        "finished_at": iso(attempt.finished_at),
        "message": attempt.message,
        "actor": attempt.actor_name,
        "text_before": attempt.text_before,
        "text_after": attempt.text_after,
    }


def attempts_of(delivery: Delivery) -> list[DeliveryAttempt]:
    """The delivery's attempts, oldest first (from a prefetch when the caller made one)."""
    return sorted(delivery.attempt_log.all(), key=lambda a: a.number)


def delivery_row(delivery: Delivery) -> dict[str, Any]:
    """A delivery as the JSON object ``log --json`` prints (the API's delivery list too).

    ``action`` is the action of the latest attempt ("send" before the first one), ``text`` the
    text the network shows now (an edit replaces it), ``history`` the delivery's life in a few
    words (followup.history), ``attempt_log`` every attempt with its own ``action``.
    """
    attempts = attempts_of(delivery)
    return {
        "id": delivery.pk,
        "post_id": delivery.post_id,
        "post_url": delivery.post.url,
        "post_title": delivery.post.title,
        "feed_id": delivery.post.feed_id,
        "target": delivery.target.name,
        "target_kind": delivery.target.kind,
        "status": delivery.status,
        "origin": delivery.origin,
        "requested_by": delivery.requested_by,
        "attempts": delivery.attempts,
        "action": attempt_action(attempts[-1].kind) if attempts else "send",
        "history": followup.history(delivery),
        "text": delivery_text(delivery),
        "external_id": delivery.external_id,
        "external_url": delivery.external_url,
        "last_error": delivery.last_error,
        "created_at": iso(delivery.created_at),
        "sent_at": iso(delivery.sent_at),
        "next_attempt_at": iso(delivery.next_attempt_at),
        "edits": delivery.edits,
        "followup": delivery.followup,
        "followup_by": delivery.followup_by,
        "followup_note": delivery.followup_note,
        "flagged_at": iso(delivery.flagged_at),
        "deleted_at": iso(delivery.deleted_at),
        "deleted_by": delivery.deleted_by,
        "attempt_log": [attempt_row(a) for a in attempts],
    }


def detail(delivery: Delivery) -> str:
    """The one thing worth knowing about a delivery beyond its status, for the table."""
    Status = Delivery.Status
    if delivery.status == Status.DELETED:
        return plain(f"by {delivery.deleted_by}" if delivery.deleted_by else "")
    if delivery.status in (Status.SENT, Status.EDITING, Status.DELETING):
        parts = [plain(delivery.external_url or delivery.external_id)]
        if delivery.followup:
            parts.append(f"{delivery.followup} asked")
        if delivery.followup_note:  # why an edit or delete did not happen, or a flag's reason
            parts.append(plain(delivery.followup_note[:160]))
        return "; ".join(p for p in parts if p)
    parts = []
    if delivery.next_attempt_at and delivery.status == Status.RETRYING:
        parts.append(f"next try {relative(delivery.next_attempt_at)}")
    if delivery.last_error:
        parts.append(plain(delivery.last_error[:160]))
    return "; ".join(parts)


def history_cell(delivery: Delivery) -> str:
    """followup.history for the table; empty when it would only repeat the status."""
    said = followup.history(delivery)
    return "" if said == delivery.status else plain(said)


class Command(SyndicatorCommand):
    help = "Show the delivery log, newest first: what was sent where, what failed and why."

    def add_arguments(self, parser: CommandParser) -> None:
        """Filters, limit and output format."""
        statuses = ", ".join(Delivery.Status.values)
        parser.add_argument("--status", default="", help=f"only these statuses (comma-separated): {statuses}")
        parser.add_argument("--target", default="", help="only deliveries to this target (its name)")
        parser.add_argument(
            "--since", default="", help="only deliveries created within, e.g. 30s, 10m, 1h, 2d, 1w"
        )
        parser.add_argument(
            "--limit",
            type=int,
            default=DEFAULT_LIMIT,
            help=f"at most N rows (default {DEFAULT_LIMIT}; 0: all)",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help="one JSON object per line, with the full text, the history and every attempt",
        )

    def handle(
        self, *args: Any, status: str, target: str, since: str, limit: int, json: bool, **options: Any
    ) -> None:
        """Print the matching deliveries."""
        deliveries = list(self.select(status=status, target=target, since=since, limit=limit))
        if json:
            self.write_json_lines(delivery_row(d) for d in deliveries)
            return
        if not deliveries:
            self.stdout.write("no deliveries match")
            return
        table = new_table("id", "created", "status", "history", "target", "post", "origin", "tries", "detail")
        for d in deliveries:
            origin = f"{d.origin} ({plain(d.requested_by)})" if d.requested_by else d.origin
            table.add_row(
                str(d.pk),
                local_time(d.created_at),
                styled(d.status),
                history_cell(d),
                plain(d.target.name),
                plain(digest_label(d) + (d.post.title[:80] or d.post.url)),
                origin,
                str(d.attempts),
                detail(d),
            )
        self.write_table(table)

    def select(self, *, status: str, target: str, since: str, limit: int) -> QuerySet[Delivery]:
        """The deliveries the filters ask for, newest first."""
        rows = (
            Delivery.objects.select_related("post__feed", "target", "digest")
            .prefetch_related("attempt_log")
            .order_by("-created_at", "-id")
        )
        if statuses := split_list(status):
            if unknown := [s for s in statuses if s not in Delivery.Status.values]:
                known = ", ".join(Delivery.Status.values)
                raise UserError(f"unknown status {', '.join(map(repr, unknown))}; one of: {known}")
            rows = rows.filter(status__in=statuses)
        if target:
            rows = rows.filter(target=get_target(target))
        if since:
            rows = rows.filter(created_at__gte=timezone.now() - parse_since(since))
        if limit < 0:
            raise UserError(f"bad --limit {limit}: 0 (all) or more")
        return rows[:limit] if limit else rows


def digest_label(delivery: Delivery) -> str:
    """ "digest 2026-12-03: " before an email digest's first post (syndicator/digest.py), else ""."""
    try:
        return f"digest {delivery.digest.period}: "
    except Digest.DoesNotExist:
        return ""
