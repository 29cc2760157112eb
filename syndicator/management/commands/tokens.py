"""``syndicator tokens``: make, list and revoke the API tokens of users."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import CommandParser
from django.utils import timezone

from syndicator.cli_util import (
    SyndicatorCommand,
    add_actions,
    iso,
    local_time,
    new_table,
    parse_ids,
    plain,
    styled,
)
from syndicator.errors import UserError
from syndicator.management.commands.users import get_user
from syndicator.models import ApiToken
from syndicator.roles import role_of
from syndicator.tokens import create_token, revoke

UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_expiry(value: str, now: datetime | None = None) -> datetime | None:
    """--expires: a span (90d, 12h, 2w, 30m) from now, or a date (2027-03-01); '' for never."""
    value = value.strip().lower()
    if not value or value == "never":
        return None
    now = now or timezone.now()
    if match := re.fullmatch(r"(\d+)\s*([mhdw])", value):
        return now + timedelta(**{UNITS[match[2]]: int(match[1])})
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UserError(
            f"--expires {value!r}: give a span like 90d, 12h, 2w, or a date like 2027-03-01"
        ) from None
    moment = moment if timezone.is_aware(moment) else timezone.make_aware(moment)
    if moment <= now:
        raise UserError(f"--expires {value!r} is in the past")
    return moment


def token_state(token: ApiToken) -> str:
    """revoked, expired or active."""
    return "revoked" if token.revoked_at else "expired" if token.expired else "active"


def token_row(token: ApiToken) -> dict[str, Any]:
    """A token as the JSON object ``tokens list --json`` prints (never the token itself)."""
    return {
        "id": token.pk,
        "user": token.user.get_username(),
        "name": token.name,
        "created_at": iso(token.created_at),
        "last_used_at": iso(token.last_used_at),
        "revoked_at": iso(token.revoked_at),
        "expires_at": iso(token.expires_at),
        "scope": token.scope or "all",
        "state": token_state(token),
    }


class Command(SyndicatorCommand):
    help = "Make, list and revoke API tokens (Authorization: Bearer) for the JSON API and /metrics."

    def add_arguments(self, parser: CommandParser) -> None:
        """Subcommands: create, list, revoke."""
        action = add_actions(parser)
        create = action("create", "make a token for a user and print it (once: only its hash is kept)")
        create.add_argument("username", metavar="USER")
        create.add_argument("--name", default="", help="what the token is for, e.g. cms-hook")
        create.add_argument(
            "--expires", default="", help="refuse it after a span (90d, 12h, 2w) or a date (2027-03-01)"
        )
        create.add_argument(
            "--scope",
            choices=["all", "metrics"],
            default="all",
            help="all: what the user's role allows (API, and /metrics for admins); metrics: /metrics only",
        )

        listing = action("list", "show the tokens (not their values), newest last")
        listing.add_argument("--user", default="", help="only this user's tokens")
        listing.add_argument("--json", action="store_true", help="one JSON object per line")

        revoke_ = action("revoke", "stop a token working")
        revoke_.add_argument("ids", metavar="ID", nargs="+", help="token ids (see `syndicator tokens list`)")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        """Dispatch to the subcommand."""
        getattr(self, f"handle_{action}")(**options)

    def handle_create(self, *, username: str, name: str, expires: str, scope: str, **_: Any) -> None:
        """Make the token and print it."""
        user = get_user(username)
        if not user.is_active:
            raise UserError(f"user {username!r} is inactive: a token of theirs would not work")
        expires_at = parse_expiry(expires)
        scope_value = ApiToken.Scope.METRICS if scope == "metrics" else ApiToken.Scope.ALL
        row, token = create_token(user, name.strip(), scope=scope_value, expires_at=expires_at)
        until = f", expires {local_time(expires_at)}" if expires_at else ""
        only = ", /metrics only" if scope_value else ""
        self.stdout.write(f"token {row.pk} for {user.get_username()!r} ({role_of(user)}{only}{until}):")
        self.stdout.write(token)
        self.stdout.write("(shown once; send it as `Authorization: Bearer <token>`)")

    def handle_list(self, *, user: str, json: bool, **_: Any) -> None:
        """Print the tokens."""
        rows = ApiToken.objects.select_related("user").order_by("id")
        if user:
            rows = rows.filter(user=get_user(user))
        tokens = list(rows)
        if json:
            self.write_json_lines(token_row(t) for t in tokens)
            return
        if not tokens:
            self.stdout.write("no tokens: make one with `syndicator tokens create USER`")
            return
        table = new_table("id", "user", "name", "scope", "created", "last used", "expires", "state")
        for t in tokens:
            state = token_state(t)
            table.add_row(
                str(t.pk),
                plain(t.user.get_username()),
                plain(t.name),
                t.scope or "all",
                local_time(t.created_at),
                local_time(t.last_used_at) or "never",
                local_time(t.expires_at) or "never",
                styled(state, "ok" if state == "active" else "disabled"),
            )
        self.write_table(table)

    def handle_revoke(self, *, ids: list[str], **_: Any) -> None:
        """Revoke each token given."""
        for pk in parse_ids(ids, "token"):
            if revoke(pk):
                self.stdout.write(f"token {pk} revoked")
            elif ApiToken.objects.filter(pk=pk).exists():
                self.stdout.write(f"token {pk} was already revoked")
            else:
                raise UserError(f"no token with id {pk} (see `syndicator tokens list`)")
