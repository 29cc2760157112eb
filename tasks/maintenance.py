"""Housekeeping: re-enqueue due and stranded deliveries, expire lost sends."""

from __future__ import annotations

from celery import Task

from celeryproject import app
from syndicator import delivery, desk


@app.task(name="tasks.maintenance.sweep_deliveries")
def sweep_deliveries() -> dict[str, int]:
    """Re-enqueue deliveries that are due or stranded; mark lost sends uncertain."""
    return delivery.sweep()


@app.task(name="tasks.maintenance.heartbeat", bind=True)
def heartbeat(self: Task) -> str:
    """Record that a worker runs (and beat schedules): one row, one write, every 30 s."""
    return desk.record_heartbeat(self.request.hostname or "").isoformat()
