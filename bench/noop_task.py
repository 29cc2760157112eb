"""The bare Celery task bench/deliveries.py compares deliveries with (loaded by the worker's --include).

Its only work is one Redis INCR, so the bench can tell when every one of them ran.
"""

from __future__ import annotations

import os

import redis

from celeryproject import app

_client = redis.Redis.from_url(app.conf.broker_url)


@app.task(name="bench.noop")
def noop(_n: int) -> None:
    _client.incr(os.environ["BENCH_NOOP_COUNTER"])
