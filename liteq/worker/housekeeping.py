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

from liteq.messages import Envelope
from liteq.transports.base import LostTaskPolicy, ResultRecord, Transport

logger = logging.getLogger("liteq.worker")

#: Longest time between result-expiry passes (seconds).
EXPIRE_EVERY = 60.0


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
        unreachable: Callable[[Envelope, str], ResultRecord] | None = None,
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
        #: held while this thread is inside the database: a fork() must not happen then,
        #: or the child inherits SQLite's mutexes locked and hangs (see Supervisor)
        self.busy = threading.Lock()
        self._last_expiry = 0.0
        #: the record of a stored message no claim can serve (None: leave them)
        self.unreachable = unreachable
        self._last_unreachable: float | None = None
        # Short-lived results are swept more often, but never more than once a tick.
        self.expire_every = min(EXPIRE_EVERY, max(interval, (result_expires or EXPIRE_EVERY) / 2))

    def run(self) -> None:
        now = time.monotonic()
        next_tick, next_upkeep = now + self.interval, now
        while not self._stop_event.wait(max(0.0, min(next_tick, next_upkeep) - now)):
            now = time.monotonic()
            with self.busy:
                if now >= next_upkeep:
                    next_upkeep = now + self._guard(self.broker.maintain, default=1.0)
                if now >= next_tick:
                    self._guard(self.tick)
                    next_tick = now + self.interval
            now = time.monotonic()

    def _guard(self, action: Callable[[], Any], default: Any = None) -> Any:
        try:
            return action()
        except Exception:
            logger.exception("housekeeping failed; retrying in %.1fs", self.interval)
            return default

    def tick(self) -> None:
        """One round: heartbeat (renews leases), reap expired leases, fail unreachable
        messages (at the first round, then every minute), expire results."""
        self.broker.heartbeat(self.worker_id, self.lease, self.info())
        report = self.broker.reap_expired(self.policy)
        for task_id in report.requeued:
            logger.warning("task %s: its worker stopped renewing the lease; queued again",
                           task_id)
        for task_id in report.failed:
            logger.error("task %s: its worker stopped renewing the lease; recorded as "
                         "FAILURE (WorkerLostError)", task_id)
        now = time.monotonic()
        if self.unreachable is not None and (
                self._last_unreachable is None or now - self._last_unreachable >= EXPIRE_EVERY):
            self._last_unreachable = now
            for task_id in self.broker.fail_unreachable(self.unreachable):
                logger.error("task %s: its stored message can never be claimed; recorded as "
                             "FAILURE", task_id)
        if now - self._last_expiry >= self.expire_every:
            self._last_expiry = now
            removed = self.backend.expire_results()
            if removed:
                logger.info("removed %d expired result(s)", removed)

    def stop(self) -> None:
        # Its connection is per thread and closes when the thread ends.
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=10)


__all__ = ["Housekeeper"]
