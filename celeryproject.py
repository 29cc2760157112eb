"""The Celery app: configured from Django settings (CELERY_*), with its queues and beat schedule.

Workers: ``celery -A celeryproject worker``; scheduler: ``celery -A celeryproject beat``.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime
from typing import Any

from celery import Celery, bootsteps
from celery.bin.base import CeleryOption  # a click.Option: click comes with celery
from celery.schedules import schedstate, schedule
from celery.signals import after_setup_logger, beat_init, task_postrun, task_prerun, worker_ready
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "syndicator.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.db import close_old_connections, connections  # noqa: E402

from syndicator import scheduling  # noqa: E402
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


class WhenDue(schedule):
    """Beat's schedule for a database tick: every ``run_every`` while ``scheduling.is_due(kind)``.

    Otherwise it looks again one interval later (a cache read, no message): a wake is acted on
    within one interval, as a tick was before (syndicator/scheduling.py).
    """

    def __init__(self, run_every: Any, kind: str, **kwargs: Any) -> None:
        super().__init__(run_every, **kwargs)
        self.every = getattr(self, "run_every")  # noqa: B009 (a timedelta celery's stubs do not declare)
        self.kind = kind

    def is_due(self, last_run_at: datetime) -> schedstate:
        due, next_in = super().is_due(last_run_at)
        if due and not scheduling.is_due(self.kind):
            return schedstate(False, self.seconds)
        return schedstate(due, next_in)

    def __reduce__(self) -> tuple[Any, ...]:  # beat keeps its entries in a shelve (pickle)
        return self.__class__, (self.every, self.kind)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WhenDue) and other.kind == self.kind and other.every == self.every

    def __hash__(self) -> int:
        return hash((self.kind, self.every))

    def __repr__(self) -> str:
        return f"<when due: {self.kind}, looked at every {self.human_seconds}>"


@beat_init.connect
def _wake_ticks(**_: object) -> None:
    # A record kept by the last run (the private Redis keeps its data) is not this one's to trust.
    scheduling.wake()


app.conf.beat_schedule = {
    "schedule-due-feeds": {
        "task": "tasks.watch.schedule_due_feeds",
        # Sent only when a feed is due (syndicator/scheduling.py), looked at every interval.
        "schedule": WhenDue(settings.SYNDICATOR_SCHEDULE_INTERVAL, scheduling.FEEDS),
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
        "schedule": WhenDue(settings.SYNDICATOR_SWEEP_INTERVAL, scheduling.SWEEP),
        "options": {"expires": settings.SYNDICATOR_SWEEP_INTERVAL},
    },
    # Daily: a prune is idempotent and cheap when there is nothing new to prune.
    "prune-history": {
        "task": "tasks.maintenance.prune_history",
        "schedule": 86400,
        "options": {"expires": 3600},
    },
}


class ThreadedBeat(bootsteps.StartStopStep):
    """``celery worker --beat-thread``: the scheduler as a thread of the worker (``syndicator run``).

    Celery's own ``--beat`` forks a process of its own for it, one more Django in memory
    (~100 MB RSS) to send a few messages a minute (issue #16); ``celery.beat.EmbeddedService`` can
    run it as a thread, which ``--beat`` offers no way to ask for. Production runs ``celery beat``.
    """

    label = "ThreadedBeat"
    conditional = True

    def __init__(self, worker: object, beat_thread: bool = False, **kwargs: object) -> None:
        self.enabled = bool(beat_thread)
        super().__init__(worker, **kwargs)

    def create(self, worker: object) -> Any:
        from celery.beat import EmbeddedService

        return EmbeddedService(
            app,
            thread=True,
            schedule_filename=worker.schedule_filename,  # type: ignore[attr-defined]
            scheduler_cls=worker.scheduler,  # type: ignore[attr-defined]
        )


app.user_options["worker"].add(
    CeleryOption(
        ["--beat-thread"], is_flag=True, default=False, help="Run the scheduler as a thread of this worker."
    )
)
app.steps["worker"].add(ThreadedBeat)


# Celery's Django fixup closes every database connection around every task, so each delivery
# opened a new PostgreSQL connection (bench/pipeline.py: about half the throughput). Reuse them.
WORKER_DB_REUSE_MAX = 1000
app.conf.CELERY_DB_REUSE_MAX = WORKER_DB_REUSE_MAX


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


@worker_ready.connect
def _report_at_start(sender: object = None, **_: object) -> None:
    # The first beat-scheduled heartbeat comes SYNDICATOR_HEARTBEAT_INTERVAL (30 s) after start,
    # and until then the start page said, in red, that no worker had reported: exactly when a new
    # user first opens it (seen on `make run`). A database that is away must not stop the worker.
    from syndicator import desk

    try:
        desk.record_heartbeat(getattr(sender, "hostname", "") or "")
    except Exception:
        logging.getLogger(__name__).warning("could not record the worker's first heartbeat", exc_info=True)
    finally:
        close_old_connections()


class QuietHousekeeping(logging.Filter):
    """Drops Celery's INFO lines about beat's own housekeeping tasks (sent, received, succeeded).

    Beat sends its heartbeat and WebSub round every 30 s and its ticks when due: at three lines
    each, a new user's `make run` terminal scrolled with them and the lines about deliveries
    were lost among them (seen on `make run`). A failure of one (WARNING and up) still shows,
    and the tasks log what they did themselves when they did something (sweep: N enqueued).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING or not record.name.startswith("celery."):
            return True
        args = record.args
        if isinstance(args, dict):  # worker.strategy's "received", app.trace's "succeeded"
            name = str(args.get("name", ""))
        elif isinstance(args, tuple) and len(args) == 2:  # beat's "Sending due task %s (%s)"
            name = str(args[1])
        else:
            return True
        return name not in HOUSEKEEPING


HOUSEKEEPING = frozenset(entry["task"] for entry in app.conf.beat_schedule.values())


@after_setup_logger.connect
def _quiet_housekeeping(logger: logging.Logger | None = None, **_: object) -> None:
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, QuietHousekeeping) for f in handler.filters):
            handler.addFilter(QuietHousekeeping())
