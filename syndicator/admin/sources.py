"""Feeds and targets: health at a glance, poll now, pause and resume, settings, template preview."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from syndicator import decisions, followup
from syndicator.admin.common import badge, require_change
from syndicator.admin.target_form import (
    TargetFormBase,
    changed_templates,
    check_syntax,
    render_preview,
    sample_post,
    settings_spec,
    target_form,
    template_field,
)
from syndicator.dispatch import queue_poll
from syndicator.errors import PermanentError, TargetBroken
from syndicator.formatting import message_length, message_templates
from syndicator.health import feed_health, target_health
from syndicator.models import Feed, Post, Target
from syndicator.reposting import unit_of
from syndicator.targets import get_adapter
from syndicator.targets.registry import text_rules

PREVIEW_POSTS = 30  # how many recent posts the preview offers to pick from
# Settings that only make a dry-run target fail on purpose (syndicator/targets/outbox.py).
TESTING_SWITCHES = {"outbox": ("fail", "fail_next", "fail_retry_after")}


def is_testing_switch(kind: str, setting: str) -> bool:
    """Whether a setting exists only to make sends fail on purpose (shown folded, or when set)."""
    return setting in TESTING_SWITCHES.get(kind, ())


def _window(seconds: float | None) -> str:
    if seconds is None:
        return "at any time"
    hours = seconds / 3600
    if hours >= 72 and hours % 24 == 0:
        return f"within {hours / 24:g} days of posting"
    if hours >= 1:
        return f"within {hours:g} hours of posting"
    return f"within {seconds / 60:g} minutes of posting"


def followup_abilities(target: Target) -> dict[str, str] | None:
    """What the target's network lets it change once a post is out (its declared Capabilities; an
    outbox imitates its format's) and the target's own policies, for the target page (#12)."""
    try:
        adapter = get_adapter(target)
    except TargetBroken:
        return None  # a kind without an adapter: the page says so elsewhere (health)
    can = adapter.abilities()
    edits = "not possible"
    if can.edit:
        edits = _window(can.edit_window)
        if can.max_edits is not None:
            edits += f", at most {can.max_edits} times"
    return {
        "network": adapter.network_label(),
        "note": can.note,
        "edits": edits,
        "deletes": _window(can.delete_window) if can.delete else "not possible",
        "on_update": followup.policy(adapter, "on_update"),
        "on_unpublish": followup.policy(adapter, "on_unpublish"),
    }


@admin.register(Feed)
class FeedAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "feed_name",
        "language",
        "enabled",
        "status_badge",
        "last_polled_at",
        "next_poll_at",
        "push_state",
        "consecutive_failures",
        "short_error",
    )
    list_display_links = ("id", "feed_name")
    list_filter = ("enabled", "last_status", "language")
    search_fields = ("name", "url")
    list_per_page = 50
    actions = ["poll_now"]
    change_form_template = "admin/syndicator/feed/change_form.html"
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}  # Django 6's default, now
    fieldsets = (
        (
            None,
            {
                "fields": (
                    *("url", "name", "language", "enabled"),
                    *("poll_interval", "poll_interval_max", "backfill"),
                )
            },
        ),
        ("Push", {"fields": ("push_state", "last_push_at", "hub_url", "self_url")}),
        (
            "Health",
            {
                "fields": (
                    "status_badge",
                    "last_polled_at",
                    "last_success_at",
                    "next_poll_at",
                    "consecutive_failures",
                    "last_http_status",
                    "last_error",
                )
            },
        ),
        ("Fetching", {"classes": ("collapse",), "fields": ("etag", "last_modified", "body_hash")}),
    )
    readonly_fields = (
        "status_badge",
        "etag",
        "last_modified",
        "body_hash",
        "hub_url",
        "self_url",
        "push_state",
        "last_push_at",
        "last_polled_at",
        "last_success_at",
        "last_status",
        "last_http_status",
        "last_error",
        "consecutive_failures",
    )

    @admin.display(description="feed", ordering="name")
    def feed_name(self, obj: Feed) -> str:
        return format_html('<span dir="auto">{}</span>', obj)

    @admin.display(description="health", ordering="consecutive_failures")
    def status_badge(self, obj: Feed) -> str:
        health = feed_health(obj)
        return format_html('<span title="{}">{}</span>', health.reason, badge(health.state))

    @admin.display(description="push")
    def push_state(self, obj: Feed) -> str:
        """WebSub: none, pending, subscribed until …, failed with the hub's reason."""
        from syndicator import websub

        return str(websub.push_state(obj))

    @admin.display(description="last error")
    def short_error(self, obj: Feed) -> str:
        return obj.last_error[:80]

    @admin.action(description="Poll selected feeds now", permissions=["change"])
    def poll_now(self, request: HttpRequest, queryset: QuerySet[Feed]) -> None:
        queued = [feed for feed in queryset if self._queue_poll(request, feed)]
        if queued:
            names = ", ".join(str(feed) for feed in queued)
            self.message_user(request, f"Polls queued for {names}; a worker runs them.", messages.INFO)

    def _queue_poll(self, request: HttpRequest, feed: Feed) -> bool:
        """Hand the poll to a worker: a web worker that fetched inline would hang on a slow feed
        (and on the demo feeds, which this same web app serves: issue 14)."""
        try:
            queue_poll(feed.pk)
        except Exception as exc:  # kombu raises many classes for a broker that is away
            self.message_user(request, f"{feed}: the poll could not be queued: {exc}", messages.ERROR)
            return False
        return True

    def get_urls(self) -> list[URLPattern]:
        poll = self.admin_site.admin_view(require_POST(self.poll_view))
        status = self.admin_site.admin_view(self.poll_status_view)
        return [
            path("<int:object_id>/poll/", poll, name="syndicator_feed_poll"),
            path("<int:object_id>/poll/status/", status, name="syndicator_feed_poll_status"),
            *super().get_urls(),
        ]

    def poll_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """The feed page's "Poll now" button: queue the poll and come back at once."""
        feed = get_object_or_404(Feed, pk=object_id)
        require_change(self, request, feed)
        url = reverse("admin:syndicator_feed_change", args=[feed.pk])
        if not self._queue_poll(request, feed):
            return HttpResponseRedirect(url)
        # The page waits for a poll newer than the last one, and then shows its result.
        since = feed.last_polled_at.isoformat() if feed.last_polled_at else ""
        return HttpResponseRedirect(f"{url}?{urlencode({'poll_queued': since})}")

    def poll_status_view(self, request: HttpRequest, object_id: int) -> JsonResponse:
        """The feed's last poll, for the page that waits for the one it queued."""
        feed = get_object_or_404(Feed, pk=object_id)
        if not self.has_view_permission(request, feed):
            raise PermissionDenied
        return JsonResponse(poll_result(feed))

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        context = {"poll_queued": request.GET.get("poll_queued"), **(extra_context or {})}
        return super().change_view(request, object_id, form_url, context)


