"""The delivery log: list with filters, the attempt timeline, retry and cancel."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from syndicator import delivery as deliveries
from syndicator.admin.common import badge
from syndicator.models import Delivery, DeliveryAttempt, EmailRecipientResult


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
