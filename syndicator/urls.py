"""URL routes: the admin (delivery log, feeds, targets), the bundled demo feeds, email unsubscribe."""

from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from syndicator import views

admin.site.site_header = "syndicator"
admin.site.site_title = "syndicator"
admin.site.index_title = "Feeds, targets and the delivery log"

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("demo/feeds/<str:name>", views.demo_feed, name="demo-feed"),
    path("unsubscribe/<str:token>", views.unsubscribe, name="unsubscribe"),
]
