"""API tokens that expire or serve /metrics only; the /metrics permission, given to Admins, and the
groups' rights taken from them (syndicator/roles.py); issue 15, item 5."""

from django.db import migrations, models


def update_roles(apps, schema_editor):
    from syndicator.roles import ensure_roles

    ensure_roles(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("syndicator", "0005_admin_ui_marked_outcomes"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="delivery",
            options={
                "ordering": ["-created_at", "-id"],
                "permissions": [("view_metrics", "Can read /metrics")],
                "verbose_name_plural": "deliveries",
            },
        ),
        migrations.AddField(
            model_name="apitoken",
            name="expires_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="apitoken",
            name="scope",
            field=models.CharField(
                blank=True,
                choices=[("", "the user's role"), ("metrics", "/metrics only")],
                default="",
                max_length=20,
            ),
        ),
        migrations.RunPython(update_roles, migrations.RunPython.noop),
    ]
