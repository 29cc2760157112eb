"""API tokens that expire or serve /metrics only; the /metrics permission, given to Admins, and the
groups' rights taken from them (syndicator/roles.py; issue 15, item 5). Indexes for the read paths
that run on every scrape and page, and for the retention prune (issue 15, item 11)."""

from django.db import migrations, models


def update_roles(apps, schema_editor):
    from syndicator.roles import ensure_roles

    ensure_roles(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("syndicator", "0008_heartbeat"),
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
        migrations.AddIndex(
            model_name="delivery",
            index=models.Index(fields=["target", "status", "updated_at"], name="delivery_target_status_upd"),
        ),
        migrations.AddIndex(
            model_name="delivery",
            index=models.Index(
                condition=models.Q(("origin", "auto"), ("status", "sent")),
                fields=["sent_at"],
                name="delivery_sent_auto",
            ),
        ),
        migrations.AddIndex(
            model_name="deliveryattempt",
            index=models.Index(fields=["finished_at"], name="attempt_finished"),
        ),
        migrations.AddIndex(
            model_name="emailrecipientresult",
            index=models.Index(fields=["updated_at"], name="email_result_updated"),
        ),
    ]
