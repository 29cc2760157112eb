"""Email subscribers (with a CSV import), users and their roles, API tokens."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import CommandError, call_command
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from syndicator import throttle
from syndicator.admin.common import badge
from syndicator.models import ApiToken, Subscriber, Target
from syndicator.roles import clear_role, role_of, set_role
from syndicator.tokens import revoke

User = get_user_model()
# What a subscriber's state means, as a filter (Subscriber.state reads the same two dates).
SUBSCRIBER_STATES = {
    "subscribed": Q(unsubscribed_at__isnull=True, suppressed_at__isnull=True),
    "unsubscribed": Q(unsubscribed_at__isnull=False),
    "suppressed": Q(unsubscribed_at__isnull=True, suppressed_at__isnull=False),
}


class SubscriberStateFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(state, state) for state in SUBSCRIBER_STATES]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return (
            queryset.filter(SUBSCRIBER_STATES[state])
            if (state := self.value()) in SUBSCRIBER_STATES
            else queryset
        )


class SubscriberImportForm(forms.Form):
    target = forms.ModelChoiceField(queryset=Target.objects.filter(kind="email"), empty_label=None)
    file = forms.FileField(
        help_text="CSV with the columns email and, optionally, name; a header line is optional."
    )


@admin.register(Subscriber)
class SubscriberAdmin(admin.ModelAdmin):
    list_display = ("email", "name", "target", "status", "created_at", "since", "suppressed_reason")
    list_filter = (SubscriberStateFilter, "target")
    search_fields = ("email", "name")
    list_select_related = ("target",)
    list_per_page = 100
    ordering = ("-created_at", "-id")
    readonly_fields = ("unsubscribed_at", "suppressed_at", "suppressed_reason")
    change_list_template = "admin/syndicator/subscriber/change_list.html"

    @admin.display(description="status")
    def status(self, obj: Subscriber) -> str:
        state = "subscribed" if obj.state == "active" else obj.state
        return badge(state)

    @admin.display(description="since")
    def since(self, obj: Subscriber) -> Any:
        return obj.unsubscribed_at or obj.suppressed_at or obj.created_at

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.import_view)
        return [path("import/", view, name="syndicator_subscriber_import"), *super().get_urls()]

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        context = {"can_import": self.has_add_permission(request), **(extra_context or {})}
        return super().changelist_view(request, context)

    def import_view(self, request: HttpRequest) -> HttpResponse:
        """Upload a CSV of addresses: the same import as `syndicator subscribers import`."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = SubscriberImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            out, err = io.StringIO(), io.StringIO()
            with tempfile.TemporaryDirectory() as folder:
                upload = Path(folder, "subscribers.csv")
                upload.write_bytes(form.cleaned_data["file"].read())
                try:
                    call_command(
                        "subscribers",
                        "import",
                        form.cleaned_data["target"].name,
                        str(upload),
                        stdout=out,
                        stderr=err,
                    )
                except CommandError as exc:
                    form.add_error("file", str(exc).replace(str(upload), "the file"))
            if not form.errors:
                messages.success(request, out.getvalue().strip())
                for line in err.getvalue().splitlines()[:20]:
                    messages.warning(request, line)
                return HttpResponseRedirect(reverse("admin:syndicator_subscriber_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "opts": self.opts,
            "title": "Import subscribers",
        }
        return TemplateResponse(request, "admin/syndicator/subscriber/import.html", context)


# --- users and their roles ----------------------------------------------------------------------

ROLE_CHOICES = [
    ("", "no role (cannot use these pages)"),
    ("editor", "editor: reads, reposts"),
    ("admin", "admin: everything"),
]


class RoleField(forms.ChoiceField):
    def __init__(self) -> None:
        super().__init__(
            choices=ROLE_CHOICES,
            required=False,
            help_text="Editors read posts, the log, feeds and targets, and repost. Admins change everything.",
        )


class UserRoleChangeForm(UserChangeForm):
    role = RoleField()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        role = role_of(self.instance) if self.instance.pk else "none"
        self.initial["role"] = role if role in ("editor", "admin") else ""


class UserRoleCreationForm(AdminUserCreationForm):
    role = RoleField()


admin.site.unregister(User)


@admin.register(User)
class UserRoleAdmin(UserAdmin):
    """Users with their role (Editors or Admins); only admins see this page (auth permissions)."""

    form = UserRoleChangeForm
    add_form = UserRoleCreationForm
    list_display = ("username", "email", "role", "is_active", "last_login", "date_joined")
    list_filter = ("groups", "is_active", "is_superuser")
    ordering = ("username",)
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Role", {"fields": ("role", "is_active", "is_superuser")}),
        ("Personal info", {"fields": ("first_name", "last_name", "email")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("username", "usable_password", "password1", "password2", "role"),
            },
        ),
    )
    readonly_fields = ("last_login", "date_joined")

    @admin.display(description="role")
    def role(self, obj: Any) -> str:
        return role_of(obj)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).prefetch_related("groups")

    # A superuser's account (its password included: UserAdmin's password page asks
    # has_change_permission) is changed only by a superuser; an admin manages editors and admins.
    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and _may_manage(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_delete_permission(request, obj) and _may_manage(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        # The bulk action checks the model permission only, not each row.
        if not request.user.is_superuser and queryset.filter(is_superuser=True).exists():
            raise PermissionDenied("only a superuser can delete a superuser")
        super().delete_queryset(request, queryset)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # The Admins role holds every syndicator right but not "superuser": only a superuser grants it.
        extra = () if request.user.is_superuser else ("is_superuser",)
        return (*super().get_readonly_fields(request, obj), *extra)

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        role = form.cleaned_data.get("role", "")
        if role:
            set_role(form.instance, role)
        else:
            clear_role(form.instance)


def _may_manage(request: HttpRequest, user: Any) -> bool:
    """Whether the request's user may change or delete this account: superusers only by superusers."""
    return user is None or not user.is_superuser or request.user.is_superuser


admin.site.unregister(Group)


@admin.register(Group)
class SuperuserOnlyGroupAdmin(GroupAdmin):
    """The groups (Editors, Admins) and their permissions: changed only by a superuser, whatever
    rights a group holds (an admin who could edit the Admins group could grant it anything)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser


# --- logins -------------------------------------------------------------------------------------


class ThrottledLoginForm(AdminAuthenticationForm):
    """The admin login, refused for a while after too many failures from one address."""

    def clean(self) -> dict[str, Any]:
        try:
            throttle.check("login", self.request)
        except throttle.Throttled as exc:
            raise ValidationError(f"{str(exc)[0].upper()}{str(exc)[1:]}.", code="throttled") from exc
        return super().clean()


admin.site.login_form = ThrottledLoginForm


# --- API tokens ---------------------------------------------------------------------------------


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """API tokens: listed and revoked here; made with `syndicator tokens create`, which shows one once."""

    list_display = ("id", "user", "name", "scope", "created_at", "last_used_at", "expires_at", "revoked_at")
    list_filter = ("revoked_at", "scope")
    search_fields = ("user__username", "name")
    list_select_related = ("user",)
    list_per_page = 50
    ordering = ("-created_at", "-id")
    fields = ("user", "name", "scope", "created_at", "last_used_at", "expires_at", "revoked_at")
    readonly_fields = ("user", "scope", "created_at", "last_used_at", "expires_at", "revoked_at")
    actions = ["revoke_selected"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # The token would have to be shown once; the CLI does that, the admin form cannot.
        return False

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        count = sum(revoke(pk) for pk in queryset.values_list("pk", flat=True))
        self.message_user(request, f"{count} tokens revoked.", messages.SUCCESS)
