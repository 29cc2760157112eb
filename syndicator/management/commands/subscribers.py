"""``syndicator subscribers``: add, list, remove and import the subscribers of an email target."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandParser
from django.db import IntegrityError, transaction

from syndicator.cli_util import (
    SyndicatorCommand,
    add_actions,
    get_target,
    iso,
    local_time,
    new_table,
    plain,
    plural,
    styled,
)
from syndicator.errors import UserError
from syndicator.mailing import normalize_email
from syndicator.models import Subscriber, Target

NAME_MAX = Subscriber._meta.get_field("name").max_length
STATE_STYLES = {"active": "ok", "unsubscribed": "disabled", "suppressed": "failed"}


def email_target(name: str) -> Target:
    """The email target with this name, or a UserError."""
    target = get_target(name)
    if target.kind != "email":
        raise UserError(f"target {name!r} is a {target.kind} target; subscribers belong to email targets")
    return target


def valid_email(address: str) -> str:
    """The address normalized (domain lower-cased, IDNA), or a UserError."""
    try:
        return normalize_email(address)
    except ValidationError:
        raise UserError(f"{address.strip()!r} is not a valid email address") from None


def find(target: Target, address: str) -> Subscriber | None:
    """The target's subscriber with this address, whatever its case."""
    return target.subscribers.filter(email__iexact=address).first()


def subscriber_row(subscriber: Subscriber) -> dict[str, Any]:
    """A subscriber as the JSON object ``subscribers list --json`` prints."""
    return {
        "id": subscriber.pk,
        "email": subscriber.email,
        "name": subscriber.name,
        "state": subscriber.state,
        "created_at": iso(subscriber.created_at),
        "unsubscribed_at": iso(subscriber.unsubscribed_at),
        "suppressed_at": iso(subscriber.suppressed_at),
        "suppressed_reason": subscriber.suppressed_reason,
    }


class Command(SyndicatorCommand):
    help = "Add, list, remove and import the subscribers of an email target."

    def add_arguments(self, parser: CommandParser) -> None:
        """Subcommands: add, list, remove, import."""
        action = add_actions(parser)
        # The positional's dest is not "name": call_command(name=...) would mistake it for --name.
        add = action("add", "subscribe an address (or re-subscribe one that left or was suppressed)")
        add.add_argument("target", metavar="TARGET", help="the email target's name")
        add.add_argument("email", metavar="EMAIL")
        add.add_argument("--name", default="", help="the subscriber's name, shown in To:")

        listing = action("list", "show a target's subscribers and their state")
        listing.add_argument("target", metavar="TARGET")
        listing.add_argument("--json", action="store_true", help="one JSON object per line")

        remove = action("remove", "delete a subscriber and their delivery results")
        remove.add_argument("target", metavar="TARGET")
        remove.add_argument("email", metavar="EMAIL")

        imports = action("import", "add the addresses of a CSV file (columns: email[,name]; header optional)")
        imports.add_argument("target", metavar="TARGET")
        imports.add_argument("file", metavar="FILE.csv")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        """Dispatch to the subcommand."""
        getattr(self, f"handle_{action}")(**options)

    def handle_add(self, *, target: str, email: str, name: str, **_: Any) -> None:
        """Subscribe one address; an explicit add re-activates an unsubscribed or suppressed one."""
        found = email_target(target)
        address = valid_email(email)
        name = name.strip()[:NAME_MAX]
        existing = find(found, address)
        if existing and existing.state == "active":
            raise UserError(f"{existing.email} is already subscribed to {found.name!r}")
        if existing:
            was = existing.state
            existing.unsubscribed_at = existing.suppressed_at = None
            existing.suppressed_reason = ""
            existing.name = name or existing.name
            existing.save(update_fields=["unsubscribed_at", "suppressed_at", "suppressed_reason", "name"])
            self.stdout.write(f"{existing.email} subscribed to {found.name!r} again (was {was})")
            return
        try:
            with transaction.atomic():
                Subscriber.objects.create(target=found, email=address, name=name)
        except IntegrityError:  # added concurrently between the check and the insert
            raise UserError(f"{address} is already subscribed to {found.name!r}") from None
        self.stdout.write(f"{address} subscribed to {found.name!r}")

    def handle_list(self, *, target: str, json: bool, **_: Any) -> None:
        """Print a target's subscribers."""
        found = email_target(target)
        subscribers = list(found.subscribers.order_by("email"))
        if json:
            self.write_json_lines(subscriber_row(s) for s in subscribers)
            return
        if not subscribers:
            self.stdout.write(
                f"no subscribers yet: add one with `syndicator subscribers add {found.name} EMAIL`"
            )
            return
        table = new_table("email", "name", "state", "since", "reason")
        for s in subscribers:
            since = s.unsubscribed_at or s.suppressed_at or s.created_at
            table.add_row(
                plain(s.email),
                plain(s.name),
                styled(s.state, STATE_STYLES[s.state]),
                local_time(since),
                plain(s.suppressed_reason[:120]),
            )
        self.write_table(table)
        active = sum(s.state == "active" for s in subscribers)
        self.stdout.write(f"{plural(len(subscribers), 'subscriber')}, {active} active")

    def handle_remove(self, *, target: str, email: str, **_: Any) -> None:
        """Delete a subscriber (to stop mail but remember the address, they use the unsubscribe link)."""
        found = email_target(target)
        subscriber = find(found, email.strip())
        if subscriber is None:
            raise UserError(f"{email.strip()!r} is not a subscriber of {found.name!r}")
        subscriber.delete()
        self.stdout.write(f"removed {subscriber.email} from {found.name!r}")

    def handle_import(self, *, target: str, file: str, **_: Any) -> None:
        """Add every valid new address of a CSV file; report bad lines, skip known addresses."""
        found = email_target(target)
        path = Path(file)
        try:
            # utf-8-sig: spreadsheets write a byte-order mark that would stick to the first address.
            rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"), newline="")))
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read {file}: {exc}") from None
        except csv.Error as exc:
            raise UserError(f"{file} is not CSV: {exc}") from None
        known = {e.lower() for e in found.subscribers.values_list("email", flat=True)}
        added = duplicates = invalid = 0
        for number, row in enumerate(rows, start=1):
            cells = [cell.strip() for cell in row]
            if not any(cells):
                continue
            if number == 1 and cells[0].lower() in ("email", "e-mail", "email address", "address"):
                continue  # the header
            try:
                address = normalize_email(cells[0])
            except ValidationError:
                invalid += 1
                self.stderr.write(f"line {number}: {cells[0]!r} is not a valid email address; skipped")
                continue
            if address.lower() in known:
                duplicates += 1
                continue
            name = cells[1][:NAME_MAX] if len(cells) > 1 else ""
            known.add(address.lower())
            try:
                with transaction.atomic():
                    Subscriber.objects.create(target=found, email=address, name=name)
            except IntegrityError:  # added concurrently meanwhile
                duplicates += 1
                continue
            added += 1
        summary = f"imported {plural(added, 'subscriber')} into {found.name!r}"
        self.stdout.write(f"{summary}; {duplicates} already there, {invalid} invalid")
