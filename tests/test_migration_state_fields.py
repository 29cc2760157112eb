"""Migration 0007 (state out of strings) carries existing rows over: look-ups, verdicts, resumes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

APP = "syndicator"


def migration_named(suffix: str) -> str:
    executor = MigrationExecutor(connection)
    (name,) = [n for app, n in executor.loader.disk_migrations if app == APP and n.endswith(suffix)]
    return name


def migrate(name: str):
    executor = MigrationExecutor(connection)
    executor.migrate([(APP, name)])
    executor.loader.build_graph()
    return executor.loader.project_state([(APP, name)]).apps


def test_old_strings_become_fields_and_back():
    this = migration_named("_delivery_state_fields")
    loader = MigrationExecutor(connection).loader
    (before,) = [p.key[1] for p in loader.graph.node_map[(APP, this)].parents if p.key[0] == APP]
    latest = next(n for app, n in loader.graph.leaf_nodes() if app == APP)
    try:
        old = migrate(before)
        user = old.get_model("auth", "User").objects.create(username="ada")
        feed = old.get_model(APP, "Feed").objects.create(url="https://a.example/feed")
        post = old.get_model(APP, "Post").objects.create(feed=feed, guid="1")
        target = old.get_model(APP, "Target").objects.create(
            name="fb",
            kind="facebook",
            settings={"page_id": "1", "_resumed_at": "2026-11-30T10:00:00+00:00"},
        )
        delivery = old.get_model(APP, "Delivery").objects.create(post=post, target=target, status="sent")
        attempt = old.get_model(APP, "DeliveryAttempt")
        attempt.objects.create(delivery=delivery, number=1, worker="celery@w1", outcome="unknown")
        attempt.objects.create(delivery=delivery, number=2, worker="verify:celery@w2", outcome="unknown")
        attempt.objects.create(delivery=delivery, number=3, worker="admin:ada", outcome="marked_sent")
        attempt.objects.create(delivery=delivery, number=4, worker="admin:gone", outcome="marked_not_sent")

        new = migrate(this)
        rows = new.get_model(APP, "DeliveryAttempt").objects.order_by("number")
        assert [(a.kind, a.worker, a.actor_id, a.actor_name) for a in rows] == [
            ("send", "celery@w1", None, ""),
            ("lookup", "celery@w2", None, ""),
            ("verdict", "", user.pk, "ada"),
            ("verdict", "", None, "gone"),
        ]
        moved = new.get_model(APP, "Target").objects.get(pk=target.pk)
        assert moved.resumed_at == datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
        assert moved.settings == {"page_id": "1"}

        back = migrate(before)
        rows = back.get_model(APP, "DeliveryAttempt").objects.order_by("number")
        assert [a.worker for a in rows] == ["celery@w1", "verify:celery@w2", "admin:ada", "admin:gone"]
        assert (
            back.get_model(APP, "Target")
            .objects.get(pk=target.pk)
            .settings["_resumed_at"]
            .startswith("2026-11-30T10:00:00")
        )
    finally:
        migrate(latest)
