"""Small views outside the admin: a health probe, the bundled demo feeds, email unsubscribe."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.core import signing
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from syndicator import mailing
from syndicator.models import Feed

log = logging.getLogger(__name__)

DEMO_FEEDS_DIR = settings.PACKAGE_DIR / "demo_feeds"


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the web process answers and the database is reachable."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


# A demo feed with a "-next" edition grows: this long after its first poll, the next edition (one
# new post) is served, so a newcomer sees a post arrive live after the backfill.
DEMO_NEXT_EDITION_AFTER = timedelta(minutes=2)
# Then its "-later" edition: the new post's headline edited and an older post taken out (items
# published before it still there), so the demo shows edits and unpublishing followed (#12).
DEMO_LATER_EDITION_AFTER = timedelta(minutes=4)


@require_GET
def demo_feed(request: HttpRequest, name: str) -> HttpResponse:
    """Serve a bundled demo feed (a copy of the fixtures), so a fresh install has something to watch."""
    path = (DEMO_FEEDS_DIR / name).resolve()
    if path.parent != DEMO_FEEDS_DIR.resolve() or path.suffix != ".rss" or not path.is_file():
        raise Http404("no such demo feed")
    now = timezone.now()
    for suffix, after in (("-later", DEMO_LATER_EDITION_AFTER), ("-next", DEMO_NEXT_EDITION_AFTER)):
        edition = path.with_name(f"{path.stem}{suffix}.rss")
        if edition.is_file() and _demo_feed_polled_before(name, now - after):
            path = edition
            break
    return HttpResponse(path.read_bytes(), content_type="application/rss+xml; charset=utf-8")


def _demo_feed_polled_before(name: str, moment: datetime) -> bool:
    """Whether the feed watching this demo file was first polled before ``moment``."""
    return Feed.objects.filter(url__endswith=f"/demo/feeds/{name}", first_polled_at__lt=moment).exists()


# --- one-click unsubscribe (RFC 8058) ----------------------------------------------------------

_PAGE = (
    '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width, initial-scale=1">'
    '<meta name="robots" content="noindex"><title>{}</title></head>'
    '<body style="font-family: sans-serif; max-width: 36em; margin: 3em auto; padding: 0 1em;">'
    '<h1 style="font-size: 1.3em;">{}</h1>{}</body></html>\n'
)


def _page(title: str, body: str, status: int = 200) -> HttpResponse:
    """A small self-contained HTML page (no login, no cookies, no static files)."""
    return HttpResponse(format_html(_PAGE, title, title, body), status=status)


@csrf_exempt  # mail providers POST "List-Unsubscribe=One-Click" with no cookie and no CSRF token
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """GET: confirm with a button (link scanners must not unsubscribe anyone); POST: unsubscribe."""
    try:
        subscriber = mailing.subscriber_for_token(token)
    except signing.SignatureExpired:
        return _page(
            "This unsubscribe link has expired",
            format_html("<p>{}</p>", "Use the link in a more recent email, or reply to ask to be removed."),
            status=400,
        )
    except signing.BadSignature:
        return _page(
            "This unsubscribe link is not valid",
            format_html("<p>{}</p>", "Check that the whole link was copied from the email."),
            status=400,
        )
    list_name = subscriber.target.settings.get("from_name") or subscriber.target.name
    if request.method == "POST":
        stopped = mailing.unsubscribe(subscriber)
        log.info("subscriber %s of %s unsubscribed (one-click: %s)", subscriber.pk, list_name, stopped)
        return _page(
            "You are unsubscribed",
            format_html("<p>{} will send no more mail to {}.</p>", list_name, subscriber.email),
        )
    if subscriber.unsubscribed_at:
        return _page("You are unsubscribed", format_html("<p>{} is not on the list.</p>", subscriber.email))
    form = format_html(
        '<p>Stop mail from {} to {}?</p><form method="post"><button type="submit" name="List-Unsubscribe" '
        'value="One-Click">Unsubscribe</button></form>',
        list_name,
        subscriber.email,
    )
    return _page("Unsubscribe", form)
