"""Posts, as editors see them: newest first, each target's delivery status at a glance, and Repost.

The Repost page lets an editor choose targets, see each target's message as the worker would send
it, edit the text with a live count in each network's own measure, and send. Checks and previews
come from ``syndicator.reposting``, the code the JSON API uses too.

"Update everywhere" and "Delete everywhere" (#12) lead to a confirm page that shows what each
target will do (``followup.preview``, which changes nothing); confirming asks the follow-ups in
the editor's name (``followup.edit_everywhere`` / ``delete_everywhere``, the code the CLI and the
API use too). The post page shows each delivery's life (sent, edited, deleted, flagged) and, for
an article pulled at its source, a banner with what waits for an editor (docs/followups.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Prefetch, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from syndicator import delivery as deliveries
from syndicator import digest, followup, queueing
from syndicator.admin.common import badge
from syndicator.api_schemas import MAX_TEXT
from syndicator.errors import UserError
from syndicator.models import Delivery, Post, Target
from syndicator.reposting import preview, text_problems

REPOST_PERMISSIONS = ("syndicator.view_post", "syndicator.add_delivery")
# A follow-up changes what the networks show, as a repost does: the same rights (editors, admins).
FOLLOWUP_PERMISSIONS = REPOST_PERMISSIONS
# The two "everywhere" pages: their path, the follow-up they ask and the words the page uses.
EVERYWHERE = {
    "edit": {"path": "update-everywhere", "title": "Update everywhere", "verb": "edit", "done": "edited"},
    "delete": {
        "path": "delete-everywhere",
        "title": "Delete everywhere",
        "verb": "delete",
        "done": "deleted",
    },
}


class DeliveryInline(admin.TabularInline):
    model = Delivery
    extra = 0
    can_delete = False
    fields = (
        "target",
        "status_badge",
        "origin",
        "requested_by",
        "attempts",
        "created_at",
        "published",
        "life",
    )
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

    @admin.display(description="history")
    def life(self, obj: Delivery) -> str:
        return delivery_life(obj)


def delivery_life(delivery: Delivery) -> str:
    """A delivery's life for the post page: "sent, edited 2 times", a follow-up still to be done,
    who deleted it, and why the last follow-up did not happen (its followup_note)."""
    parts = [format_html('<span class="delivery-history">{}</span>', followup.history(delivery))]
    if delivery.followup:
        by = f" by {delivery.followup_by}" if delivery.followup_by else ""
        parts.append(format_html('<span class="delivery-pending">{} asked{}</span>', delivery.followup, by))
    if delivery.deleted_by:
        parts.append(format_html('<span class="delivery-deleted-by">— by {}</span>', delivery.deleted_by))
    if delivery.followup_note:
        parts.append(format_html('<div class="delivery-note" dir="auto">{}</div>', delivery.followup_note))
    return format_html_join(" ", "{}", ((part,) for part in parts))


@dataclass
class PlanRow:
    """One line of a confirm page: a delivery's plan, in the page's words."""

    plan: followup.Plan
    delivery: Delivery | None
    verdict: str  # "will edit", "will delete", "will cancel", "will not edit", …
    detail: str
    box: bool  # this line has its target's "only these" box (one per target that can do it)


def plan_words(plan: followup.Plan) -> tuple[str, str]:
    """What the confirm page says a target will do: a short verdict and the detail."""
    words = EVERYWHERE[plan.action]
    if plan.asked and plan.reason.startswith("not sent yet"):
        return "will cancel", "not sent yet: it is cancelled and never goes out"
    if plan.asked:
        return f"will {words['verb']}", plan.reason
    return f"will not {words['verb']}", plan.reason


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
        everywhere = [
            path(
                f"<int:post_id>/{words['path']}/",
                wrap(self.everywhere_view),
                {"action": action},
                name=f"syndicator_post_{words['path'].replace('-', '_')}",
            )
            for action, words in EVERYWHERE.items()
        ]
        return [
            *everywhere,
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

    # --- following the article: the post page's follow-up view and the two confirm pages ------

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        obj = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if obj is not None:
            article = obj.same_as or obj
            rows = (
                Delivery.objects.filter(post=article).select_related("target").order_by("target__name", "pk")
            )
            context.update(
                article=article,
                can_followup=request.user.has_perms(FOLLOWUP_PERMISSIONS),
                has_deliveries=rows.exists(),
                flagged=list(rows.filter(flagged_at__isnull=False).exclude(status=Delivery.Status.DELETED)),
                # Email digests carry a post without a delivery of its own (syndicator/digest.py).
                digests=digest.for_post(article),
            )
        return super().change_view(request, object_id, form_url, context)

    def everywhere_view(self, request: HttpRequest, post_id: int, action: str) -> HttpResponse:
        """Update or Delete everywhere: GET shows each target's plan (nothing changes); the
        confirming POST asks the follow-ups in the editor's name and says what was asked."""
        if action not in EVERYWHERE:
            raise Http404("no such follow-up")
        if not request.user.has_perms(FOLLOWUP_PERMISSIONS):
            raise PermissionDenied("updating or deleting a post everywhere needs the editor or admin role")
        post = get_object_or_404(Post.objects.select_related("feed", "same_as"), pk=post_id)
        words = EVERYWHERE[action]
        article = post.same_as or post
        plans = followup.preview(post, action)
        # The "only these" boxes: the targets that can do it now (the others are shown, with why).
        offered = sorted({p.target for p in plans if p.asked})
        error = ""
        chosen = offered
        if request.method == "POST":
            chosen = [name for name in request.POST.getlist("targets") if name in offered]
            if not chosen:
                error = "Choose at least one target." if offered else f"No target can {words['verb']} it now."
            else:
                act = followup.edit_everywhere if action == "edit" else followup.delete_everywhere
                # All ticked: everywhere (None), so the result lists every target, those that cannot too.
                only = None if set(chosen) == set(offered) else chosen
                try:
                    done = act(post, actor=request.user, targets=only)
                except UserError as exc:
                    error = str(exc)
                else:
                    self._report(request, words, done)
                    return redirect("admin:syndicator_post_change", post.pk)
        by_pk = Delivery.objects.select_related("target").in_bulk([p.delivery_id for p in plans])
        rows: list[PlanRow] = []
        for plan in sorted(plans, key=lambda p: (p.target, p.delivery_id)):  # a target's rows together
            verdict, detail = plan_words(plan)
            box = plan.target in offered and not any(
                row.box for row in rows if row.plan.target == plan.target
            )
            rows.append(PlanRow(plan, by_pk.get(plan.delivery_id), verdict, detail, box))
        context = {
            **self.admin_site.each_context(request),
            "title": f"{words['title']}: confirm",
            "opts": self.model._meta,
            "post": post,
            "article": article,
            "action": action,
            "words": words,
            "rows": rows,
            "offered": offered,
            "chosen": set(chosen),
            "error": error,
        }
        return TemplateResponse(request, "admin/syndicator/post/everywhere.html", context)

    def _report(self, request: HttpRequest, words: dict[str, str], plans: list[followup.Plan]) -> None:
        """The result as messages: of which targets it was asked, and which not, with why."""
        asked = [p for p in plans if p.asked]
        refused = [p for p in plans if not p.asked]
        if asked:
            parts = [
                f"{p.target} (not sent yet: cancelled)"
                if plan_words(p)[0] == "will cancel"
                else f"{p.target} ({p.reason})"
                if p.reason
                else p.target
                for p in asked
            ]
            self.message_user(
                request,
                f"{words['title']}: {words['verb']} asked by {request.user.get_username()} for "
                f"{', '.join(dict.fromkeys(parts))}. A worker does it; each delivery's history shows when "
                "it is done.",
                messages.SUCCESS,
            )
        if refused:
            parts = [f"{p.target}: {p.reason}" for p in refused]
            level = messages.INFO if asked else messages.WARNING
            self.message_user(request, f"Not {words['done']}: {'; '.join(dict.fromkeys(parts))}.", level)
        if not plans:
            self.message_user(request, "This post went to no target: nothing to do.", messages.INFO)


def _short_time(moment: datetime | None) -> str:
    """A list cell's date and time, short enough to keep a 1366-px list from scrolling."""
    if moment is None:
        return "—"
    local = timezone.localtime(moment)
    return format_html('<time datetime="{}">{}</time>', local.isoformat(), f"{local:%Y-%m-%d %H:%M}")
