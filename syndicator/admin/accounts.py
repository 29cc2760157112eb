"""Email subscribers and API tokens."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from syndicator.models import ApiToken, Subscriber
from syndicator.tokens import revoke


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
