"""The admin: the delivery log with its attempt timeline, feeds, targets and posts."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from syndicator import delivery as deliveries
from syndicator.health import feed_health, target_health
from syndicator.models import (
    ApiToken,
    Delivery,
    DeliveryAttempt,
    EmailRecipientResult,
    Feed,
    Post,
    Subscriber,
    Target,
)
from syndicator.tokens import revoke

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


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = (
        "number",
        "started_at",
        "duration_ms",
        "outcome",
        "http_status",
        "error_class",
        "message",
        "retry_after",
        "worker",
        "task_id",
    )
    readonly_fields = fields
    ordering = ("number",)

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class EmailRecipientInline(admin.TabularInline):
    """Per-recipient results of an email delivery: who got it, who was deferred or refused."""

    model = EmailRecipientResult
    extra = 0
    can_delete = False
    fields = ("subscriber", "status", "smtp_code", "smtp_reply", "message_id", "updated_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "post_title",
        "target",
        "status_badge",
        "origin",
        "attempts",
        "short_error",
        "created_at",
        "sent_at",
        "published_link",
    )
    list_filter = ("status", "target", "origin", "post__feed", "created_at")
    search_fields = ("post__title", "post__url", "last_error", "rendered_text")
    list_select_related = ("post", "target")
    date_hierarchy = "created_at"
    inlines = [DeliveryAttemptInline, EmailRecipientInline]
    actions = ["retry_selected", "cancel_selected"]
    readonly_fields = (
        "post",
        "target",
        "origin",
        "requested_by",
        "status",
        "attempts",
        "budget_start",
        "next_attempt_at",
        "enqueued_at",
        "lease_until",
        "rendered_text",
        "external_id",
        "external_url",
        "last_error",
        "created_at",
        "updated_at",
        "sent_at",
    )
    fields = ("text_override", *readonly_fields)

    @admin.display(description="post", ordering="post__title")
    def post_title(self, obj: Delivery) -> str:
        return (obj.post.title or obj.post.url)[:80]

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Delivery) -> str:
        return badge(obj.status)

    @admin.display(description="last error")
    def short_error(self, obj: Delivery) -> str:
        return obj.last_error[:80]

    @admin.display(description="published")
    def published_link(self, obj: Delivery) -> str:
        if not obj.external_url:
            return "—"
        return format_html('<a href="{}" target="_blank" rel="noopener">open</a>', obj.external_url)

    # Actions run from the list page, which editors may view: each needs the change right (admins).
    @admin.action(description="Retry selected failed or uncertain deliveries", permissions=["change"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        count = deliveries.retry(queryset)
        self.message_user(request, f"{count} deliveries queued again.", messages.SUCCESS)

    @admin.action(description="Cancel selected queued deliveries", permissions=["change"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        count = deliveries.cancel(queryset)
        self.message_user(request, f"{count} deliveries cancelled.", messages.SUCCESS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


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


@admin.register(Subscriber)
class SubscriberAdmin(admin.ModelAdmin):
    list_display = (
        "email",
        "name",
        "target",
        "created_at",
        "unsubscribed_at",
        "suppressed_at",
        "suppressed_reason",
    )
    list_filter = ("target",)
    search_fields = ("email", "name")
    readonly_fields = ("unsubscribed_at", "suppressed_at", "suppressed_reason")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """API tokens: listed and revoked here; made with `syndicator tokens create`, which shows one once."""

    list_display = ("id", "user", "name", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("user__username", "name")
    list_select_related = ("user",)
    fields = ("user", "name", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("user", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke_selected"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # The token would have to be shown once; the CLI does that, the admin form cannot.
        return False

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        count = sum(revoke(pk) for pk in queryset.values_list("pk", flat=True))
        self.message_user(request, f"{count} tokens revoked.", messages.SUCCESS)
