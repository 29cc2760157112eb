"""Posts, as editors see them: newest first, each target's delivery status at a glance."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from syndicator.admin.common import badge
from syndicator.models import Delivery, Post


class DeliveryInline(admin.TabularInline):
    model = Delivery
    extra = 0
    can_delete = False
    fields = ("target", "status", "origin", "attempts", "external_url", "last_error")
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Post)
class PostAdmin(admin.ModelAdmin):
    list_display = ("id", "title", "feed", "language", "published_at", "first_seen_at", "delivery_summary")
    list_filter = ("feed", "language")
    search_fields = ("title", "url", "guid")
    date_hierarchy = "first_seen_at"
    inlines = [DeliveryInline]
    readonly_fields = ("feed", "guid", "first_seen_at")

    @admin.display(description="deliveries")
    def delivery_summary(self, obj: Post) -> str:
        parts = [
            badge(d.status, f"{d.target.name}: {d.status}") for d in obj.deliveries.select_related("target")
        ]
        return format_html(" ".join(["{}"] * len(parts)), *parts) if parts else "—"
