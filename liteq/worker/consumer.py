"""The consumer loop: claim a batch, run it, settle it grouped.

It runs in the worker's main process for the ``solo`` and ``threads`` pools, and in
every ``prefork`` child (with a solo pool), so there is one loop to reason about.
One iteration::

    collect finished tasks
    -> when due, settle them and claim up to the free capacity, in one transaction
    -> start claimed tasks on free pool slots
    -> sleep until a task finishes, a wake-up arrives, an eta or a settle comes due

Finished tasks are settled together, so a batch of short tasks costs one transaction,
but never later than ``SETTLE_AFTER`` (a long task's result is stored as it finishes).
When the store refuses a write (:class:`liteq.OperationalError`: its write lock held
past ``sqlite_busy_timeout``, a full disk, Redis down past its retry bound), the loop
keeps the finished outcomes, retries with backoff (``RETRY_FIRST`` to ``RETRY_MAX``)
and carries on by itself once the store takes writes again; running tasks go on.
Heartbeats and lease renewal run beside the loop (``housekeeping.py``). Both clocks
are injected: ``clock`` (monotonic: settle and recheck delays) and ``wall`` (epoch
seconds: when the next scheduled message is due); ``step(now)`` takes the monotonic
time from its caller, so tests drive the loop without processes or sleeps
(``tests/unit/test_consumer.py``).
"""

from __future__ import annotations

import logging
import random
import selectors
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from liteq.exceptions import OperationalError
from liteq.execute import DEFERRED, IGNORED, REJECTED
from liteq.states import FAILURE, RETRY, REVOKED, SUCCESS
from liteq.transports.base import Delivery, LostTaskPolicy, Settlement
from liteq.worker.pool import Finished, Pool

if TYPE_CHECKING:
    from liteq.app import LiteQ

logger = logging.getLogger("liteq.worker")
task_logger = logging.getLogger("liteq.worker.task")

#: Longest sleep when idle; wake-ups usually end it far sooner.
IDLE_WAIT = 2.0
#: Longest a finished task waits for others to share its settling transaction.
SETTLE_AFTER = 0.002
#: Claim about this much work at once (seconds of task runtime), within the free
#: capacity: tiny tasks are claimed by the dozen (one transaction for many), long ones
#: one at a time (so a slow task never hides others from idle processes).
CLAIM_WINDOW = 0.02
#: After a wake-up that found nothing (a publish not yet committed), look again at these
#: delays (seconds).
RECHECKS = (0.005, 0.05, 0.5)
#: How often a paused loop looks whether it may go on (seconds).
PAUSE_CHECK = 0.25
#: First and longest pause before writing again to a store that refused a write (s).
RETRY_FIRST, RETRY_MAX = 0.1, 5.0
#: A stopping worker gives up settling after the store refused writes this long (s):
#: what is left follows the lease rules (run again with acks_late, else FAILURE).
STOP_SETTLE_TIMEOUT = 30.0


class Tracker(Protocol):
    """Tells a supervisor which leases a pool process may have started."""

    def started(self, delivery: Delivery) -> None: ...

    def finished(self, delivery: Delivery) -> None: ...

    def settled(self, deliveries: Sequence[Delivery]) -> None: ...


class _NoTracker:
    def started(self, delivery: Delivery) -> None:
        pass

    def finished(self, delivery: Delivery) -> None:
        pass

    def settled(self, deliveries: Sequence[Delivery]) -> None:
        pass


