"""Housekeeping: re-enqueue due and stranded deliveries, expire lost sends, prune old details."""

from __future__ import annotations

from celery import Task

from celeryproject import app
from syndicator import clock, delivery, desk, retention, scheduling


@app.task(name="tasks.maintenance.sweep_deliveries")
def sweep_deliveries() -> dict[str, int]:
    """Re-enqueue deliveries that are due or stranded; mark lost sends uncertain; record when the
    next sweep has work (beat sends it then: syndicator/scheduling.py)."""
    generation = scheduling.begin(scheduling.SWEEP)
    counts = delivery.sweep()
    now = clock.current()
    scheduling.record(scheduling.SWEEP, generation, delivery.next_sweep_due(now), now)
    return counts


@app.task(name="tasks.maintenance.heartbeat", bind=True)
def heartbeat(self: Task) -> str:
    """Record that a worker runs (and beat schedules): one row, one write, every 30 s."""
    return desk.record_heartbeat(self.request.hostname or "").isoformat()


@app.task(name="tasks.maintenance.prune_history")
def prune_history() -> dict[str, int]:
    """Apply SYNDICATOR_RETENTION (syndicator/retention.py)."""
    done = retention.prune()
    return {"attempt_messages": done.attempt_messages, "email_results": done.email_results}
