"""Small views outside the admin: a health probe and the bundled demo feeds."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

DEMO_FEEDS_DIR = settings.PACKAGE_DIR / "demo_feeds"


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the web process answers and the database is reachable."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


@require_GET
def demo_feed(request: HttpRequest, name: str) -> HttpResponse:
    """Serve a bundled demo feed (a copy of the fixtures), so a fresh install has something to watch."""
    path = (DEMO_FEEDS_DIR / name).resolve()
    if path.parent != DEMO_FEEDS_DIR.resolve() or path.suffix != ".rss" or not path.is_file():
        raise Http404("no such demo feed")
    return HttpResponse(path.read_bytes(), content_type="application/rss+xml; charset=utf-8")
