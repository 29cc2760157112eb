"""API tokens: made once and shown once, stored as a SHA-256, checked on every API call.

A token is 32 random bytes (``secrets.token_urlsafe``) behind a ``synd_`` prefix, so a leaked one
is recognisable in logs and secret scanners. Only its SHA-256 is stored: the token has the full
entropy of a random key, so a plain hash is enough (a slow password hash buys nothing here and
would cost every request).

A token may expire (``expires_at``) and may be made for /metrics only (``scope="metrics"``): such a
token is refused by the API, and lets a Prometheus scrape without holding an admin's rights. Bad
tokens are counted per client address and refused past a limit (syndicator.throttle).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone

from syndicator import throttle
from syndicator.models import ApiToken

PREFIX = "synd_"
# last_used_at is written at most this often per token: one write per request would be wasted load.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_token(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create_token(
    user: User, name: str = "", *, scope: str = "", expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """Make a token for a user; return the row and the token itself, which is never shown again."""
    token = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken.objects.create(
        user=user, name=name[:100], key_hash=hash_token(token), scope=scope, expires_at=expires_at
    )
    return row, token


def token_for(token: str, request: HttpRequest | None = None) -> ApiToken | None:
    """The working token row (unrevoked, unexpired, of an active user), or None; a bad token counts
    against the client (throttle.Throttled past the limit); records when the token was last used."""
    throttle.check("token", request)
    now = timezone.now()
    row = None
    if token.startswith(PREFIX) and len(token) <= 200:
        row = (
            ApiToken.objects.select_related("user")
            .filter(key_hash=hash_token(token), revoked_at__isnull=True, user__is_active=True)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
            .first()
        )
    if row is None:
        throttle.failed("token", request)
        return None
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
    return row


def user_for_token(token: str, request: HttpRequest | None = None) -> User | None:
    """The user of a working token for the API, or None (a /metrics-only token is not one)."""
    row = token_for(token, request)
    if row is None or row.scope != ApiToken.Scope.ALL:
        return None
    return row.user


def bearer_token(request: HttpRequest) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, or None."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def request_user(request: HttpRequest) -> User | None:
    """Who a request comes from: a bearer token's user, else the logged-in session's, else None."""
    if (token := bearer_token(request)) is not None:
        return user_for_token(token, request)
    user = getattr(request, "user", None)
    return user if user is not None and user.is_authenticated else None


def revoke(token_id: int) -> bool:
    """Revoke a token by id; False when there is no such unrevoked token."""
    return bool(
        ApiToken.objects.filter(pk=token_id, revoked_at__isnull=True).update(revoked_at=timezone.now())
    )
