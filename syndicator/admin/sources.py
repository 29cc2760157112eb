"""Feeds and targets: health at a glance, poll now, pause and resume."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from syndicator import delivery as deliveries
from syndicator.admin.common import badge
from syndicator.health import feed_health, target_health
from syndicator.models import Feed, Target


@admin.register(Feed)
class FeedAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "__str__",
        "language",
        "enabled",
        "status_badge",
        "last_polled_at",
        "next_poll_at",
        "consecutive_failures",
        "short_error",
    )
    list_filter = ("enabled", "last_status", "language")
    search_fields = ("name", "url")
    actions = ["poll_now"]
    readonly_fields = (
        "etag",
        "last_modified",
        "body_hash",
        "hub_url",
        "polling_until",
        "last_polled_at",
        "last_success_at",
        "first_polled_at",
        "last_status",
        "last_http_status",
        "last_error",
        "consecutive_failures",
    )

    @admin.display(description="health", ordering="consecutive_failures")
    def status_badge(self, obj: Feed) -> str:
        health = feed_health(obj)
        return format_html('<span title="{}">{}</span>', health.reason, badge(health.state))

    @admin.display(description="last error")
    def short_error(self, obj: Feed) -> str:
        return obj.last_error[:80]

    @admin.action(description="Poll selected feeds now", permissions=["change"])
    def poll_now(self, request: HttpRequest, queryset: QuerySet[Feed]) -> None:
        from syndicator import watch  # imported here: admin loads at start-up, polling is rare

        for feed in queryset:
            report = watch.poll_feed(feed.pk)
            level = messages.ERROR if report.status == "error" else messages.INFO
            detail = report.error or f"{len(report.new_posts)} new posts, {report.deliveries} deliveries"
            self.message_user(request, f"{feed}: {report.status}: {detail}", level)


@admin.register(Target)
class TargetAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "format", "health", "secret_env")
    list_filter = ("kind", "enabled")
    search_fields = ("name",)
    filter_horizontal = ("feeds",)
    actions = ["pause", "resume"]
    readonly_fields = ("paused_at", "paused_reason")

    @admin.display(description="format")
    def format(self, obj: Target) -> str:
        return obj.message_format

    @admin.display(description="health")
    def health(self, obj: Target) -> str:
        verdict = target_health(obj)
        return format_html("{} {}", badge(verdict.state), verdict.reason[:100])

    @admin.action(description="Pause selected targets", permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet[Target]) -> None:
        for target in queryset:
            deliveries.pause_target(target, f"paused by {request.user}")
        self.message_user(request, f"{queryset.count()} targets paused.")

    @admin.action(description="Resume selected targets", permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet[Target]) -> None:
        sent = sum(deliveries.resume_target(target) for target in queryset)
        self.message_user(request, f"{queryset.count()} targets resumed; {sent} waiting deliveries queued.")
