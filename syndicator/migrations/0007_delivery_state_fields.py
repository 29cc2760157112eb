"""State out of strings: an attempt's kind and actor, a target's resume time as a column.

Data: attempts whose worker began with ``verify:`` become look-ups, those with ``admin:<name>``
verdicts naming that user (linked when the user still exists); ``Target.settings["_resumed_at"]``
moves to ``Target.resumed_at`` and the key is removed. Reversible.
"""

from datetime import datetime

import django.db.models.deletion
from django.apps import apps as global_apps
from django.conf import settings
from django.db import migrations, models

VERIFY_MARK = "verify:"
ADMIN_MARK = "admin:"
RESUMED_AT = "_resumed_at"
VERDICTS = ("marked_sent", "marked_not_sent")


def _checks_now(schema_editor):
    """On PostgreSQL, check foreign keys per statement while the rows change: Django creates this
    migration's indexes at its end, and PostgreSQL refuses that while deferred checks are pending."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def forward(apps, schema_editor):
    _checks_now(schema_editor)
    attempt = apps.get_model("syndicator", "DeliveryAttempt")
    target = apps.get_model("syndicator", "Target")
    user = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    # A historical model has no USERNAME_FIELD: the current class says which field it is.
    username = getattr(global_apps.get_model(settings.AUTH_USER_MODEL), "USERNAME_FIELD", "username")
    for row in attempt.objects.filter(worker__startswith=VERIFY_MARK).only("pk", "worker").iterator():
        attempt.objects.filter(pk=row.pk).update(kind="lookup", worker=row.worker[len(VERIFY_MARK) :])
    users = {}
    for row in attempt.objects.filter(worker__startswith=ADMIN_MARK).only("pk", "worker").iterator():
        name = row.worker[len(ADMIN_MARK) :][:150]
        if name not in users:
            users[name] = user.objects.filter(**{username: name}).first()
        attempt.objects.filter(pk=row.pk).update(kind="verdict", worker="", actor=users[name], actor_name=name)
    attempt.objects.filter(outcome__in=VERDICTS).update(kind="verdict")
    for row in target.objects.filter(settings__has_key=RESUMED_AT).iterator():
        stored = row.settings.pop(RESUMED_AT)
        try:
            row.resumed_at = datetime.fromisoformat(stored)
        except (TypeError, ValueError):  # edited by hand: the streak then counts from the start
            row.resumed_at = None
        row.save(update_fields=["settings", "resumed_at"])


def backward(apps, schema_editor):
    _checks_now(schema_editor)
    attempt = apps.get_model("syndicator", "DeliveryAttempt")
    target = apps.get_model("syndicator", "Target")
    for row in attempt.objects.filter(kind="lookup").only("pk", "worker").iterator():
        attempt.objects.filter(pk=row.pk).update(worker=f"{VERIFY_MARK}{row.worker}"[:200])
    for row in attempt.objects.filter(kind="verdict").only("pk", "actor_name").iterator():
        attempt.objects.filter(pk=row.pk).update(worker=f"{ADMIN_MARK}{row.actor_name}"[:200])
    for row in target.objects.filter(resumed_at__isnull=False).iterator():
        row.settings = {**row.settings, RESUMED_AT: row.resumed_at.isoformat()}
        row.save(update_fields=["settings"])


class Migration(migrations.Migration):
    dependencies = [
        ('syndicator', '0006_kind_choices_from_registry'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='deliveryattempt',
            name='actor',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='deliveryattempt',
            name='actor_name',
            field=models.CharField(blank=True, max_length=150),
        ),
        migrations.AddField(
            model_name='deliveryattempt',
            name='kind',
            field=models.CharField(choices=[('send', 'Send'), ('lookup', 'look-up'), ('verdict', 'Verdict'), ('edit', 'Edit'), ('delete', 'Delete')], default='send', max_length=10),
        ),
        migrations.AddField(
            model_name='target',
            name='resumed_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name='deliveryattempt',
            name='outcome',
            field=models.CharField(blank=True, choices=[('sent', 'Sent'), ('transient', 'transient error'), ('rate_limited', 'rate limited'), ('permanent', 'permanent error'), ('unknown', 'outcome unknown'), ('lost', 'worker lost'), ('marked_sent', 'marked as sent'), ('marked_not_sent', 'marked as not sent'), ('retried', 'retried'), ('cancelled', 'cancelled')], max_length=20),
        ),
        migrations.RunPython(forward, backward),
    ]
