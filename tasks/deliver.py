"""The delivery task: claim, render, send and record one delivery."""

from __future__ import annotations

from celery import Task

from celeryproject import app
from syndicator import delivery


@app.task(name="tasks.deliver.deliver", bind=True)
def deliver(self: Task, delivery_id: int) -> None:
    """Attempt one delivery; a duplicate message finds nothing to claim and returns."""
    delivery.attempt_delivery(delivery_id, task_id=self.request.id or "", worker=self.request.hostname or "")


@app.task(name="tasks.deliver.deliver_batch", bind=True)
def deliver_batch(self: Task, delivery_ids: list[int], kind: str) -> None:
    """Attempt one network's deliveries one after the other, in the order given."""
    delivery.attempt_batch(
        delivery_ids, kind, task_id=self.request.id or "", worker=self.request.hostname or ""
    )
