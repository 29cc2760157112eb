"""The admin site whose index is the newsroom's start page (syndicator/desk.py gathers the data).

Django's admin stays for the rest; "View site" is gone, since the site *is* the admin.
"""

from __future__ import annotations

import threading
from typing import Any

from django.contrib import messages
from django.contrib.admin import AdminSite, autodiscover, site
from django.contrib.admin.apps import AdminConfig
from django.contrib.admin.checks import check_admin_app, check_dependencies
from django.core import checks
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path, reverse


class DeskAdminSite(AdminSite):
    site_url = None  # the public site would be the admin again: no "View site" link
    desk_template = "admin/desk.html"

    # The admin modules (every app's admin.py, syndicator/admin/, which import the adapters) are
    # imported the first time anything reads the site's registry -- its URLs (syndicator/urls.py,
    # so every web request and every reverse()), its checks, a test -- instead of at django.setup(),
    # so a CLI command or a worker that never touches the admin does not pay for them (issue #16).
    _discovered = False
    _discovering = threading.RLock()

    @property
    def _registry(self) -> dict[Any, Any]:
        if not self._discovered:
            with self._discovering:
                if not self._discovered:
                    # Set first: the admin modules register (reading the registry) while importing.
                    self._discovered = True
                    try:
                        autodiscover()  # what AdminConfig.ready() would have done
                    except BaseException:
                        self._discovered = False
                        raise
        return self._models

    @_registry.setter
    def _registry(self, value: dict[Any, Any]) -> None:
        self._models = value

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
            "demo_mailbox_url": reverse("admin:demo_mailbox") if has_demo_mailbox() else "",
            **(extra_context or {}),
        }
        request.current_app = self.name
        return TemplateResponse(request, self.desk_template, context)

    def get_urls(self) -> list[URLResolver | URLPattern]:
        mailbox = self.admin_view(self.demo_mailbox_view)
        return [
            path("queue/", self.admin_view(self.queue_view), name="queue"),
            path("demo-mailbox/", mailbox, name="demo_mailbox"),
            path("demo-mailbox/<str:message_id>/", mailbox, name="demo_mailbox_message"),
            *super().get_urls(),
        ]

    def demo_mailbox_view(self, request: HttpRequest, message_id: str = "") -> TemplateResponse:
        """The messages the demo email target sent, as its subscribers got them."""
        from syndicator import demo_mailbox

        if not request.user.has_perm("syndicator.view_delivery"):
            raise PermissionDenied
        messages = demo_mailbox.list_messages()
        chosen = None
        if message_id:
            try:
                chosen = demo_mailbox.read_message(message_id)
            except FileNotFoundError:
                raise Http404("no such message in the demo mailbox") from None
        elif messages:
            chosen = messages[0]
        context = {
            **self.each_context(request),
            "title": "Demo mailbox",
            "messages_kept": messages,
            "chosen": chosen,
            "mailbox_dir": demo_mailbox.mailbox_dir(),
        }
        request.current_app = self.name
        return TemplateResponse(request, "admin/demo_mailbox.html", context)

    def queue_view(self, request: HttpRequest) -> TemplateResponse | HttpResponseRedirect:
        """The queue (docs/pacing.md): what will go out per target, in order, with time and
        reason; send now, reschedule and cancel, each logged in the person's name."""
        from syndicator import queueing

        if not request.user.has_perm("syndicator.view_delivery"):
            raise PermissionDenied
        can_act = request.user.has_perm("syndicator.add_delivery")
        if request.method == "POST":
            if not can_act:
                raise PermissionDenied
            queueing.act_from_form(request.POST, by=request.user, notify=lambda m: messages.info(request, m))
            return HttpResponseRedirect(reverse("admin:queue"))
        context = {
            **self.each_context(request),
            "title": "Queue",
            "groups": queueing.by_target(),
            "can_act": can_act,
        }
        request.current_app = self.name
        return TemplateResponse(request, "admin/queue.html", context)


def has_demo_mailbox() -> bool:
    """Whether the demo's email target exists (the start page links to its mailbox then)."""
    from syndicator.demo import DEMO_MAILBOX_TARGET
    from syndicator.models import Target

    return Target.objects.filter(name=DEMO_MAILBOX_TARGET).exists()


class SyndicatorAdminConfig(AdminConfig):
    """Django's admin with DeskAdminSite as its default site (Django's documented way to replace
    it: "Overriding the default admin site"); listed in INSTALLED_APPS instead of django.contrib.admin.

    Its autodiscovery waits for the first read of the site's registry (DeskAdminSite._registry)."""

    default_site = "syndicator.desk_site.DeskAdminSite"

    def ready(self) -> None:
        # SimpleAdminConfig.ready()'s checks, without AdminConfig's autodiscover(); the app check
        # discovers first, since it checks the sites that exist and the default one is made lazily.
        checks.register(check_dependencies, checks.Tags.admin)
        checks.register(check_discovered_admin, checks.Tags.admin)


def check_discovered_admin(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Django's admin app check, on the registry as autodiscovery fills it."""
    site._registry  # noqa: B018 -- reading it discovers the admin modules
    return check_admin_app(app_configs, **kwargs)
