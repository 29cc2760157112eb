"""The push endpoints: the WebSub callback (a hub verifies intent and delivers content) and the
signed publish webhook. Both sit under SYNDICATOR_PUBLIC_URL, with no login and no CSRF token."""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from syndicator import scheduling, watch, webhook, websub
from syndicator.dispatch import queue_poll
from syndicator.errors import FeedError
from syndicator.models import Feed, PushSubscription
from syndicator.redact import redact

log = logging.getLogger(__name__)


@csrf_exempt  # hubs POST without cookies or tokens; the signature is the check
@require_http_methods(["GET", "POST"])
def websub_callback(request: HttpRequest, key: str) -> HttpResponse:
    """GET: verification of intent (echo hub.challenge, or 404). POST: content distribution."""
    if request.method == "GET":
        challenge = websub.verify_intent(key, request.GET.dict())
        if challenge is None:
            return HttpResponse("no such pending request", status=404, content_type="text/plain")
        return HttpResponse(challenge, content_type="text/plain")
    sub = PushSubscription.objects.select_related("feed").filter(callback_key=key).first()
    if sub is None:
        raise Http404("no such subscription")
    if sub.feed is None or sub.state == PushSubscription.State.UNSUBSCRIBING:
        return HttpResponse("unsubscribed", status=410, content_type="text/plain")
    body = _read_capped(request, settings.SYNDICATOR_FEED_MAX_BYTES)
    if body is None:
        log.warning(
            "feed %s: pushed body over %d bytes refused", sub.feed_id, settings.SYNDICATOR_FEED_MAX_BYTES
        )
        return HttpResponse("body too large", status=413, content_type="text/plain")
    if not websub.signature_valid(sub, body, request.headers.get("X-Hub-Signature", "")):
        # WebSub §8.2: ignore it, but acknowledge, so a forger learns nothing.
        log.warning("feed %s: pushed body with a missing or wrong signature ignored", sub.feed_id)
        return HttpResponse(status=202)
    try:
        report = watch.store_pushed(sub.feed, body, request.headers.get("Content-Type", ""))
    except FeedError as exc:
        log.warning("feed %s: pushed body not stored: %s", sub.feed_id, exc)
        return HttpResponse(status=202)  # the next poll reads the feed itself
    log.info("feed %s: push stored %d new posts", sub.feed_id, len(report.new_posts))
    return HttpResponse(status=204)


@csrf_exempt  # a CMS calls with no session; the Standard Webhooks signature is the check
@require_POST
def feed_webhook(request: HttpRequest, feed_id: int) -> JsonResponse:
    """A signed "look now" from a CMS: poll the feed at once (202), or 401 and nothing changes."""
    feed = Feed.objects.filter(pk=feed_id).first()
    if feed is None:
        return JsonResponse({"error": "no such feed"}, status=404)
    body = _read_capped(request, webhook.MAX_BODY)
    if body is None:
        return JsonResponse({"error": f"body over {webhook.MAX_BODY} bytes"}, status=413)
    try:
        call = webhook.verify(feed, body, dict(request.headers))
    except webhook.Refused as exc:
        return JsonResponse({"error": str(exc)}, status=401)
    if not feed.enabled:
        return JsonResponse({"error": "the feed is disabled"}, status=409)
    if call.unpublished:
        # Believed at once (it is signed); nothing to poll for: the item is leaving the feed.
        posts = webhook.unpublish(call)
        return JsonResponse({"status": "unpublished", "feed": feed.pk, "posts": posts}, status=202)
    try:
        queue_poll(feed.pk, call.url)
    except Exception as exc:  # kombu raises many classes for a broker that is away
        # The call is not lost: the scheduler polls the feed as soon as the broker is back.
        Feed.objects.filter(pk=feed.pk).update(next_poll_at=timezone.now())
        scheduling.wake(scheduling.FEEDS)
        log.warning("feed %s: webhook poll not queued (%s); left to the scheduler", feed.pk, redact(str(exc)))
    return JsonResponse({"status": "polling", "feed": feed.pk}, status=202)


def _read_capped(request: HttpRequest, limit: int) -> bytes | None:
    """The raw body, or None when it is over limit (not read further than that)."""
    declared = request.META.get("CONTENT_LENGTH") or ""
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    while chunk := request.read(min(65536, limit + 1 - size) or 1):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return None
    return b"".join(chunks)
