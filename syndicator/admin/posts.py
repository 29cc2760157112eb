"""Posts, as editors see them: newest first, each target's delivery status at a glance, and Repost.

The Repost page lets an editor choose targets, see each target's message as the worker would send
it, edit the text with a live count in each network's own measure, and send. Checks and previews
come from ``syndicator.reposting``, the code the JSON API uses too.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from syndicator import delivery as deliveries
from syndicator import queueing
from syndicator.admin.common import badge
from syndicator.api_schemas import MAX_TEXT
from syndicator.models import Delivery, Post, Target
from syndicator.reposting import preview, text_problems

REPOST_PERMISSIONS = ("syndicator.view_post", "syndicator.add_delivery")


class DeliveryInline(admin.TabularInline):
    model = Delivery
    extra = 0
    can_delete = False
    fields = ("target", "status_badge", "origin", "requested_by", "attempts", "created_at", "published")
    readonly_fields = fields
    ordering = ("-created_at", "-id")
    show_change_link = True
    verbose_name_plural = "deliveries of this post"

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="status")
    def status_badge(self, obj: Delivery) -> str:
        return format_html(
            '<span class="delivery-status" data-target="{}">{}</span>', obj.target, badge(obj.status)
        )

    @admin.display(description="published")
    def published(self, obj: Delivery) -> str:
        if not obj.external_url:
            return "—"
        return format_html('<a href="{}" target="_blank" rel="noopener">open</a>', obj.external_url)


class RepostForm(forms.Form):
    """Targets to send to and an optional text that replaces the rendered message."""

    targets = forms.ModelMultipleChoiceField(
        queryset=Target.objects.none(),
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one target."},
    )
    text = forms.CharField(
        required=False,
        max_length=MAX_TEXT,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 6, "dir": "auto", "cols": 80}),
        help_text="Leave empty to send each target's usual message. The post's link is added when "
        "the text does not have it.",
    )

    breaking = forms.BooleanField(
        required=False, label="Breaking", help_text="Skip quiet hours and spacing (never a network's limit)."
    )
    at = forms.DateTimeField(
        required=False,
        label="Send at",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"],
        help_text="Empty: now. Read in each target's time zone (its timezone setting, else the site's).",
    )

    def __init__(self, post: Post, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.post = post
        targets = cast(forms.ModelMultipleChoiceField, self.fields["targets"])  # declared above
        targets.queryset = Target.objects.filter(enabled=True).order_by("name")

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data  # what Form.clean returns, typed without its "| None"
        targets = list(data.get("targets") or [])
        for name, reason in text_problems(self.post, targets, data.get("text", "")).items():
            self.add_error("text", f"{name}: {reason}")
        return data


@admin.register(Post)
class PostAdmin(admin.ModelAdmin):
    # Repost next to the title, so it never scrolls out of sight; the published date is the
    # article's own (a first poll sees every post at the same moment).
    list_display = (
        "title_link",
        "repost_link",
        "feed_name",
        "published",
        "first_seen",
        "delivery_summary",
    )
    list_display_links = None
    list_filter = ("feed", "language")
    search_fields = ("title", "url", "guid")
    date_hierarchy = "first_seen_at"
    ordering = ("-first_seen_at", "-id")
    sortable_by = ("title_link", "feed_name", "published", "first_seen")
    list_per_page = 50
    inlines = [DeliveryInline]
    readonly_fields = ("feed", "guid", "first_seen_at")
    # Feed text in any script: each box takes the direction of its first strong character.
    formfield_overrides = {
        models.TextField: {"widget": forms.Textarea(attrs={"dir": "auto", "rows": 4, "cols": 80})},
        models.CharField: {"widget": forms.TextInput(attrs={"dir": "auto", "size": 80})},
        # URLField is a CharField: its own entry keeps the URL input (and Django 6's https default).
        models.URLField: {"widget": forms.URLInput(attrs={"size": 80}), "assume_scheme": "https"},
    }
    # What an editor looks for first; the stored content below, folded.
    fieldsets = (
        (None, {"fields": ("title", "url", "feed", "language", "published_at", "first_seen_at")}),
        (
            "Content",
            {
                "classes": ("collapse",),
                "fields": ("summary", "content", "author", "categories", "image_url", "enclosures", "guid"),
            },
        ),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Post]:
        newest_first = Delivery.objects.select_related("target").order_by("target__name", "-created_at")
        return (
            super()
            .get_queryset(request)
            .select_related("feed")
            .prefetch_related(Prefetch("deliveries", queryset=newest_first))
        )

    @admin.display(description="title", ordering="title")
    def title_link(self, obj: Post) -> str:
        url = reverse("admin:syndicator_post_change", args=[obj.pk])
        return format_html('<a href="{}" dir="auto">{}</a>', url, (obj.title or obj.url or obj.guid)[:120])

    @admin.display(description="published", ordering="published_at")
    def published(self, obj: Post) -> str:
        return _short_time(obj.published_at)

    @admin.display(description="first seen", ordering="first_seen_at")
    def first_seen(self, obj: Post) -> str:
        return _short_time(obj.first_seen_at)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # posts come from feeds; a repost is how an editor sends one again

    @admin.display(description="feed", ordering="feed__name")
    def feed_name(self, obj: Post) -> str:
        return format_html('<bdi dir="auto">{}</bdi>', obj.feed)

    @admin.display(description="deliveries")
    def delivery_summary(self, obj: Post) -> str:
        latest: dict[int, Delivery] = {}
        for delivery in obj.deliveries.all():  # newest first per target
            latest.setdefault(delivery.target_id, delivery)
        if not latest:
            return "—"
        return format_html_join(
            " ",
            '<span title="{}">{}</span>',
            (
                (f"{d.origin}, {d.attempts} attempts", badge(d.status, f"{d.target.name}: {d.status}"))
                for d in latest.values()
            ),
        )

    @admin.display(description="")
    def repost_link(self, obj: Post) -> str:
        url = reverse("admin:syndicator_post_repost", args=[obj.pk])
        return format_html('<a class="button" href="{}">Repost</a>', url)

    def get_urls(self) -> list:
        wrap = self.admin_site.admin_view
        return [
            path("<int:post_id>/repost/", wrap(self.repost_view), name="syndicator_post_repost"),
            path(
                "<int:post_id>/repost/preview/",
                wrap(require_POST(self.preview_view)),
                name="syndicator_post_repost_preview",
            ),
            *super().get_urls(),
        ]

    def repost_view(self, request: HttpRequest, post_id: int) -> HttpResponse:
        """Choose targets, see each one's message, optionally edit the text, send."""
        self._require_repost_rights(request)
        post = get_object_or_404(Post.objects.select_related("feed"), pk=post_id)
        form = RepostForm(post, request.POST or None)
        if request.method == "POST" and form.is_valid():
            targets = list(form.cleaned_data["targets"])
            # A naive local time, read in each target's zone (Django made it aware in the site's).
            chosen_at = form.cleaned_data.get("at")
            local = timezone.make_naive(chosen_at) if chosen_at else None
            created = []
            for target in targets:
                created += deliveries.repost(
                    post,
                    [target],
                    text=form.cleaned_data["text"],
                    requested_by=request.user.get_username()[
                        : Delivery._meta.get_field("requested_by").max_length
                    ],
                    breaking=form.cleaned_data.get("breaking", False),
                    at=queueing.scheduled_time(local, target) if local else None,
                )
            names = ", ".join(t.name for t in targets)
            self.message_user(
                request, f"Reposted to {names}: {len(created)} deliveries queued.", messages.SUCCESS
            )
            return redirect("admin:syndicator_post_change", post.pk)
        text = form.data.get("text", "") if form.is_bound else ""
        chosen = {str(pk) for pk in request.POST.getlist("targets")} if form.is_bound else set()
        offered = cast(forms.ModelMultipleChoiceField, form.fields["targets"]).queryset
        cards = [
            (target, str(target.pk) in chosen, preview(post, target, text))
            for target in offered or ()  # never None: RepostForm.__init__ sets it
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": "Repost",
            "opts": self.model._meta,
            "post": post,
            "form": form,
            "cards": cards,
            "preview_url": reverse("admin:syndicator_post_repost_preview", args=[post.pk]),
        }
        return TemplateResponse(request, "admin/syndicator/post/repost.html", context)

    def preview_view(self, request: HttpRequest, post_id: int) -> JsonResponse:
        """Each enabled target's message with the editor's text, measured; the page asks as they type."""
        self._require_repost_rights(request)
        post = get_object_or_404(Post.objects.select_related("feed"), pk=post_id)
        try:
            text = str(json.loads(request.body or b"{}").get("text", ""))[:MAX_TEXT]
        except (ValueError, AttributeError):
            return JsonResponse({"detail": "send a JSON object with a text"}, status=400)
        targets = Target.objects.filter(enabled=True).order_by("name")
        return JsonResponse({"previews": {str(t.pk): preview(post, t, text).as_dict() for t in targets}})

    def _require_repost_rights(self, request: HttpRequest) -> None:
        if not request.user.has_perms(REPOST_PERMISSIONS):
            raise PermissionDenied("reposting needs the editor or admin role")


def _short_time(moment: datetime | None) -> str:
    """A list cell's date and time, short enough to keep a 1366-px list from scrolling."""
    if moment is None:
        return "—"
    local = timezone.localtime(moment)
    return format_html('<time datetime="{}">{}</time>', local.isoformat(), f"{local:%Y-%m-%d %H:%M}")
