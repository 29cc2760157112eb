"""Accounts for permission tests: an editor, an admin, a user without a role, and their tokens."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser

from syndicator.roles import set_role
from syndicator.tokens import create_token

PASSWORD = "a long test password 1"


def make_user(name: str, role: str | None = None) -> AbstractUser:
    """A user with this role (editor, admin) or none, whose password is PASSWORD."""
    user = get_user_model().objects.create_user(name, f"{name}@example.org", PASSWORD)
    if role:
        set_role(user, role)
    return user


def token_for(user: AbstractUser, name: str = "test") -> str:
    """A fresh API token of the user."""
    return create_token(user, name)[1]


def bearer(token: str) -> dict[str, str]:
    """Test client keyword arguments sending the token."""
    return {"headers": {"Authorization": f"Bearer {token}"}}
