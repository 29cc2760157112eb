"""The worker's terminal: beat's housekeeping tasks do not drown the lines about deliveries."""

from __future__ import annotations

import logging

from celeryproject import HOUSEKEEPING, QuietHousekeeping, _quiet_housekeeping


def record(name: str, msg: str, args: object, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)  # type: ignore[arg-type]


def test_housekeeping_lines_are_dropped_and_deliveries_and_failures_kept() -> None:
    quiet = QuietHousekeeping()
    heartbeat = {"name": "tasks.maintenance.heartbeat", "id": "x", "runtime": 0.1, "return_value": ""}
    deliver = {**heartbeat, "name": "tasks.deliver.deliver_batch"}
    assert "tasks.maintenance.heartbeat" in HOUSEKEEPING and "tasks.watch.maintain_push" in HOUSEKEEPING
    assert not quiet.filter(record("celery.app.trace", "Task %(name)s[%(id)s] succeeded", heartbeat))
    assert not quiet.filter(record("celery.worker.strategy", "Task %(name)s[%(id)s] received", heartbeat))
    sending = ("heartbeat", "tasks.maintenance.heartbeat")
    assert not quiet.filter(record("celery.beat", "Scheduler: Sending due task %s (%s)", sending))
    assert quiet.filter(record("celery.app.trace", "Task %(name)s[%(id)s] succeeded", deliver))
    failed = record("celery.app.trace", "Task %(name)s[%(id)s] raised", heartbeat, logging.ERROR)
    assert quiet.filter(failed), "a housekeeping task's failure still shows"
    assert quiet.filter(record("syndicator.delivery", "sweep: %s", ("1 enqueued",)))


def test_the_filter_is_on_the_handlers_celery_sets_up() -> None:
    logger = logging.Logger("root-like")
    handler = logging.StreamHandler()
    logger.addHandler(handler)
    _quiet_housekeeping(logger=logger)
    _quiet_housekeeping(logger=logger)  # once, however often celery sets logging up
    assert [type(f) for f in handler.filters] == [QuietHousekeeping]
