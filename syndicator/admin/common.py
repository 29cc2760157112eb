"""Shared pieces of the admin pages: status badges, the permission check of a page's buttons."""

from __future__ import annotations

from django.contrib.admin import ModelAdmin
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.http import HttpRequest
from django.utils.html import format_html

STATUS_COLOURS = {
    "sent": "#2e7d32",
    "queued": "#546e7a",
    "sending": "#1565c0",
    "retrying": "#ef6c00",
    "failed": "#c62828",
    "uncertain": "#6a1b9a",
    "skipped": "#757575",
    "cancelled": "#757575",
    "editing": "#1565c0",
    "deleting": "#1565c0",
    "deleted": "#757575",
    "refused": "#ef6c00",
    "unchanged": "#757575",
    "ok": "#2e7d32",
    "not_modified": "#2e7d32",
    "error": "#c62828",
    "new": "#546e7a",
    "warning": "#ef6c00",
    "failing": "#c62828",
    "paused": "#ef6c00",
    "disabled": "#757575",
    "marked_sent": "#2e7d32",
    "marked_not_sent": "#c62828",
    "transient": "#ef6c00",
    "rate_limited": "#ef6c00",
    "permanent": "#c62828",
    "unknown": "#6a1b9a",
    "lost": "#6a1b9a",
    "subscribed": "#2e7d32",
    "unsubscribed": "#757575",
    "suppressed": "#c62828",
}


def badge(value: str, label: str | None = None, *, css: str = "status-badge") -> str:
    """A coloured status badge; ``data-status`` lets browser tests read the state, not the colour."""
    colour = STATUS_COLOURS.get(value, "#546e7a")
    return format_html(
        '<span class="{}" data-status="{}" style="background:{};color:#fff;padding:2px 8px;'
        'border-radius:10px;font-size:11px;white-space:nowrap">{}</span>',
        css,
        value,
        colour,
        label or value,
    )


def require_change(model_admin: ModelAdmin, request: HttpRequest, obj: Model | None = None) -> None:
    """Refuse (403) a button's POST to anyone without the change right: editors only read."""
    if not model_admin.has_change_permission(request, obj):
        raise PermissionDenied
