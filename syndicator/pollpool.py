"""Fetching many feeds at once: a pool of fetch threads with a limit per host (docs/design.md,
"Polling many feeds").

A poll spends its time waiting for the feed's server (200 ms is common, seconds happen), not
computing, so the feeds worker keeps many fetches in flight: SYNDICATOR_POLL_CONCURRENCY threads
per worker process, each running one guarded fetch (syndicator/feedhttp.py) at a time, with no
database access (the task's own thread stores the results, one at a time). No host gets more than
SYNDICATOR_POLL_PER_HOST of them: the feeds of a slow site wait in that site's own queue, not in
front of everyone else's, so one slow site cannot take all the threads.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple["Future[Any]", Callable[[], Any]]


class HostLimitedPool:
    """Runs callables on `concurrency` threads, at most `per_host` at a time per host key.

    A job over its host's limit waits in that host's queue and starts when one of the host's jobs
    ends; only jobs within their host's limit are handed to the threads. A waiting job's future
    can be cancelled (``Future.cancel``) and is then never run.
    """

    def __init__(self, *, concurrency: int, per_host: int) -> None:
        self.concurrency = max(int(concurrency), 1)
        self.per_host = max(int(per_host), 1)
        self._executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="poll")
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}
        self._waiting: dict[str, deque[_Job]] = {}

    def submit(self, host: str, work: Callable[[], T]) -> Future[T]:
        """Run work() when its host has a free slot; its future holds the result or exception."""
        future: Future[T] = Future()
        with self._lock:
            running = self._running.get(host, 0)
            if running >= self.per_host:
                self._waiting.setdefault(host, deque()).append((future, work))
                return future
            self._running[host] = running + 1
        self._start(host, future, work)
        return future

    def shutdown(self) -> None:
        """Take no more jobs; those started or waiting still run, then the threads end."""
        self._executor.shutdown(wait=False)

    def _start(self, host: str, future: Future[Any], work: Callable[[], Any]) -> None:
        try:
            self._executor.submit(self._run, host, future, work)
        except RuntimeError as exc:  # shut down (settings changed): the job fails, its slot frees
            if future.set_running_or_notify_cancel():
                future.set_exception(exc)
            self._next(host)

    def _run(self, host: str, future: Future[Any], work: Callable[[], Any]) -> None:
        try:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(work())
                except BaseException as exc:  # handed to the waiting caller, as an executor does
                    future.set_exception(exc)
        finally:
            self._next(host)

    def _next(self, host: str) -> None:
        """The host's slot is free: start its next waiting job that was not cancelled."""
        while True:
            with self._lock:
                queue = self._waiting.get(host)
                if not queue:
                    self._waiting.pop(host, None)
                    left = self._running[host] - 1
                    if left:
                        self._running[host] = left
                    else:
                        del self._running[host]
                    return
                future, work = queue.popleft()
            if future.cancelled():
                continue  # the slot stays taken: look at the next one
            self._start(host, future, work)
            return


_pool: HostLimitedPool | None = None
_pool_lock = threading.Lock()


def shared() -> HostLimitedPool:
    """This process's fetch pool, made on first use with the settings' sizes (and made again if
    they change: the old one finishes its jobs and its threads end)."""
    global _pool
    from django.conf import settings

    sizes = (max(settings.SYNDICATOR_POLL_CONCURRENCY, 1), max(settings.SYNDICATOR_POLL_PER_HOST, 1))
    with _pool_lock:
        if _pool is None or (_pool.concurrency, _pool.per_host) != sizes:
            if _pool is not None:
                _pool.shutdown()
            _pool = HostLimitedPool(concurrency=sizes[0], per_host=sizes[1])
        return _pool
