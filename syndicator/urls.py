"""URL routes: the admin, the JSON API, /metrics, demo feeds, unsubscribe, and the push endpoints."""

from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from syndicator import pushviews, views
from syndicator.api import api
from syndicator.metrics import metrics_view

admin.site.site_header = "syndicator"
admin.site.site_title = "syndicator"
admin.site.index_title = "Feeds, targets and the delivery log"

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("metrics", metrics_view, name="metrics"),
    path("healthz", views.healthz, name="healthz"),
    path("demo/feeds/<str:name>", views.demo_feed, name="demo-feed"),
    path("unsubscribe/<str:token>", views.unsubscribe, name="unsubscribe"),
    path("websub/<str:key>", pushviews.websub_callback, name="websub-callback"),
    path("hooks/feeds/<int:feed_id>", pushviews.feed_webhook, name="feed-webhook"),
]
