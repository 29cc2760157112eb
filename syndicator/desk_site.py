"""The admin site whose index is the newsroom's start page (syndicator/desk.py gathers the data).

Django's admin stays for the rest; "View site" is gone, since the site *is* the admin.
"""

from __future__ import annotations

from django.contrib.admin import AdminSite
from django.contrib.admin.apps import AdminConfig
from django.http import HttpRequest
from django.template.response import TemplateResponse


class DeskAdminSite(AdminSite):
    site_url = None  # the public site would be the admin again: no "View site" link
    desk_template = "admin/desk.html"

    def index(self, request: HttpRequest, extra_context: dict | None = None) -> TemplateResponse:
        """The start page for those who read the log (editors and admins), else Django's list."""
        if not request.user.has_perm("syndicator.view_delivery"):
            return super().index(request, extra_context)
        from syndicator import desk  # models are loaded by the time a request comes

        is_admin = request.user.has_perm("syndicator.change_delivery")
        context = {
            **self.each_context(request),
            "title": "Today at the desk",
            "subtitle": None,
            "desk": desk.build(admin=is_admin),
            "is_admin": is_admin,
            "waiting_statuses": ",".join(desk.WAITING),
            **(extra_context or {}),
        }
        request.current_app = self.name
        return TemplateResponse(request, self.desk_template, context)


class SyndicatorAdminConfig(AdminConfig):
    """Django's admin with DeskAdminSite as its default site (Django's documented way to replace
    it: "Overriding the default admin site"); listed in INSTALLED_APPS instead of django.contrib.admin."""

    default_site = "syndicator.desk_site.DeskAdminSite"
