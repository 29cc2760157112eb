"""The JSON API for CMS hooks and scripts: repost, edit and delete everywhere, the post list, the
delivery log, retry, health.

Mounted at /api/ (schema at /api/openapi.json, docs at /api/docs). A caller is a user, by an
``Authorization: Bearer`` token (``syndicator tokens create``) or a logged-in session, and the roles
apply as on the admin pages: reading needs the view rights; a repost adds a delivery, and an edit
or delete everywhere (the post page's "Update everywhere" / "Delete everywhere") needs the same
rights (editors and admins); a retry changes one (admins only). Every error is JSON with a
``detail``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import DatabaseError, connection
from django.db.models import Count, Min, Prefetch, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from ninja import NinjaAPI, Path, Query
from ninja.errors import HttpError, ValidationError
from ninja.openapi.docs import ABS_TPL_PATH, Swagger
from ninja.responses import Status
from ninja.security import APIKeyCookie, HttpBearer

from syndicator import decisions, followup, queueing, websub
from syndicator import delivery as deliveries
from syndicator.api_schemas import (
    DeliveryDetail,
    DeliveryFilters,
    DeliveryPage,
    Error,
    FeedOut,
    FollowupIn,
    HealthOut,
    Id,
    PlansOut,
    PostFilters,
    PostPage,
    RepostIn,
    RepostRejected,
)
from syndicator.delivery_states import RETRYABLE
from syndicator.errors import UserError
from syndicator.health import feed_health, target_health
from syndicator.management.commands.log import attempt_row, attempts_of, delivery_row
from syndicator.models import Delivery, Feed, Post, Target
from syndicator.reposting import choose_targets, text_problems
from syndicator.throttle import Throttled
from syndicator.tokens import bearer_token, request_user, user_for_token


class TokenAuth(HttpBearer):
    """``Authorization: Bearer <token>``, a token made by ``syndicator tokens create``."""

    def authenticate(self, request: HttpRequest, token: str) -> AbstractBaseUser | None:
        """The token's user, or None (revoked, expired, unknown, for /metrics only, or the user is
        inactive); past too many bad tokens from one address, Throttled (429)."""
        return user_for_token(token, request)


class SessionAuth(APIKeyCookie):
    """The logged-in admin session, with Django's CSRF check on unsafe methods."""

    param_name = settings.SESSION_COOKIE_NAME

    def _get_key(self, request: HttpRequest) -> str | None:
        # No session, no CSRF check: an anonymous caller is told 401, not "CSRF failed".
        if not request.user.is_authenticated:
            return None
        return super()._get_key(request)

    def authenticate(self, request: HttpRequest, key: str | None) -> AbstractBaseUser | None:
        """The session's user, or None."""
        return request.user if request.user.is_authenticated else None


class LocalSwagger(Swagger):
    """Swagger UI from ninja's own files, not a CDN: ninja picks its local page only when it is an
    installed app, which it is not here (settings.NINJA_DIR says why), so that page stands in for
    the CDN one."""

    template_cdn = str(ABS_TPL_PATH / "swagger.html")


api = NinjaAPI(
    title="syndicator",
    version="1",
    description="Repost posts, edit or delete them everywhere, read the delivery log and retry failed "
    "deliveries.",
    auth=[TokenAuth(), SessionAuth()],
    urls_namespace="api",
    docs=LocalSwagger(),
)


def require(request: HttpRequest, *permissions: str) -> AbstractBaseUser:
    """The caller, if their role has every permission; else a 403 naming what is missing."""
    user = request.auth  # type: ignore[attr-defined]  # django-ninja sets it after authentication
    if missing := [p for p in permissions if not user.has_perm(p)]:
        raise HttpError(403, f"your role does not allow this (it needs {', '.join(missing)})")
    return user


