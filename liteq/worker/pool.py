"""Pools run claimed tasks: ``solo`` (in the main loop), ``threads``, ``prefork``.

Every pool runs a task through :func:`liteq.worker.running.run_delivery` and hands back a
:class:`Finished` per task; the consumer settles them. The prefork pool lives in
``supervisor.py``.
"""

from __future__ import annotations

import abc
import logging
import os
import queue
import threading
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from liteq.execute import Outcome
from liteq.transports.base import Delivery
from liteq.worker.running import run_delivery

if TYPE_CHECKING:
    from liteq.app import LiteQ
    from liteq.worker.spec import AppSpec

logger = logging.getLogger(__name__)


@dataclass
class Finished:
    """A task the pool is done with: its outcome, or None when its process was lost."""

    delivery: Delivery
    outcome: Outcome | None
    reason: str = ""


@dataclass(frozen=True)
class PoolOptions:
    """What a pool needs besides the app (plain values: children receive them)."""

    hostname: str
    max_tasks_per_child: int | None = None
    max_memory_per_child: int | None = None  # KiB, as in Celery
    start_method: str | None = None
    loglevel: int = logging.WARNING
    logformat: str = "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s"
    logfile: str | None = None
    #: the level print() in tasks is logged at (None: stdout is left alone)
    redirect_stdouts: str | None = None
    #: worker-wide limits for tasks that set none (``--time-limit``/``--soft-time-limit``)
    time_limit: float | None = None
    soft_time_limit: float | None = None


class Pool(abc.ABC):
    """Runs up to ``concurrency`` tasks at once."""

    name: ClassVar[str]

    def __init__(self, app: LiteQ, spec: AppSpec, concurrency: int, options: PoolOptions):
        #: changes whenever ``fds()`` may have changed (a child replaced)
        self.generation = 0
        self.app = app
        self.spec = spec
        self.concurrency = concurrency
        self.options = options
        self.find_task = app.task_finder(import_on_demand=spec.import_on_demand)

    def start(self) -> None:  # noqa: B027 - optional
        """Start processes or threads."""

    @abc.abstractmethod
    def free(self) -> int:
        """How many more tasks can start now."""

    @abc.abstractmethod
    def dispatch(self, delivery: Delivery) -> None:
        """Start running a task (``free()`` must be positive)."""

    @abc.abstractmethod
    def collect(self) -> list[Finished]:
        """Tasks finished since the last call (never blocks)."""

    @abc.abstractmethod
    def running(self) -> list[Delivery]:
        """Tasks dispatched and not yet collected."""

    def fds(self) -> list[int]:
        """File descriptors that become readable when ``collect()``/``check()`` has news."""
        return []

    def has_results(self) -> bool:
        """True when ``collect()`` would return something without waiting."""
        return False

    def check(self, now: float) -> list[Finished]:
        """Supervise: enforce hard time limits, notice dead processes."""
        return []

    @abc.abstractmethod
    def stop(self, cold: bool) -> list[Finished]:
        """Stop. Warm: running tasks are done (the consumer waited). Cold: abandon them;
        they come back as lost."""

    def run(self, delivery: Delivery, *, hard_limit: bool) -> Outcome:
        """Run one task in this process (solo and thread pools)."""
        options = self.options
        return run_delivery(self.app, delivery, options.hostname, self.find_task,
                            hard_limit=hard_limit,
                            default_limits=(options.soft_time_limit, options.time_limit))


class SoloPool(Pool):
    """Runs each task in the worker's main loop: one at a time, no extra process."""

    name = "solo"

    def __init__(self, app: LiteQ, spec: AppSpec, concurrency: int, options: PoolOptions,
                 *, hard_limit_in_process: bool = True) -> None:
        super().__init__(app, spec, 1, options)
        #: raise TimeLimitExceeded in the task (a prefork child's supervisor kills instead)
        self.hard_limit_in_process = hard_limit_in_process
        self._done: list[Finished] = []
        self._current: Delivery | None = None

    def free(self) -> int:
        return 0 if self._done or self._current else 1

    @property
    def busy(self) -> bool:
        """A task is running now (this process is inside it)."""
        return self._current is not None

    def dispatch(self, delivery: Delivery) -> None:
        # A cold shutdown interrupts the task by raising out of here: _current stays set
        # so stop() reports the task as lost.
        self._current = delivery
        outcome = self.run(delivery, hard_limit=self.hard_limit_in_process)
        self._current = None
        self._done.append(Finished(delivery, outcome))

    def collect(self) -> list[Finished]:
        done, self._done = self._done, []
        return done

    def has_results(self) -> bool:
        return bool(self._done)

    def running(self) -> list[Delivery]:
        current = [self._current] if self._current is not None else []
        return [finished.delivery for finished in self._done] + current

    def stop(self, cold: bool) -> list[Finished]:
        finished = self.collect()
        if self._current is not None:
            finished.append(Finished(self._current, None, "cold shutdown"))
            self._current = None
        return finished


class ThreadPool(Pool):
    """Runs tasks in threads of the worker's process (good for I/O-bound tasks).

    Time limits are raised inside the task's thread; a thread cannot be killed, so a
    task stuck in C code outlives its hard limit.
    """

    name = "threads"

    def __init__(self, app: LiteQ, spec: AppSpec, concurrency: int, options: PoolOptions):
        super().__init__(app, spec, concurrency, options)
        self._work: queue.SimpleQueue[Delivery | None] = queue.SimpleQueue()
        self._done: deque[Finished] = deque()
        self._inflight: dict[Any, Delivery] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)

    def start(self) -> None:
        for index in range(self.concurrency):
            thread = threading.Thread(target=self._loop, name=f"ThreadPoolWorker-{index + 1}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)

    def _loop(self) -> None:
        while True:
            delivery = self._work.get()
            if delivery is None:
                return
            try:
                outcome = self.run(delivery, hard_limit=True)
            except BaseException as exc:  # a bug in liteq itself: report, never hang
                logger.exception("internal error running %s", delivery.task_name)
                outcome = Outcome("FAILURE", summary=f"internal error: {exc!r}")
            self._done.append(Finished(delivery, outcome))
            os.write(self._write_fd, b"\0")

    def free(self) -> int:
        return self.concurrency - len(self._inflight)

    def dispatch(self, delivery: Delivery) -> None:
        self._inflight[delivery.key] = delivery
        self._work.put(delivery)

    def collect(self) -> list[Finished]:
        try:
            while os.read(self._read_fd, 4096):
                pass
        except BlockingIOError:
            pass
        done = []
        while self._done:
            finished = self._done.popleft()
            self._inflight.pop(finished.delivery.key, None)
            done.append(finished)
        return done

    def fds(self) -> list[int]:
        return [self._read_fd]

    def has_results(self) -> bool:
        return bool(self._done)

    def running(self) -> list[Delivery]:
        return list(self._inflight.values())

    def stop(self, cold: bool) -> list[Finished]:
        for _ in self._threads:
            self._work.put(None)
        if not cold:
            for thread in self._threads:
                thread.join()
        done = self.collect()
        lost = [Finished(d, None, "cold shutdown") for d in self._inflight.values()]
        self._inflight.clear()
        os.close(self._read_fd)
        os.close(self._write_fd)
        return done + lost


__all__ = ["Finished", "Pool", "PoolOptions", "SoloPool", "ThreadPool"]
