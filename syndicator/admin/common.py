"""Shared pieces of the admin pages: status badges."""

from __future__ import annotations

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
    "ok": "#2e7d32",
    "not_modified": "#2e7d32",
    "error": "#c62828",
    "new": "#546e7a",
    "warning": "#ef6c00",
    "failing": "#c62828",
    "paused": "#ef6c00",
    "disabled": "#757575",
}


def badge(value: str, label: str | None = None) -> str:
    """A coloured status badge."""
    colour = STATUS_COLOURS.get(value, "#546e7a")
    return format_html(
        '<span style="background:{};color:#fff;padding:2px 8px;border-radius:10px;font-size:11px">{}</span>',
        colour,
        label or value,
    )
