"""API tokens, and the two roles as groups: Editors (read, repost) and Admins (everything).

The permissions of each role are defined once, in syndicator/roles.py; ``ensure_roles`` only adds
what a group lacks, so running it again (``syndicator users add`` does) is harmless.
"""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


def create_roles(apps, schema_editor):
    """Create the Editors and Admins groups with their permissions."""
    from syndicator.roles import ensure_roles

    ensure_roles(apps)


def remove_roles(apps, schema_editor):
    """Undo: drop the two groups (their members keep their accounts)."""
    apps.get_model("auth", "Group").objects.filter(name__in=["Editors", "Admins"]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("syndicator", "0002_subscriber_emailrecipientresult_and_more"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="ApiToken",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "name",
                    models.CharField(blank=True, help_text="What the token is for, e.g. the CMS hook.", max_length=100),
                ),
                ("key_hash", models.CharField(editable=False, max_length=64, unique=True)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("last_used_at", models.DateTimeField(blank=True, null=True)),
                ("revoked_at", models.DateTimeField(blank=True, null=True)),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="api_tokens",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={"verbose_name": "API token", "ordering": ["id"]},
        ),
        migrations.RunPython(create_roles, remove_roles),
    ]
