"""Housekeeping: re-enqueue due and stranded deliveries, expire lost sends."""

from __future__ import annotations

from celeryproject import app
from syndicator import delivery


@app.task(name="tasks.maintenance.sweep_deliveries")
def sweep_deliveries() -> dict[str, int]:
    """Re-enqueue deliveries that are due or stranded; mark lost sends uncertain."""
    return delivery.sweep()