def poll_result(feed: Feed) -> dict[str, Any]:
    """What the last poll of a feed did, as the page shows it."""
    new_posts = 0
    if feed.last_polled_at and feed.last_status == Feed.Status.OK:
        new_posts = Post.objects.filter(feed=feed, first_seen_at__gte=feed.last_polled_at).count()
    health = feed_health(feed)
    if feed.last_status == Feed.Status.NEW or not feed.last_polled_at:
        summary = "not polled yet"
    elif feed.consecutive_failures:
        summary = f"error: {feed.last_error}"
    elif feed.last_status == Feed.Status.NOT_MODIFIED:
        summary = "not modified: nothing new"
    else:
        summary = f"ok: {new_posts} new posts"
    return {
        "last_polled_at": feed.last_polled_at.isoformat() if feed.last_polled_at else "",
        "polling": bool(feed.polling_until and feed.polling_until > timezone.now()),
        "status": health.state,
        "summary": summary,
        "new_posts": new_posts,
    }


@admin.register(Target)
class TargetAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "format", "health", "filters", "secret_env")
    list_filter = ("kind", "enabled")
    search_fields = ("name",)
    list_per_page = 50
    filter_horizontal = ("feeds",)
    actions = ["pause", "resume"]
    change_form_template = "admin/syndicator/target/change_form.html"

    @admin.display(description="format")
    def format(self, obj: Target) -> str:
        return obj.message_format

    @admin.display(description="health")
    def health(self, obj: Target) -> str:
        verdict = target_health(obj)
        return format_html("{} {}", badge(verdict.state), verdict.reason[:100])

    @admin.display(description="posts it takes")
    def filters(self, obj: Target) -> str:
        parts = [f"{len(obj.feeds.all())} feeds"] if obj.feeds.all() else []
        parts += [f"languages {', '.join(obj.languages)}"] if obj.languages else []
        parts += [f"categories {', '.join(obj.categories)}"] if obj.categories else []
        return "; ".join(parts) or "all posts"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Target]:
        return super().get_queryset(request).prefetch_related("feeds")

    # --- the form: built from the adapter's settings_spec and the format's templates ----------

    def _kind(self, request: HttpRequest, obj: Target | None) -> str:
        return obj.kind if obj else request.POST.get("kind") or request.GET.get("kind") or ""

    def _form_class(self, request: HttpRequest, obj: Target | None) -> type[TargetFormBase]:
        kind = self._kind(request, obj)
        fmt = obj.message_format if obj else ""
        return target_form(kind, fmt, with_templates=obj is not None)

    def get_form(
        self, request: HttpRequest, obj: Target | None = None, change: bool = False, **kwargs: Any
    ) -> type:
        kwargs["form"] = self._form_class(request, obj)
        return super().get_form(request, obj, change, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj: Target | None = None) -> list:
        if obj and not self.has_change_permission(request, obj):
            # Read-only (editors): the form's extra fields have no value to show, these do.
            general = ["name", "kind", "enabled", "secret_env", "health", "paused_at", "paused_reason"]
            return [
                (None, {"fields": general}),
                ("Settings", {"fields": ["settings_view"]}),
                ("Which posts", {"fields": ["feeds", "languages", "categories"]}),
                ("Message templates", {"fields": ["templates_view"]}),
            ]
        form = self._form_class(request, obj)
        kind = self._kind(request, obj)
        general = ["name", "kind", "enabled", "secret_env"]
        if obj:
            general += ["health", "paused_at", "paused_reason"]
        sets: list = [(None, {"fields": general})]
        if form.setting_specs:
            testing = [
                name for name, spec in form.setting_specs.items() if is_testing_switch(kind, spec.name)
            ]
            usual = [name for name in form.setting_specs if name not in testing]
            sets.append(("Settings", {"fields": usual}))
            if testing:
                # Switches that make sends fail on purpose: folded, so nobody sets one by mistake.
                sets.append(
                    (
                        "Testing: fail on purpose",
                        {
                            "classes": ("collapse", "testing-switches"),
                            "fields": testing,
                            "description": "For trying retries and alerts; leave empty in normal use.",
                        },
                    )
                )
        elif not obj:
            sets.append(
                ("Settings", {"fields": [], "description": "Choose a kind and save: its settings follow."})
            )
        sets.append(("Which posts", {"fields": ["feeds", "languages", "categories"]}))
        if form.template_names:
            sets.append(
                ("Message templates", {"classes": ("templates",), "fields": list(form.template_names)})
            )
        return sets

    @admin.display(description="settings")
    def settings_view(self, obj: Target) -> str:
        rows = [
            (spec.name, obj.settings.get(spec.name, spec.default))
            for spec in settings_spec(obj.kind)
            if not is_testing_switch(obj.kind, spec.name) or spec.name in obj.settings
        ]
        cells = format_html_join(
            "", "<tr><th>{}</th><td>{}</td></tr>", ((k, "—" if v is None else v) for k, v in rows)
        )
        return format_html("<table>{}</table>", cells)

    @admin.display(description="templates")
    def templates_view(self, obj: Target) -> str:
        names = message_templates(obj.message_format)
        changed = [name for name in names if name in obj.template_overrides]
        return "overridden: " + ", ".join(changed) if changed else "the defaults (" + ", ".join(names) + ")"

    def get_readonly_fields(self, request: HttpRequest, obj: Target | None = None) -> tuple[str, ...]:
        # Another kind would need other settings: make a new target instead.
        return ("kind", "health", "paused_at", "paused_reason") if obj else ()

    # --- buttons on the page, and the live preview ---------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        own = [
            path(
                "<int:object_id>/pause/", wrap(require_POST(self.pause_view)), name="syndicator_target_pause"
            ),
            path(
                "<int:object_id>/resume/",
                wrap(require_POST(self.resume_view)),
                name="syndicator_target_resume",
            ),
            path(
                "<int:object_id>/preview/",
                wrap(require_POST(self.preview_view)),
                name="syndicator_target_preview",
            ),
        ]
        return own + super().get_urls()

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        obj = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if obj is not None:
            context.update(
                can_change=self.has_change_permission(request, obj),
                preview_posts=Post.objects.order_by("-first_seen_at", "-id").only("id", "title", "url")[
                    :PREVIEW_POSTS
                ],
                template_fields=[template_field(n) for n in message_templates(obj.message_format)],
                abilities=followup_abilities(obj),
            )
        return super().change_view(request, object_id, form_url, context)

    def _target(self, request: HttpRequest, object_id: int) -> Target:
        target = get_object_or_404(Target, pk=object_id)
        require_change(self, request, target)
        return target

    def pause_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        target = self._target(request, object_id)
        decisions.pause_target(target, f"paused by {request.user.get_username()}")
        messages.success(request, f"{target} paused: its deliveries wait until it is resumed.")
        return HttpResponseRedirect(reverse("admin:syndicator_target_change", args=[target.pk]))

    def resume_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        target = self._target(request, object_id)
        sent = decisions.resume_target(target)
        messages.success(request, f"{target} resumed; {sent} waiting deliveries queued.")
        return HttpResponseRedirect(reverse("admin:syndicator_target_change", args=[target.pk]))

    def preview_view(self, request: HttpRequest, object_id: int) -> JsonResponse:
        """A post rendered with the templates as typed: the worker's own rendering, or the error."""
        target = self._target(request, object_id)
        fmt = target.message_format
        sources = {name: request.POST.get(template_field(name), "") for name in message_templates(fmt)}
        for name, source in sources.items():
            if problem := check_syntax(source):
                return JsonResponse(
                    {"ok": False, "template": name, "error": f"{name}: syntax error, {problem}"}
                )
        try:
            post = sample_post(request.POST.get("post") or None)
        except (Post.DoesNotExist, ValueError):
            return JsonResponse({"ok": False, "error": "no such post"}, status=404)
        try:
            message = render_preview(target, post, changed_templates(fmt, sources))
        except PermanentError as exc:
            return JsonResponse({"ok": False, "error": str(exc)})
        subject_max = text_rules(fmt).subject_max
        limit: int | None
        if subject_max is not None:  # the subject is what has a limit; the body has none
            length, limit = len(message.subject), subject_max
        else:
            length, limit = message_length(message, options=target.settings)
        return JsonResponse(
            {
                "ok": True,
                "format": fmt,
                "post": {"id": post.pk, "title": post.title},
                "text": message.text,
                "subject": message.subject,
                "html": message.html,
                "length": length,
                "limit": limit,
                "measure": "subject characters" if fmt == "email" else unit_of(fmt),
            }
        )
