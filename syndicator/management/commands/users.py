"""``syndicator users``: add editors and admins, change a role, list the accounts."""

from __future__ import annotations

import secrets
import sys
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import CommandParser
from django.db import IntegrityError, transaction

from syndicator.cli_util import SyndicatorCommand, add_actions, iso, local_time, new_table, plain, styled
from syndicator.errors import UserError
from syndicator.roles import ROLES, role_of, set_role

ROLE_STYLES = {"superuser": "failing", "admin": "warning", "editor": "ok", "none": "disabled"}


def get_user(name: str) -> User:
    """The user with this user name, or a UserError."""
    user = get_user_model().objects.filter(username=name).first()
    if user is None:
        raise UserError(f"no user named {name!r} (see `syndicator users list`)")
    return user


def user_row(user: AbstractUser) -> dict[str, Any]:
    """A user as the JSON object ``users list --json`` prints."""
    return {
        "id": user.pk,
        "username": user.get_username(),
        "email": user.email,
        "role": role_of(user),
        "active": user.is_active,
        "last_login": iso(user.last_login),
        "date_joined": iso(user.date_joined),
    }


class Command(SyndicatorCommand):
    help = "Add editors and admins, change their role, list the accounts."

    def add_arguments(self, parser: CommandParser) -> None:
        """Subcommands: add, role, list."""
        action = add_actions(parser)
        add = action("add", "create an account with a role; prints a generated password unless you give one")
        add.add_argument("username", metavar="NAME")
        add.add_argument("--role", required=True, choices=sorted(ROLES), help="editor or admin")
        add.add_argument("--email", default="", help="the user's email address")
        add.add_argument(
            "--password-stdin", action="store_true", help="read the password from standard input (one line)"
        )

        role = action("role", "give an existing account another role")
        role.add_argument("username", metavar="NAME")
        role.add_argument("role", metavar="ROLE", choices=sorted(ROLES), help="editor or admin")

        listing = action("list", "show the accounts and their roles")
        listing.add_argument("--json", action="store_true", help="one JSON object per line")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        """Dispatch to the subcommand."""
        getattr(self, f"handle_{action}")(**options)

    def handle_add(self, *, username: str, role: str, email: str, password_stdin: bool, **_: Any) -> None:
        """Create the account in its role's group, with staff access to the web UI."""
        model = get_user_model()
        username = username.strip()
        if not username:
            raise UserError("the user name is empty")
        if model.objects.filter(username=username).exists():
            raise UserError(f"user {username!r} exists; change its role with `syndicator users role`")
        generated = not password_stdin
        password = secrets.token_urlsafe(15) if generated else sys.stdin.readline().rstrip("\r\n")
        user = model(username=username, email=email.strip())
        try:
            user.full_clean(exclude=["password"])
            validate_password(password, user)
        except ValidationError as exc:
            raise UserError("; ".join(exc.messages)) from None
        user.set_password(password)
        try:
            with transaction.atomic():
                user.save()
                set_role(user, role)
        except IntegrityError:  # created concurrently between the check and the insert
            raise UserError(f"user {username!r} exists") from None
        self.stdout.write(f"user {username!r} added as {role}")
        if generated:
            self.stdout.write(f"password: {password}")
            self.stdout.write("(shown once: give it to the user, who can change it on the web UI)")

    def handle_role(self, *, username: str, role: str, **_: Any) -> None:
        """Move an account to another role."""
        user = get_user(username)
        set_role(user, role)
        self.stdout.write(f"user {user.get_username()!r} is now {role}")

    def handle_list(self, *, json: bool, **_: Any) -> None:
        """Print every account with its role."""
        users = list(get_user_model().objects.prefetch_related("groups").order_by("username"))
        if json:
            self.write_json_lines(user_row(u) for u in users)
            return
        if not users:
            self.stdout.write("no users yet: add one with `syndicator users add NAME --role admin`")
            return
        table = new_table("name", "email", "role", "active", "last login")
        for u in users:
            role = role_of(u)
            table.add_row(
                plain(u.get_username()),
                plain(u.email),
                styled(role, ROLE_STYLES[role]),
                "yes" if u.is_active else styled("no", "disabled"),
                local_time(u.last_login) or "never",
            )
        self.write_table(table)
