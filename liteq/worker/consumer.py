"""The worker's main loop: settle and claim, dispatch, wait.

One iteration::

    collect finished tasks (and supervise the pool)
    -> settle them and claim up to the free capacity, in one transaction
    -> hand claimed tasks to free pool slots
    -> sleep until a task finishes, a wake-up arrives, an eta comes due, or a signal

Heartbeats, lease renewal and reaping run beside it (``housekeeping.py``), so a long
task in the solo pool never lets its lease run out. The clock is injectable.
"""

from __future__ import annotations

import logging
import selectors
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from liteq.execute import IGNORED, REJECTED
from liteq.states import FAILURE, RETRY, REVOKED, SUCCESS
from liteq.transports.base import Delivery, LostTaskPolicy, Settlement
from liteq.worker.pool import Finished, Pool

if TYPE_CHECKING:
    from liteq.app import LiteQ

logger = logging.getLogger("liteq.worker")
task_logger = logging.getLogger("liteq.worker.task")

#: Longest sleep when idle; wake-ups usually end it far sooner.
IDLE_WAIT = 2.0
#: After a wake-up that found nothing (a publish not yet committed), look again at these
#: delays (seconds).
RECHECKS = (0.005, 0.05, 0.5)


class Consumer:
    """Claims tasks for one worker and feeds them to its pool.

    Example:
        >>> consumer = Consumer(app, pool, ["celery"], "w1@host", capacity=8, lease=60,
        ...                     policy=policy)  # doctest: +SKIP
        >>> consumer.run()  # until stop("warm") or stop("cold")  # doctest: +SKIP
    """

    def __init__(
        self,
        app: LiteQ,
        pool: Pool,
        queues: Sequence[str],
        worker_id: str,
        *,
        capacity: int,
        lease: float,
        policy: LostTaskPolicy,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.transport = app.broker
        self.pool = pool
        self.queues = list(queues)
        self.worker_id = worker_id
        self.capacity = capacity
        self.lease = lease
        self.policy = policy
        self.clock = clock
        self.buffer: deque[Delivery] = deque()
        self.stopping: str | None = None
        self.processed = 0
        self._selector = selectors.DefaultSelector()
        self._pool_fds: set[int] = set()
        self._pool_generation = -1
        self._listener = self.transport.listen(self.queues)
        self._selector.register(self._listener.fileno(), selectors.EVENT_READ, "wake")
        self._want_claim = True
        self._next_eta: float | None = None
        self._rechecks: list[float] = []

    # -- the loop --------------------------------------------------------------------

    def run(self) -> None:
        """Loop until a cold stop, or a warm stop once running tasks have finished."""
        while not self._done():
            self.step()

    def step(self, now: float | None = None) -> None:
        """One iteration of the loop (tests drive it with their own clock)."""
        now = self.clock() if now is None else now
        finished = self.pool.collect() + self.pool.check(now)
        self._settle_and_claim(finished, now)
        self._dispatch()
        self._wait(now)

    def stop(self, how: str) -> None:
        """``"warm"``: stop claiming, finish running tasks. ``"cold"``: stop now."""
        self.stopping = how if self.stopping != "cold" else "cold"

    def add_signal_fd(self, fd: int) -> None:
        """Wake the loop when ``fd`` becomes readable (the signal self-pipe)."""
        self._selector.register(fd, selectors.EVENT_READ, "signal")

    def _done(self) -> bool:
        if self.stopping == "cold":
            return True
        return self.stopping == "warm" and not self.pool.running() and not self.buffer

    # -- settling and claiming -------------------------------------------------------

    def _free_capacity(self) -> int:
        if self.stopping:
            return 0
        return max(0, self.capacity - len(self.buffer) - len(self.pool.running()))

    def _settle_and_claim(self, finished: list[Finished], now: float) -> None:
        settlements, lost = self._settlements(finished)
        if lost:
            report = self.transport.lose(lost, self.policy)
            _log_lost(report.requeued, report.failed)
        limit = self._free_capacity() if self._claim_due(now) else 0
        if not settlements and limit == 0:
            return
        accepted, claimed = self.transport.settle_and_claim(
            settlements, self.queues, limit, self.worker_id, self.lease
        )
        for settlement, ok in zip(settlements, accepted):
            if not ok and not settlement.release:
                logger.warning("lease of %s[%s] was lost (taken over after it expired); "
                               "its outcome is discarded", settlement.delivery.task_name,
                               settlement.delivery.task_id)
        self.buffer.extend(claimed)
        self._want_claim = limit > 0 and len(claimed) == limit
        if limit > 0 and not claimed and self._next_eta is None:
            self._next_eta = self.transport.next_eta(self.queues)

    def _claim_due(self, now: float) -> bool:
        wall = time.time()
        if self._next_eta is not None and wall >= self._next_eta:
            self._next_eta = None
            return True
        if self._rechecks and now >= self._rechecks[0]:
            self._rechecks.pop(0)
            return True
        return self._want_claim

    def _settlements(self, finished: list[Finished]) -> tuple[list[Settlement], list[Delivery]]:
        settlements, lost = [], []
        records = []
        separate_results = not self.app.results_with_broker
        for item in finished:
            self.processed += 1
            outcome = item.outcome
            if outcome is None:
                lost.append(item.delivery)
                continue
            _log_outcome(item.delivery, outcome.state, outcome.runtime, outcome.summary,
                         outcome.record.traceback if outcome.record else None)
            record = outcome.record
            if separate_results and record is not None:
                records.append(record)
                record = None
            settlements.append(Settlement(item.delivery, record, outcome.publish,
                                          release=outcome.requeue))
        if records:  # results live elsewhere: store them before acking (at least once)
            self.app.backend.store_results(records)
        if finished:
            self._want_claim = True
        return settlements, lost

    # -- dispatching and waiting -----------------------------------------------------

    def _dispatch(self) -> None:
        while self.buffer and self.pool.free() > 0:
            self.pool.dispatch(self.buffer.popleft())
        self._sync_pool_fds()

    def _sync_pool_fds(self) -> None:
        # A respawned child may reuse a closed descriptor's number: compare generations,
        # not numbers, and register everything again when the pool changed.
        if self.pool.generation == self._pool_generation:
            return
        for fd in self._pool_fds:
            self._selector.unregister(fd)
        self._pool_fds = set(self.pool.fds())
        for fd in self._pool_fds:
            self._selector.register(fd, selectors.EVENT_READ, "pool")
        self._pool_generation = self.pool.generation

    def _timeout(self, now: float) -> float:
        if self.pool.has_results() or (self._want_claim and self._free_capacity() > 0):
            return 0.0
        timeout = IDLE_WAIT
        if self._next_eta is not None:
            timeout = min(timeout, max(0.0, self._next_eta - time.time()))
        if self._rechecks:
            timeout = min(timeout, max(0.0, self._rechecks[0] - now))
        deadline = self.pool.next_deadline()
        if deadline is not None:
            timeout = min(timeout, max(0.0, deadline - now))
        return timeout

    def _wait(self, now: float) -> None:
        if self._done():
            return
        for key, _ in self._selector.select(self._timeout(now)):
            if key.data == "wake":
                self._listener.drain()
                self._want_claim = True
                self._next_eta = None
                self._rechecks = [now + delay for delay in RECHECKS]

    def settle_final(self, finished: list[Finished]) -> None:
        """Settle what the pool handed back while stopping (lost tasks included)."""
        if finished:
            self._settle_and_claim(finished, self.clock())

    def return_prefetched(self) -> None:
        """Give back claimed tasks that never started, without counting a delivery."""
        if not self.buffer:
            return
        released = [Settlement(delivery, release=True) for delivery in self.buffer]
        self.buffer.clear()
        self.transport.settle(released)
        logger.info("returned %d prefetched task(s) to the queue", len(released))

    def close(self) -> None:
        self._selector.close()
        self._listener.close()


def _log_outcome(delivery: Delivery, state: str, runtime: float, summary: str,
                 traceback: str | None) -> None:
    name, task_id = delivery.task_name, delivery.task_id
    if state == SUCCESS:
        if task_logger.isEnabledFor(logging.INFO):
            task_logger.info("Task %s[%s] succeeded in %.6fs: %s", name, task_id, runtime,
                             summary)
    elif state == FAILURE:
        task_logger.error("Task %s[%s] raised unexpected: %s\n%s", name, task_id, summary,
                          traceback or "")
    elif state == RETRY:
        task_logger.info("Task %s[%s] retry: %s", name, task_id, summary)
    elif state == REVOKED:
        task_logger.info("Task %s[%s] revoked: %s", name, task_id, summary)
    elif state in (IGNORED, REJECTED):
        task_logger.info("Task %s[%s] %s", name, task_id, summary)


def _log_lost(requeued: list[str], failed: list[str]) -> None:
    for task_id in requeued:
        logger.warning("task %s lost its worker process: queued again (acks_late)", task_id)
    for task_id in failed:
        logger.error("task %s lost its worker process: recorded as FAILURE "
                     "(WorkerLostError)", task_id)


__all__ = ["Consumer"]