def aware(moment: datetime | None, name: str) -> datetime | None:
    """A query's datetime in UTC (a naive one is taken as UTC); a 422 for one the database can't hold."""
    if moment is None:
        return None
    try:
        return (moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except (OverflowError, ValueError):
        raise HttpError(422, f"{name} is out of range") from None


# --- feeds ------------------------------------------------------------------------------------


@api.get("/feeds", response={200: list[FeedOut], 403: Error}, tags=["feeds"])
def list_feeds(request: HttpRequest) -> list[dict[str, Any]]:
    """Every feed with its polling and its push state (WebSub)."""
    require(request, "syndicator.view_feed")
    return [feed_out(feed) for feed in Feed.objects.order_by("id")]


def feed_out(feed: Feed) -> dict[str, Any]:
    """A feed as the API shows it."""
    sub = websub.current(feed)
    state = websub.push_state(feed, sub)
    return {
        "id": feed.pk,
        "name": str(feed),
        "url": feed.url,
        "enabled": feed.enabled,
        "poll_interval": feed.poll_interval,
        "poll_interval_max": feed.poll_interval_max,
        "last_polled_at": feed.last_polled_at,
        "next_poll_at": feed.next_poll_at,
        "last_error": feed.last_error,
        "push": {
            "state": state.state,
            "detail": str(state),
            "hub_url": feed.hub_url,
            "expires_at": state.expires_at,
            "last_push_at": feed.last_push_at,
        },
    }


# --- posts ------------------------------------------------------------------------------------


@api.get("/posts", response={200: PostPage, 403: Error}, tags=["posts"])
def list_posts(request: HttpRequest, filters: Query[PostFilters]) -> dict[str, Any]:
    """Posts, newest first, each with its deliveries' statuses per target."""
    require(request, "syndicator.view_post", "syndicator.view_delivery")
    rows = Post.objects.select_related("feed").order_by("-first_seen_at", "-id")
    if filters.feed is not None:
        rows = rows.filter(feed_id=filters.feed)
    page = rows.prefetch_related(
        Prefetch("deliveries", Delivery.objects.select_related("target").order_by("target__name", "-id"))
    )[filters.offset : filters.offset + filters.limit]
    items = [
        {
            "id": p.pk,
            "feed_id": p.feed_id,
            "feed": str(p.feed),
            "url": p.url,
            "title": p.title,
            "language": p.language,
            "published_at": p.published_at,
            "first_seen_at": p.first_seen_at,
            "deliveries": [
                {
                    "id": d.pk,
                    "target": d.target.name,
                    "status": d.status,
                    "origin": d.origin,
                    "created_at": d.created_at,
                }
                for d in p.deliveries.all()
            ],
        }
        for p in page
    ]
    return {"count": rows.count(), "limit": filters.limit, "offset": filters.offset, "items": items}


@api.post(
    "/posts/{post_id}/repost",
    response={201: list[DeliveryDetail], 403: Error, 404: Error, 422: RepostRejected},
    tags=["posts"],
)
def repost(request: HttpRequest, post_id: Path[Id], body: RepostIn) -> Status:
    """Send a post again to some targets (default: every enabled one), optionally with your text.

    Creates manual deliveries in your name. A text longer than a target's network allows is
    refused with 422 and the count per target, never shortened silently.
    """
    user = require(request, "syndicator.view_post", "syndicator.add_delivery")
    post = Post.objects.select_related("feed").filter(pk=post_id).first()
    if post is None:
        return Status(404, {"detail": f"no post with id {post_id}"})
    targets, problems = choose_targets(body.targets)
    if not problems:
        problems = text_problems(post, targets, body.text)
    if problems:
        listed = "; ".join(
            reason if name == "*" else f"{name}: {reason}" for name, reason in problems.items()
        )
        return Status(422, {"detail": f"cannot repost: {listed}", "targets": problems})
    requested_by = user.get_username()[: Delivery._meta.get_field("requested_by").max_length]
    created = []
    for target in targets:  # each target's own time zone reads a time without an offset
        at = queueing.scheduled_time(body.at, target) if body.at else None
        created += deliveries.repost(
            post, [target], text=body.text, requested_by=requested_by, breaking=body.breaking, at=at
        )
    return Status(201, [detail_row(d) for d in created])


FOLLOWUP_RESPONSES = {200: PlansOut, 400: Error, 403: Error, 404: Error}


@api.post("/posts/{post_id}/edit", response=FOLLOWUP_RESPONSES, tags=["posts"])
def edit_post(request: HttpRequest, post_id: Path[Id], body: FollowupIn | None = None) -> Status:
    """Update everywhere: re-render the post and edit it on every target it went to (or those
    named) whose network still allows it; the plan says, per target, whether it was asked and
    why not. A worker makes the edits; ``dry_run`` only shows the plan."""
    return follow_up(request, post_id, body, Delivery.Followup.EDIT)


@api.post("/posts/{post_id}/delete", response=FOLLOWUP_RESPONSES, tags=["posts"])
def delete_post(request: HttpRequest, post_id: Path[Id], body: FollowupIn | None = None) -> Status:
    """Delete everywhere: delete the post on every target it went to (or those named) whose network
    allows it, and cancel its deliveries not sent yet; in your name. A deletion is not undone:
    ``dry_run`` shows the plan first (the confirmation step of a client)."""
    return follow_up(request, post_id, body, Delivery.Followup.DELETE)


def follow_up(request: HttpRequest, post_id: int, body: FollowupIn | None, action: str) -> Status:
    """An editor's edit or delete everywhere, or its plan only (the rights a repost needs)."""
    user = require(request, "syndicator.view_post", "syndicator.add_delivery")
    post = Post.objects.select_related("feed").filter(pk=post_id).first()
    if post is None:
        return Status(404, {"detail": f"no post with id {post_id}"})
    names, dry_run = (body.targets, body.dry_run) if body else (None, False)
    if names is not None and not names:
        return Status(400, {"detail": "name at least one target, or leave out targets for every one"})
    targets = list(dict.fromkeys(names)) if names else None
    try:
        if dry_run:
            plans = followup.preview(post, action, targets=targets)
        elif action == Delivery.Followup.EDIT:
            plans = followup.edit_everywhere(post, actor=user, targets=targets)
        else:
            plans = followup.delete_everywhere(post, actor=user, targets=targets)
    except UserError as exc:  # a target the post was not delivered to
        return Status(400, {"detail": str(exc)})
    return Status(200, {"plans": [plan.as_dict() for plan in plans]})


# --- deliveries -------------------------------------------------------------------------------


@api.get("/deliveries", response={200: DeliveryPage, 403: Error, 422: Error}, tags=["deliveries"])
def list_deliveries(request: HttpRequest, filters: Query[DeliveryFilters]) -> dict[str, Any]:
    """The delivery log, newest first, filtered like the admin's and searchable."""
    require(request, "syndicator.view_delivery")
    rows = filter_deliveries(
        Delivery.objects.select_related("post__feed", "target").prefetch_related("attempt_log"), filters
    )
    page = rows.order_by("-created_at", "-id")[filters.offset : filters.offset + filters.limit]
    return {
        "count": rows.count(),
        "limit": filters.limit,
        "offset": filters.offset,
        "items": [delivery_row(d) for d in page],
    }


def filter_deliveries(rows: QuerySet[Delivery], filters: DeliveryFilters) -> QuerySet[Delivery]:
    """The deliveries that pass every filter given."""
    if filters.status:
        rows = rows.filter(status__in=filters.status)
    if filters.target is not None:
        rows = rows.filter(target__name=filters.target)
    if filters.feed is not None:
        rows = rows.filter(post__feed_id=filters.feed)
    if filters.origin is not None:
        rows = rows.filter(origin=filters.origin)
    if since := aware(filters.since, "since"):
        rows = rows.filter(created_at__gte=since)
    if until := aware(filters.until, "until"):
        rows = rows.filter(created_at__lt=until)
    if filters.q:
        q = filters.q
        rows = rows.filter(
            Q(post__title__icontains=q) | Q(post__url__icontains=q) | Q(last_error__icontains=q)
        )
    return rows


def detail_row(delivery: Delivery) -> dict[str, Any]:
    """A delivery with its attempt timeline (each attempt as ``log --json`` shows it, and more)."""
    attempts = [
        {
            **attempt_row(a),
            "started_at": a.started_at,
            "finished_at": a.finished_at,
            "duration_ms": a.duration_ms,
            "http_status": a.http_status,
            "error_class": a.error_class,
            "retry_after": a.retry_after,
        }
        for a in attempts_of(delivery)
    ]
    return {**delivery_row(delivery), "attempt_log": attempts}


def get_delivery(delivery_id: int) -> Delivery:
    """The delivery with this id, or a 404."""
    found = Delivery.objects.select_related("post__feed", "target").filter(pk=delivery_id).first()
    if found is None:
        raise HttpError(404, f"no delivery with id {delivery_id}")
    return found


@api.get(
    "/deliveries/{delivery_id}", response={200: DeliveryDetail, 403: Error, 404: Error}, tags=["deliveries"]
)
def show_delivery(request: HttpRequest, delivery_id: Path[Id]) -> dict[str, Any]:
    """One delivery with its attempt timeline."""
    require(request, "syndicator.view_delivery", "syndicator.view_deliveryattempt")
    return detail_row(get_delivery(delivery_id))


@api.post(
    "/deliveries/{delivery_id}/retry",
    response={200: DeliveryDetail, 403: Error, 404: Error, 409: Error},
    tags=["deliveries"],
)
def retry_delivery(request: HttpRequest, delivery_id: Path[Id]) -> Status:
    """Queue a failed, uncertain or cancelled delivery again with a fresh retry budget (admins)."""
    caller = require(request, "syndicator.view_delivery", "syndicator.change_delivery")
    found = get_delivery(delivery_id)
    if found.status not in RETRYABLE or not decisions.retry([found], by=caller):
        found.refresh_from_db(fields=["status"])
        allowed = ", ".join(RETRYABLE)
        detail = f"delivery {delivery_id} is {found.status}; only {allowed} ones can be retried"
        return Status(409, {"detail": detail})
    return Status(200, detail_row(get_delivery(delivery_id)))


# --- health -----------------------------------------------------------------------------------


@api.get(
    "/health",
    auth=None,
    response={200: HealthOut, 401: Error, 503: Error},
    tags=["health"],
    exclude_none=True,
)
def health(request: HttpRequest) -> Status:
    """Liveness without credentials; with them, every feed's and target's health and the queue."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return Status(503, {"detail": f"the database does not answer: {type(exc).__name__}"})
    user = request_user(request)
    if user is None and bearer_token(request) is not None:
        return Status(401, {"detail": "the token is unknown, revoked or expired"})
    if user is None or not user.has_perms(["syndicator.view_feed", "syndicator.view_target"]):
        return Status(200, {"status": "ok"})
    return Status(200, {"status": "ok", **health_details()})


def health_details() -> dict[str, Any]:
    """Feeds' and targets' verdicts, deliveries by status and the age of the oldest queued one."""
    by_status = dict(Delivery.objects.values_list("status").annotate(n=Count("id")).order_by())
    oldest = Delivery.objects.filter(status=Delivery.Status.QUEUED).aggregate(m=Min("created_at"))["m"]

    def item(obj: Feed | Target, verdict: Any) -> dict[str, Any]:
        return {"id": obj.pk, "name": str(obj), "state": verdict.state, "reason": verdict.reason}

    return {
        "feeds": [item(f, feed_health(f)) for f in Feed.objects.all()],
        "targets": [item(t, target_health(t)) for t in Target.objects.all()],
        "deliveries": {status: by_status.get(status, 0) for status in Delivery.Status.values},
        "oldest_queued_age_seconds": (timezone.now() - oldest).total_seconds() if oldest else None,
    }


@api.exception_handler(ValidationError)
def invalid_request(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    """422 with one readable sentence in ``detail`` and pydantic's list in ``errors``."""
    problems = []
    for error in exc.errors:
        loc = [str(part) for part in error.get("loc", ())]
        if len(loc) > 1 and loc[1] in ("body", "filters"):  # the view's parameter name, not the caller's
            del loc[1]
        problems.append(f"{'.'.join(loc)}: {error.get('msg', '')}")
    detail = "invalid request: " + "; ".join(problems[:5])
    return api.create_response(request, {"detail": detail, "errors": exc.errors}, status=422)


@api.exception_handler(Throttled)
def throttled(request: HttpRequest, exc: Throttled) -> HttpResponse:
    """429 with Retry-After: too many bad tokens from this address (syndicator.throttle)."""
    response = api.create_response(request, {"detail": str(exc)}, status=429)
    response["Retry-After"] = str(exc.retry_after)
    return response


@api.exception_handler(DatabaseError)
def database_error(request: HttpRequest, exc: DatabaseError) -> HttpResponse:
    """A database that refuses a query: 503 with JSON, as every other error here."""
    return api.create_response(request, {"detail": f"database error: {type(exc).__name__}"}, status=503)
