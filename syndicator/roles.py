"""The two roles, Editors and Admins, as Django groups with their permissions.

Editors read the posts, the delivery log, the feeds and the targets, and repost (a repost adds a
delivery); they change no feed, target, template, secret name, subscriber or user. Admins have
every right on syndicator's models (/metrics included), and manage the users who are editors or
admins: never a superuser (syndicator.admin.accounts), and never the groups or their permissions,
which only a superuser changes (else an admin could grant the Admins group anything). The admin
pages, the API and /metrics all decide by these permissions (``user.has_perm``), never by group name.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps as global_apps
from django.contrib.auth.models import AbstractUser
from django.db import transaction

EDITORS = "Editors"
ADMINS = "Admins"
ROLES = {"editor": EDITORS, "admin": ADMINS}

EDITOR_PERMISSIONS = (
    ("syndicator", "view_post"),
    ("syndicator", "view_delivery"),
    ("syndicator", "view_deliveryattempt"),
    ("syndicator", "view_feed"),
    ("syndicator", "view_target"),
    ("syndicator", "add_delivery"),
)
ADMIN_AUTH_PERMISSIONS = (
    *(("auth", f"{action}_user") for action in ("add", "change", "delete", "view")),
    ("auth", "view_group"),
    ("auth", "view_permission"),
)
# Rights an older version gave the Admins group; ensure_roles takes them back.
NOT_FOR_ADMINS = (("auth", "add_group"), ("auth", "change_group"), ("auth", "delete_group"))


def ensure_roles(apps: Any = global_apps) -> None:
    """Create the two groups, or add what they lack; idempotent (the migration and the CLI call it).

    ``apps`` is a migration's historical registry or, by default, the live one.
    """
    from django.contrib.auth.management import create_permissions

    # Permissions are normally made after the last migration (post_migrate); make them now.
    for app_config in apps.get_app_configs():
        # A migration's app configs are stubs without models_module, which create_permissions wants.
        loaded = getattr(app_config, "models_module", None)
        app_config.models_module = loaded or True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = loaded

    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")

    def permissions(pairs: tuple[tuple[str, str], ...]) -> list[Any]:
        wanted = {f"{app}.{code}" for app, code in pairs}
        candidates = permission_model.objects.filter(codename__in=[c for _, c in pairs])
        return [
            p
            for p in candidates.select_related("content_type")
            if f"{p.content_type.app_label}.{p.codename}" in wanted
        ]

    with transaction.atomic():
        editors, _ = group_model.objects.get_or_create(name=EDITORS)
        editors.permissions.add(*permissions(EDITOR_PERMISSIONS))
        admins, _ = group_model.objects.get_or_create(name=ADMINS)
        admins.permissions.add(
            *permission_model.objects.filter(content_type__app_label="syndicator"),
            *permissions(ADMIN_AUTH_PERMISSIONS),
        )
        admins.permissions.remove(*permissions(NOT_FOR_ADMINS))


def set_role(user: AbstractUser, role: str) -> None:
    """Give a user one role (editor or admin), replacing the other; both may use the admin pages."""
    from django.contrib.auth.models import Group

    ensure_roles()
    user.is_staff = True  # the admin site lets in only staff; the group decides what they may do
    user.save(update_fields=["is_staff"])
    user.groups.remove(*Group.objects.filter(name__in=ROLES.values()))
    user.groups.add(Group.objects.get(name=ROLES[role]))


def role_of(user: AbstractUser) -> str:
    """A user's role as shown in lists: superuser, admin, editor or none."""
    if user.is_superuser:
        return "superuser"
    names = {g.name for g in user.groups.all()}
    return "admin" if ADMINS in names else "editor" if EDITORS in names else "none"


def clear_role(user: AbstractUser) -> None:
    """Take both roles away; the user keeps the account but sees no syndicator page."""
    from django.contrib.auth.models import Group

    user.groups.remove(*Group.objects.filter(name__in=ROLES.values()))
