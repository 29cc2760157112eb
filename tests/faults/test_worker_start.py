"""A worker that starts reports at once: the start page must not call a running worker missing.

The beat-scheduled heartbeat comes SYNDICATOR_HEARTBEAT_INTERVAL after start; celeryproject's
worker_ready handler writes the first one. A real worker process: Celery's in-process test worker
does not send worker_ready.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from syndicator import desk
from syndicator.clock import db_now
from syndicator.models import Heartbeat
from tests.conftest import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]


def test_a_started_worker_reports_before_its_first_heartbeat_is_due(start_worker, settings):
    assert not Heartbeat.objects.exists()
    worker = start_worker(concurrency=1)  # no beat: no heartbeat task is ever sent
    beat = wait_for(lambda: worker.check() or Heartbeat.objects.filter(name="worker").first(), timeout=30)
    assert isinstance(beat, Heartbeat), beat
    assert db_now() - beat.beat_at < timedelta(seconds=settings.SYNDICATOR_HEARTBEAT_INTERVAL)
    assert beat.hostname.startswith("w1-")
    assert desk.liveness().worker_ok
