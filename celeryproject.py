"""The Celery app: configured from Django settings (CELERY_*), with its queues and beat schedule.

Workers: ``celery -A celeryproject worker``; scheduler: ``celery -A celeryproject beat``.
"""

from __future__ import annotations

import os
import time

from celery import Celery
from celery.signals import task_postrun, task_prerun
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "syndicator.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connections  # noqa: E402

from syndicator.targets.registry import all_queues, delivery_queues  # noqa: E402

app = Celery("syndicator")
app.config_from_object("django.conf:settings", namespace="CELERY")

# One queue per network (every package in syndicator/targets/), so a slow network cannot stall
# the others; feeds poll on their own. A worker started without -Q consumes all of them.
DELIVERY_QUEUES = delivery_queues()
ALL_QUEUES = all_queues()
app.conf.task_queues = [Queue(name) for name in ALL_QUEUES]
app.conf.task_default_queue = "maintenance"
app.conf.task_routes = {
    "tasks.watch.*": {"queue": "feeds"},
    "tasks.maintenance.*": {"queue": "maintenance"},
    # tasks.deliver.deliver is routed per call (delivery.enqueue picks deliver.<kind>).
}
app.conf.imports = ("tasks.watch", "tasks.deliver", "tasks.maintenance")
app.conf.beat_schedule = {
    "schedule-due-feeds": {
        "task": "tasks.watch.schedule_due_feeds",
        "schedule": settings.SYNDICATOR_SCHEDULE_INTERVAL,
        # A tick that waited longer than its interval is superseded by the next one.
        "options": {"expires": settings.SYNDICATOR_SCHEDULE_INTERVAL},
    },
    "heartbeat": {
        "task": "tasks.maintenance.heartbeat",
        "schedule": settings.SYNDICATOR_HEARTBEAT_INTERVAL,
        "options": {"expires": settings.SYNDICATOR_HEARTBEAT_INTERVAL},
    },
    "maintain-push": {
        "task": "tasks.watch.maintain_push",
        "schedule": settings.SYNDICATOR_WEBSUB_TICK,
        "options": {"expires": settings.SYNDICATOR_WEBSUB_TICK},
    },
    "sweep-deliveries": {
        "task": "tasks.maintenance.sweep_deliveries",
        "schedule": settings.SYNDICATOR_SWEEP_INTERVAL,
        "options": {"expires": settings.SYNDICATOR_SWEEP_INTERVAL},
    },
    # Daily: a prune is idempotent and cheap when there is nothing new to prune.
    "prune-history": {
        "task": "tasks.maintenance.prune_history",
        "schedule": 86400,
        "options": {"expires": 3600},
    },
}


# Celery's Django fixup closes every database connection around every task, so each delivery
# opened a new PostgreSQL connection (bench/pipeline.py: about half the throughput). Reuse them.
app.conf.CELERY_DB_REUSE_MAX = 1000


@task_prerun.connect
@task_postrun.connect
def _drop_stale_connections(**_: object) -> None:
    """Close a connection that had an error, outlived CONN_MAX_AGE or was left outside autocommit.

    Not Django's close_old_connections(): it re-arms CONN_HEALTH_CHECKS, a SELECT 1 before the
    next task's first query, on every task (issue 16: one statement of each delivery's budget).
    A connection the database dropped while the worker idled is found out by that first query
    instead, which reconnects once (recovery.reconnecting); one that failed inside a task is
    checked and closed here, by Django's own test (close_if_unusable_or_obsolete).
    """
    for connection in connections.all(initialized_only=True):
        if connection.connection is None:
            continue
        obsolete = connection.close_at is not None and time.monotonic() >= connection.close_at
        autocommit_left = connection.get_autocommit() != connection.settings_dict["AUTOCOMMIT"]
        if connection.errors_occurred or obsolete or autocommit_left:
            connection.close_if_unusable_or_obsolete()