class Consumer:
    """Claims tasks for one process and feeds them to its pool.

    Example:
        >>> consumer = Consumer(app, pool, ["celery"], "w1@host:1:ab", capacity=8,
        ...                     lease=60, policy=policy)  # doctest: +SKIP
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
        tracker: Tracker | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.transport = app.broker
        self.pool = pool
        self.queues = list(queues)
        self.worker_id = worker_id
        self.capacity = capacity
        self.lease = lease
        self.policy = policy
        self.tracker = tracker or _NoTracker()
        self.clock = clock
        self.wall = wall
        self.buffer: deque[Delivery] = deque()
        self.finished: list[Finished] = []
        #: finished tasks counted and logged, whose outcome is not written yet
        self.unsettled: list[Finished] = []
        self.stopping: str | None = None
        self.processed = 0
        #: stop (warm) after this many tasks, or when this returns True (recycling)
        self.max_tasks: int | None = None
        self.recycle_when: Callable[[], bool] | None = None
        #: called before each claim and before tasks start (a prefork child applies the
        #: remote control commands sent so far, so no task runs under the old options,
        #: prefetched ones included)
        self.before_claim: Callable[[], None] | None = None
        #: True while this process must neither claim nor start tasks (a prefork child
        #: whose worker's main process stopped heartbeating: its leases are not renewed)
        self.paused_when: Callable[[], bool] | None = None
        self._paused = False
        self._first_finished = 0.0
        self._runtime: float | None = None  # moving average of task run time
        self._selector = selectors.DefaultSelector()
        self._handlers: dict[int, Callable[[], None]] = {}
        self._pool_fds: set[int] = set()
        self._pool_generation = -1
        self.transport.worker_mode()
        self._listener = self.transport.listen(self.queues)
        self._selector.register(self._listener.fileno(), selectors.EVENT_READ, "wake")
        self._want_claim = True
        self._next_eta: float | None = None
        self._rechecks: list[float] = []
        #: while the store refuses writes: when it first did, when to write again
        self._failing_since: float | None = None
        self._retry_at = 0.0
        self._retry_delay = RETRY_FIRST

    # -- the loop --------------------------------------------------------------------

    def run(self) -> None:
        """Loop until a cold stop, or a warm stop once running tasks have settled."""
        while not self._done():
            self.step()

    def step(self, now: float | None = None, *, wait: bool = True) -> None:
        """One iteration of the loop. Tests drive it with their own clock (``now``,
        monotonic seconds) and ``wait=False`` (look at wake-ups, never sleep)."""
        now = self.clock() if now is None else now
        self._check_paused()
        self._collect(now)
        self._settle_and_claim(now)
        self._dispatch()
        self._wait(now, self.timeout(now) if wait else 0.0)

    def stop(self, how: str) -> None:
        """``"warm"``: stop claiming, finish running tasks. ``"cold"``: stop now."""
        self.stopping = how if self.stopping != "cold" else "cold"

    def set_queues(self, queues: Sequence[str]) -> None:
        """Consume from ``queues`` from now on (``add_consumer``, ``cancel_consumer``);
        tasks already claimed still run."""
        self.queues = list(queues)
        self._selector.unregister(self._listener.fileno())
        self._listener.close()
        self._listener = self.transport.listen(self.queues)
        self._selector.register(self._listener.fileno(), selectors.EVENT_READ, "wake")
        self._want_claim = True
        self._next_eta = None

    def watch(self, fd: int, handler: Callable[[], None]) -> None:
        """Call ``handler`` when ``fd`` becomes readable (signal and control pipes)."""
        self._handlers[fd] = handler
        self._selector.register(fd, selectors.EVENT_READ, "handler")

    def _done(self) -> bool:
        # Warm: once running tasks are settled; prefetched ones (``buffer``) never start
        # and go back to the queue (return_prefetched), as in Celery.
        if self.stopping == "cold":
            return True
        if self.stopping != "warm" or self.pool.running():
            return False
        if not (self.finished or self.unsettled):
            return True
        return self._failing_since is not None and self._give_up(self.clock())

    def _give_up(self, now: float) -> bool:
        """Stopping, and the store has refused writes for too long: stop anyway."""
        if self._failing_since is None or now - self._failing_since < STOP_SETTLE_TIMEOUT:
            return False
        left = [*self.finished, *self.unsettled]
        if left:
            logger.error("stopping with %d finished task(s) whose outcome could not be "
                         "stored (the store refused writes for %.0fs); they follow the "
                         "lease rules: run again with acks_late, else FAILURE "
                         "(WorkerLostError)", len(left), now - self._failing_since)
        return True

    # -- settling and claiming -------------------------------------------------------

    def _collect(self, now: float) -> None:
        finished = self.pool.collect()
        if finished:
            for item in finished:
                self.tracker.finished(item.delivery)
            if not self.finished:
                self._first_finished = now
            self.finished.extend(finished)

    def _held(self) -> int:
        # (``unsettled`` is not counted: a claim settles all of it in its transaction)
        return len(self.buffer) + len(self.pool.running()) + len(self.finished)

    def _free_capacity(self) -> int:
        if self.stopping:
            return 0
        return max(0, self.capacity - self._held())

    def _claim_limit(self) -> int:
        """How many to claim: the free capacity, less when tasks take long."""
        free = self._free_capacity()
        idle = self.pool.free() if not self.buffer else 0
        if self._runtime is None:
            return min(free, max(1, idle))  # learn how long tasks take first
        batch = int(CLAIM_WINDOW / max(self._runtime, 1e-6))
        return min(free, max(1, idle, batch))

    def _settle_due(self, now: float) -> bool:
        if not self.finished:
            return False
        idle = not self.buffer and not self.pool.running()
        return (idle or self.stopping is not None or len(self.finished) >= self.capacity
                or now - self._first_finished >= SETTLE_AFTER)

    def _settle_and_claim(self, now: float) -> None:
        if self._failing_since is not None and now < self._retry_at:
            return  # the store refused the last write: wait for the retry
        if self._settle_due(now):
            finished, self.finished = self.finished, []
            self._account(finished)
            self.unsettled.extend(finished)
        due = self._claim_due(now)
        try:
            self._write(due)
        except OperationalError as exc:
            self._store_refused(now, exc)
            return
        if self._failing_since is not None:
            logger.warning("the store takes writes again (after %.1fs): settling and "
                           "claiming resumed", now - self._failing_since)
            self._failing_since, self._retry_delay = None, RETRY_FIRST
        self._check_recycling()

    def _write(self, due: bool) -> None:
        """Settle what finished and claim up to the free capacity (when ``due``)."""
        lost = [item.delivery for item in self.unsettled if item.outcome is None]
        if lost:
            report = self.transport.lose(lost, self.policy)
            self.unsettled = [item for item in self.unsettled if item.outcome is not None]
            self.tracker.settled(lost)
            _log_lost(report.requeued, report.failed)
        if due and self.before_claim is not None:
            self.before_claim()
        limit = self._claim_limit() if due else 0
        finished = self.unsettled
        if not finished and limit == 0:
            return
        settlements = self.app.outcome_store.settlements(
            [(item.delivery, item.outcome) for item in finished if item.outcome is not None])
        accepted, claimed = self.transport.settle_and_claim(
            settlements, self.queues, limit, self.worker_id, self.lease
        )
        self.unsettled = []
        self.tracker.settled([item.delivery for item in finished])
        for settlement, ok in zip(settlements, accepted, strict=True):
            if not ok and not settlement.release:
                held = settlement.delivery
                logger.warning("lease of %s[%s] was lost (taken over after it expired); "
                               "its outcome is discarded", getattr(held, "task_name", "?"),
                               getattr(held, "task_id", "?"))
        self.buffer.extend(claimed)
        if limit > 0:
            self._want_claim = len(claimed) == limit
            if not claimed and self._next_eta is None:
                self._next_eta = self.transport.next_eta(self.queues)

    def _store_refused(self, now: float, exc: OperationalError) -> None:
        """Keep the outcomes, retry later with backoff (jittered, up to RETRY_MAX)."""
        self._want_claim = True
        if self._failing_since is None:
            self._failing_since = now
            logger.error("the store refused a write: %s; keeping %d finished task(s) and "
                         "retrying (running tasks go on)", exc, len(self.unsettled))
        else:
            logger.debug("the store still refuses writes: %s", exc)
        self._retry_at = now + self._retry_delay * (0.5 + random.random())
        self._retry_delay = min(self._retry_delay * 2, RETRY_MAX)

    def _check_paused(self) -> None:
        paused = self.paused_when is not None and self.paused_when()
        if paused == self._paused:
            return
        self._paused = paused
        if paused:
            logger.warning("the worker's main process stopped heartbeating (its leases are "
                           "not renewed): not claiming or starting tasks until it does")
        else:
            logger.warning("the worker's main process heartbeats again: claiming resumed")
            self._want_claim = True

    def _claim_due(self, now: float) -> bool:
        if self._paused:
            return False
        if self._next_eta is not None and self.wall() >= self._next_eta:
            self._next_eta = None
            return True
        if self._rechecks and now >= self._rechecks[0]:
            self._rechecks.pop(0)
            return True
        return self._want_claim

    def _account(self, finished: list[Finished]) -> None:
        """Count and log finished tasks (once, however often settling them is retried)."""
        for item in finished:
            self.processed += 1
            outcome = item.outcome
            if outcome is None:
                continue
            _log_outcome(item.delivery, outcome.state, outcome.runtime, outcome.summary,
                         outcome.record.traceback if outcome.record else None)
            if outcome.state != DEFERRED:
                runtime = outcome.runtime
                self._runtime = runtime if self._runtime is None else \
                    0.8 * self._runtime + 0.2 * runtime
        if finished:
            self._want_claim = True

    def _check_recycling(self) -> None:
        if self.stopping:
            return
        if (self.max_tasks and self.processed >= self.max_tasks) or \
                (self.recycle_when is not None and self.recycle_when()):
            self.stop("warm")

    # -- dispatching and waiting -----------------------------------------------------

    def _dispatch(self) -> None:
        if self.buffer and self.before_claim is not None and self.pool.free() > 0:
            self.before_claim()
        while self.buffer and self.pool.free() > 0 and not self.stopping and not self._paused:
            delivery = self.buffer.popleft()
            self.tracker.started(delivery)
            self.pool.dispatch(delivery)
        self._sync_pool_fds()

    def _sync_pool_fds(self) -> None:
        if self.pool.generation == self._pool_generation:
            return
        for fd in self._pool_fds:
            self._selector.unregister(fd)
        self._pool_fds = set(self.pool.fds())
        for fd in self._pool_fds:
            self._selector.register(fd, selectors.EVENT_READ, "pool")
        self._pool_generation = self.pool.generation

    def timeout(self, now: float) -> float:
        """How long the loop may sleep now (0.0: there is work to do)."""
        if self.pool.has_results():
            return 0.0
        if self._paused:
            return PAUSE_CHECK
        if self.buffer and self.pool.free() > 0 and not self.stopping:
            return 0.0
        if self._failing_since is not None:  # the store refused writes: wait to retry
            return max(0.0, min(IDLE_WAIT, self._retry_at - now))
        if self._want_claim and self._free_capacity() > 0:
            return 0.0
        timeout = IDLE_WAIT
        if self.finished:
            timeout = min(timeout, max(0.0, self._first_finished + SETTLE_AFTER - now))
        if self._next_eta is not None:
            timeout = min(timeout, max(0.0, self._next_eta - self.wall()))
        if self._rechecks:
            timeout = min(timeout, max(0.0, self._rechecks[0] - now))
        return timeout

    def _wait(self, now: float, timeout: float) -> None:
        if self._done():
            return
        for key, _ in self._selector.select(timeout):
            if key.data == "wake":
                self._listener.drain()
                self._want_claim = True
                self._next_eta = None
                self._rechecks = [now + delay for delay in RECHECKS]
            elif key.data == "handler":
                self._handlers[key.fd]()

    # -- stopping --------------------------------------------------------------------

    def finish(self, finished: list[Finished]) -> None:
        """Settle what is left: collected outcomes and what the pool handed back
        (retrying while the store refuses writes, up to ``STOP_SETTLE_TIMEOUT``)."""
        self.finished.extend(finished)
        self.stopping = self.stopping or "warm"
        while True:
            now = self.clock()
            self._settle_and_claim(now)
            if not (self.finished or self.unsettled) or self._give_up(now):
                return
            time.sleep(max(0.01, min(IDLE_WAIT, self._retry_at - now)))

    def return_prefetched(self) -> None:
        """Give back claimed tasks that never started, without counting a delivery
        (retrying while the store refuses writes, up to ``STOP_SETTLE_TIMEOUT``)."""
        if not self.buffer:
            return
        released = [Settlement(delivery, release=True) for delivery in self.buffer]
        deadline = time.monotonic() + STOP_SETTLE_TIMEOUT
        delay = RETRY_FIRST
        while True:
            try:
                self.transport.settle(released)
                break
            except OperationalError as exc:
                if time.monotonic() >= deadline:
                    logger.error("could not return %d prefetched task(s) to the queue: %s; "
                                 "they come back when their lease expires", len(released),
                                 exc)
                    return
                logger.warning("returning prefetched tasks: %s; retrying", exc)
                time.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
        self.buffer.clear()
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


__all__ = ["Consumer", "Tracker"]
