"""Housekeeping beside the worker loop: heartbeats, lease renewal, reaping, expiry.

It runs in its own thread with its own connection, so it keeps renewing leases while
the loop is busy (a long task in the solo pool included). Renewing is fenced by the
transport: a lease another worker took over is not renewed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from liteq.exceptions import OperationalError
from liteq.transports.base import LostTaskPolicy, Transport

logger = logging.getLogger("liteq.worker")

#: Longest time between result-expiry passes (seconds).
EXPIRE_EVERY = 60.0
#: Results deleted per transaction: each chunk holds the write lock only briefly.
EXPIRE_CHUNK = 1000
#: Longest one expiry pass runs (seconds) before heartbeats get their turn.
EXPIRE_BUDGET = 0.5
#: Pause between passes while a backlog of expired results remains (seconds).
EXPIRE_BACKLOG_PAUSE = 0.05


class Housekeeper(threading.Thread):
    """Heartbeats every ``interval`` seconds; reaps expired leases; expires results;
    and keeps storage in shape between tasks (``Transport.maintain``)."""

    def __init__(
        self,
        broker: Transport,
        backend: Transport,
        worker_id: str,
        *,
        lease: float,
        interval: float,
        policy: LostTaskPolicy,
        info: Callable[[], dict[str, Any]],
        result_expires: float | None = None,
    ) -> None:
        super().__init__(name="liteq-housekeeping", daemon=True)
        self.broker = broker
        self.backend = backend
        self.worker_id = worker_id
        self.lease = lease
        self.interval = interval
        self.policy = policy
        self.info = info
        self._stop_event = threading.Event()
        #: called after each heartbeat the store took (prefork children watch it)
        self.on_beat: Callable[[], None] | None = None
        #: held while this thread is inside the database: a fork() must not happen then,
        #: or the child inherits SQLite's mutexes locked and hangs (see Supervisor)
        self.busy = threading.Lock()
        # Short-lived results are swept more often (a pass that finds nothing is one
        # indexed look-up), at most once a second.
        self.expire_every = min(EXPIRE_EVERY, max(1.0, (result_expires or EXPIRE_EVERY) / 2))

    def run(self) -> None:
        now = time.monotonic()
        next_tick = next_expiry = now + self.interval
        next_upkeep = now
        while not self._stop_event.wait(
                max(0.0, min(next_tick, next_upkeep, next_expiry) - now)):
            now = time.monotonic()
            with self.busy:
                if now >= next_upkeep:
                    next_upkeep = now + self._guard(self.broker.maintain, default=1.0)
                if now >= next_tick:
                    self._guard(self.tick)
                    next_tick = now + self.interval
            if now >= next_expiry:
                backlog = self._guard(self.expire, default=False)
                next_expiry = time.monotonic() + (EXPIRE_BACKLOG_PAUSE if backlog
                                                  else self.expire_every)
            now = time.monotonic()

    def _guard(self, action: Callable[[], Any], default: Any = None) -> Any:
        try:
            return action()
        except OperationalError as exc:  # the store refuses writes for now: one line
            logger.error("housekeeping: %s; retrying in %.1fs", exc, self.interval)
            return default
        except Exception:
            logger.exception("housekeeping failed; retrying in %.1fs", self.interval)
            return default

    def tick(self) -> None:
        """One round: heartbeat (renews leases), reap expired leases."""
        self.broker.heartbeat(self.worker_id, self.lease, self.info())
        if self.on_beat is not None:
            self.on_beat()
        report = self.broker.reap_expired(self.policy)
        for task_id in report.requeued:
            logger.warning("task %s: its worker stopped renewing the lease; queued again",
                           task_id)
        for task_id in report.failed:
            logger.error("task %s: its worker stopped renewing the lease; recorded as "
                         "FAILURE (WorkerLostError)", task_id)

    def expire(self, budget: float = EXPIRE_BUDGET) -> bool:
        """Delete expired results in chunks of :data:`EXPIRE_CHUNK`, one short
        transaction each, for up to ``budget`` seconds; so clean-up keeps up with any
        sustained rate. Returns True when a backlog is left (the next pass comes soon)."""
        deadline = time.monotonic() + budget
        removed = 0
        while True:
            with self.busy:
                chunk = self.backend.expire_results(EXPIRE_CHUNK)
            removed += chunk
            if chunk < EXPIRE_CHUNK or time.monotonic() >= deadline or \
                    self._stop_event.is_set():
                break
        if removed:
            logger.info("removed %d expired result(s)", removed)
        return chunk >= EXPIRE_CHUNK

    def stop(self) -> None:
        # Its connection is per thread and closes when the thread ends.
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=10)


__all__ = ["Housekeeper"]
