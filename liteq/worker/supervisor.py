"""The prefork pool: child processes that each run the consumer loop, supervised
(the child's side is ``child.py``).

Each child claims its own batches (up to ``worker_prefetch_multiplier`` tasks), runs
them, and settles them grouped, in its own connection: no task travels over a pipe.
The main process supervises through one small shared-memory *slot* per child, where the
child writes which leases it may have started and what runs now (a seqlock keeps reads
consistent). With it the main process:

* kills a child that runs past a task's hard time limit and records that task as
  FAILURE with ``TimeLimitExceeded``;
* notices a child that died: the leases it had started are *lost* (run again when
  ``acks_late``, else FAILURE with ``WorkerLostError``); the ones it never started go
  back to the queue uncounted;
* replaces children that exit at ``max_tasks_per_child`` / ``max_memory_per_child``;
* stops them warm (finish, return prefetched tasks) or cold (kill).

Children are started with an :class:`AppSpec` and plain options, never live objects,
and open their own database connections, so ``fork``, ``forkserver`` and ``spawn`` all
work. Each child's leases carry the worker's id plus ``/<index>``, so the main process
renews them all with one statement.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import multiprocessing
import os
import random
import selectors
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from liteq import platforms, serialization
from liteq.exceptions import OperationalError, TaskRevokedError, TimeLimitExceeded
from liteq.records import error_record
from liteq.states import FAILURE, REVOKED
from liteq.transports.base import LeaseRef, LostTaskPolicy
from liteq.worker.child import ChildOptions, Slot, SlotWriter, child_main, slot_leases
from liteq.worker.consumer import RETRY_FIRST, RETRY_MAX, STOP_SETTLE_TIMEOUT
from liteq.worker.running import keeping_calls

if TYPE_CHECKING:
    from liteq.app import LiteQ
    from liteq.worker.spec import AppSpec

logger = logging.getLogger("liteq.worker")

#: Children that die this many times in a row before becoming ready stop the worker.
MAX_FAILED_STARTS = 3
#: Seconds to wait for a child that has exited (or was killed) to be reaped.
STOP_GRACE = 10.0
#: Longest the supervisor sleeps between checks.
CHECK_EVERY = 1.0


class PoolStartError(RuntimeError):
    """Children cannot start (the app or its tasks fail to import)."""


# -- the main process's side ---------------------------------------------------------


@dataclass(frozen=True)
class SlotView:
    """What a child's slot said at one instant."""

    running: bool
    started_at: float
    hard_limit: float
    task_id: str
    task_name: str
    leases: list[tuple[Any, Any]]

    @property
    def current(self) -> str:
        return f"{self.task_name}[{self.task_id}]" if self.task_id else "a task"


class _Child:
    """One child process as the supervisor sees it."""

    def __init__(self, index: int, worker_id: str, process: Any, control: Connection,
                 report: Connection, slot: Slot) -> None:
        self.index = index
        self.worker_id = worker_id
        self.process = process
        self.control = control
        self.report = report
        self.slot = slot
        self.killed_for: str | None = None

    def read(self) -> SlotView:
        """A consistent snapshot of the child's slot."""
        slot = self.slot
        for _ in range(1000):
            before = slot.seq
            if before % 2:
                continue
            view = SlotView(bool(slot.running), slot.started_at, slot.hard_limit,
                            slot.task_id.decode(errors="replace"),
                            slot.task_name.decode(errors="replace"), self._leases())
            if slot.seq == before:
                return view
        # The child died half-way through a write: each write replaces the leases list
        # whole, so what is there is still one consistent list (or unreadable: empty).
        return SlotView(bool(slot.running), slot.started_at, slot.hard_limit, "", "",
                        self._leases())

    def _leases(self) -> list[tuple[Any, Any]]:
        return slot_leases(self.slot)

    @property
    def deadline(self) -> float | None:
        slot = self.slot
        if slot.running and slot.hard_limit:
            return float(slot.started_at + slot.hard_limit)
        return None


class _CleanUp:
    """What an exited child leaves to write: the task a hard time limit or a revocation
    killed, the other tasks it had started (lost), its unstarted ones (released). Each
    step is written once, however often the store refuses the next."""

    def __init__(self, child: _Child, view: SlotView) -> None:
        self.child = child
        self.view = view
        self.leases = view.leases
        self.killed: str | None = None
        if child.killed_for in ("time limit", "revoked") and view.running and self.leases:
            self.killed = child.killed_for
        elif self.leases and child.process.exitcode != 0:
            logger.error("worker process %d %s while running %s", child.process.pid,
                         _exit_reason(child.process.exitcode), view.current)

    def run(self, supervisor: Supervisor) -> None:
        if self.killed is not None:
            lease = LeaseRef(*self.leases[-1])
            if self.killed == "time limit":
                supervisor._time_limit_failure(lease, self.view)
            else:
                supervisor._terminated(lease, self.view)
            self.leases, self.killed = self.leases[:-1], None
        supervisor._lose(self.child, self.leases)


class Supervisor:
    """Starts, watches, replaces and stops the prefork children."""

    def __init__(self, app: LiteQ, spec: AppSpec, concurrency: int, options: ChildOptions,
                 start_method: str | None = None,
                 fork_guard: contextlib.AbstractContextManager[Any] | None = None) -> None:
        self.app = app
        #: held around each start: no other thread of ours is inside SQLite then, so a
        #: forked child never inherits a locked SQLite mutex
        self._fork_guard = fork_guard or contextlib.nullcontext()
        self.spec = spec
        self.concurrency = concurrency
        self.options = options
        self._context: Any = multiprocessing.get_context(platforms.start_method(start_method))
        self._children: list[_Child | None] = [None] * concurrency
        self._selector = selectors.DefaultSelector()
        self._handlers: dict[int, Callable[[], None]] = {}
        self._failed_starts = 0
        self.stopping: str | None = None
        #: when the main process last heartbeat (time.monotonic(), shared with children)
        self.heartbeat: Any = self._context.RawValue(ctypes.c_double, time.monotonic())
        #: clean-up writes for exited children the store refused, by child index: the
        #: child is started again once its clean-up is written (its leases carry its id)
        self._cleanups: dict[int, _CleanUp] = {}
        self._failing_since: float | None = None
        self._retry_at = 0.0
        self._retry_delay = RETRY_FIRST

    # -- lifecycle -------------------------------------------------------------------

    def beat(self) -> None:
        """The main process heartbeat (its children's leases are renewed): children
        claim while this is recent (``ChildOptions.stale_after``)."""
        self.heartbeat.value = time.monotonic()

    def start(self) -> None:
        self.beat()
        for index in range(self.concurrency):
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        control_reader, control_writer = self._context.Pipe(duplex=False)
        report_reader, report_writer = self._context.Pipe(duplex=False)
        slot = self._context.RawValue(Slot)
        process = self._context.Process(
            target=child_main,
            args=(self.spec, control_reader, report_writer, index, slot, self.options,
                  os.getpid(), self.heartbeat),
            name=f"ForkPoolWorker-{index + 1}",
            daemon=True,
        )
        with self._fork_guard:
            process.start()
        control_reader.close()
        report_writer.close()
        child = _Child(index, f"{self.options.worker_id}/{index}", process, control_writer,
                       report_reader, slot)
        self._children[index] = child
        self._selector.register(process.sentinel, selectors.EVENT_READ, child)
        if self.stopping == "warm":
            # The stop signal came while this child was being started (its handler runs
            # between any two bytecodes): stop() did not see it, so tell it here.
            with contextlib.suppress(OSError):
                child.control.send_bytes(b"W")
            child.slot.commands += 1

    def watch(self, fd: int, handler: Callable[[], None]) -> None:
        """Call ``handler`` when ``fd`` becomes readable (the signal pipe)."""
        self._handlers[fd] = handler
        self._selector.register(fd, selectors.EVENT_READ, None)

    def stop(self, how: str) -> None:
        """``"warm"``: children finish and return prefetched tasks. ``"cold"``: kill."""
        previous, self.stopping = self.stopping, how if self.stopping != "cold" else "cold"
        if self.stopping == "warm" and previous is None:
            for child in self.children():
                with contextlib.suppress(OSError):
                    child.control.send_bytes(b"W")
                child.slot.commands += 1

    def set_queues(self, queues: Sequence[str]) -> None:
        """Every pool process consumes ``queues`` from now on (new ones too)."""
        self.options = dataclasses.replace(self.options, queues=tuple(queues))
        self._tell(b"Q" + serialization.json_dumps(list(queues)))

    def set_task_option(self, task_name: str, option: str, value: Any) -> None:
        """Set a task's option (``rate_limit``) in every pool process (new ones too)."""
        self.options = dataclasses.replace(
            self.options, task_options=(*self.options.task_options, (task_name, option, value)))
        self._tell(b"T" + serialization.json_dumps([task_name, option, value]))

    def _tell(self, command: bytes) -> None:
        for child in self.children():
            with contextlib.suppress(OSError):
                child.control.send_bytes(command)
            child.slot.commands += 1  # after the send: the child finds it in the pipe

    def children(self) -> list[_Child]:
        return [child for child in self._children if child is not None]

    # -- the loop --------------------------------------------------------------------

    def run(self) -> None:
        """Supervise until a warm stop drained the children, or a cold stop."""
        try:
            while self.children() or self._cleanups:
                if self.stopping == "cold":
                    self._kill_all()
                    break
                self._retry_clean_ups()
                if not self.children() and self._give_up():
                    break
                self._check_deadlines()
                self._check_revoked()
                for key, _ in self._selector.select(self._timeout()):
                    if key.data is None:
                        self._handlers[key.fd]()
                    else:
                        self._child_exited(key.data)
        except BaseException:
            self._kill_all()  # whatever went wrong here, no child outlives the loop
            raise
        finally:
            self._selector.close()

    def _timeout(self) -> float:
        now = time.monotonic()
        deadlines = [d for d in (child.deadline for child in self.children()) if d]
        if self._cleanups:
            deadlines.append(self._retry_at)
        if not deadlines:
            return CHECK_EVERY
        return max(0.0, min(CHECK_EVERY, min(deadlines) - now))

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        for child in self.children():
            deadline = child.deadline
            if deadline is not None and now >= deadline and child.killed_for is None:
                view = child.read()
                logger.error("Hard time limit (%gs) exceeded for %s: killing process %d",
                             view.hard_limit, view.current, child.process.pid)
                child.killed_for = "time limit"
                _kill(child.process)

    def _check_revoked(self) -> None:
        """Kill children running a task revoked with ``terminate=True``."""
        running = {view.task_id: child for child in self.children()
                   if (view := child.read()).running and view.task_id}
        if not running:
            return
        try:
            revoked = self.app.broker.revoked(list(running))
        except OperationalError as exc:  # the store is unavailable: look again later
            logger.debug("cannot read revocations: %s", exc)
            return
        for revocation in revoked:
            child = running[revocation.task_id]
            if not revocation.terminate or child.killed_for is not None:
                continue
            signum = _termination_signal(revocation.signal)
            logger.warning("terminating %s (revoked): %s to process %d",
                           revocation.task_id, signal.Signals(signum).name, child.process.pid)
            child.killed_for = "revoked"
            platforms.send_signal(child.process.pid, signum)

    def _child_exited(self, child: _Child) -> None:
        child.process.join(STOP_GRACE)
        self._selector.unregister(child.process.sentinel)
        self._children[child.index] = None
        error = self._startup_error(child)
        self._cleanups[child.index] = _CleanUp(child, child.read())
        self._clean_up(child.index)
        child.control.close()
        child.report.close()
        if error is not None or (not child.slot.ready and child.process.exitcode != 0):
            self._failed_starts += 1
            if self._failed_starts >= MAX_FAILED_STARTS:
                self.stopping = "cold"
                reason = error or _exit_reason(child.process.exitcode)
                raise PoolStartError(f"worker processes cannot start: {reason}")
        else:
            self._failed_starts = 0
        if self.stopping is None and child.index not in self._cleanups:
            self._spawn(child.index)

    def _clean_up(self, index: int) -> None:
        """Write what an exited child leaves (its lost, killed and unstarted tasks);
        when the store refuses, keep it and retry with backoff (``_retry_clean_ups``)."""
        cleanup = self._cleanups[index]
        now = time.monotonic()
        try:
            cleanup.run(self)
        except OperationalError as exc:
            if self._failing_since is None:
                self._failing_since = now
                logger.error("the store refused a write: %s; the clean-up after process %d "
                             "is kept and retried (it is started again after)", exc,
                             cleanup.child.process.pid)
            self._retry_at = now + self._retry_delay * (0.5 + random.random())
            self._retry_delay = min(self._retry_delay * 2, RETRY_MAX)
            return
        del self._cleanups[index]
        if self._failing_since is not None and not self._cleanups:
            logger.warning("the store takes writes again (after %.1fs): clean-up done",
                           now - self._failing_since)
            self._failing_since, self._retry_delay = None, RETRY_FIRST

    def _retry_clean_ups(self) -> None:
        if not self._cleanups or time.monotonic() < self._retry_at:
            return
        for index in list(self._cleanups):
            self._clean_up(index)
            if index in self._cleanups:
                return  # still refused: wait for the next retry
            if self.stopping is None:
                self._spawn(index)

    def _give_up(self) -> bool:
        """Stopping with clean-ups the store refused for too long: stop anyway (the
        leases expire and follow the lease rules)."""
        if not self._cleanups:
            return False
        if self._failing_since is None or \
                time.monotonic() - self._failing_since < STOP_SETTLE_TIMEOUT:
            return False
        logger.error("stopping without the clean-up of %d process(es): the store refused "
                     "writes; their tasks follow the lease rules when the lease expires",
                     len(self._cleanups))
        self._cleanups.clear()
        return True

    def _startup_error(self, child: _Child) -> str | None:
        with contextlib.suppress(EOFError, OSError):
            if child.report.poll(0):
                return child.report.recv_bytes().decode(errors="replace")
        return None

    def _lose(self, child: _Child, leases: list[tuple[Any, Any]]) -> None:
        broker = self.app.broker
        if leases:
            report = broker.lose([LeaseRef(*lease) for lease in leases],
                                 keeping_calls(self.app, self.options.policy))
            for task_id in report.requeued:
                logger.warning("task %s lost its worker process: queued again (acks_late)",
                               task_id)
            for task_id in report.failed:
                logger.error("task %s lost its worker process: recorded as FAILURE "
                             "(WorkerLostError)", task_id)
        released = broker.release_worker(child.worker_id)
        if released:
            logger.info("returned %d unstarted task(s) of process %d to the queue", released,
                        child.process.pid)

    def _time_limit_failure(self, lease: LeaseRef, view: SlotView) -> None:
        error = TimeLimitExceeded(f"TimeLimitExceeded({view.hard_limit:g})")
        self._settle_killed(lease, view, FAILURE, error)

    def _terminated(self, lease: LeaseRef, view: SlotView) -> None:
        self._settle_killed(lease, view, REVOKED, TaskRevokedError("terminated"))

    def _settle_killed(self, lease: LeaseRef, view: SlotView, state: str,
                       error: Exception) -> None:
        """Record a task killed in its process (time limit, terminate) as lost tasks are:
        read from its message, the call kept and a chord's part counted; never run
        again, ``acks_late`` or not."""
        record = error_record(self.app, view.task_id, state, error, task_name=view.task_name,
                              worker=self.options.pool.hostname)
        killed = LostTaskPolicy(max_deliveries=0, lost=record, exhausted=record)
        self.app.broker.lose([lease], keeping_calls(self.app, killed))

    def _kill_all(self) -> None:
        for child in self.children():
            _kill(child.process)
        for child in self.children():
            self._child_exited(child)
        while self._cleanups and not self._give_up():  # bounded by STOP_SETTLE_TIMEOUT
            time.sleep(max(0.0, self._retry_at - time.monotonic()))
            self._retry_clean_ups()

    def kill_leftovers(self) -> None:
        """Kill children still running (after an error in the main process): they
        ignore SIGTERM, so nothing else would stop them."""
        for child in self.children():
            _kill(child.process)
            with contextlib.suppress(Exception):
                child.process.join(STOP_GRACE)

    # -- reporting -------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        running = processed = busy = 0
        for child in self.children():
            running += child.slot.running
            processed += child.slot.processed
            busy += child.slot.busy_retries
        return {"active": running, "processed": processed, "busy_retries": busy}


def _termination_signal(name: str | None) -> int:
    """The signal that ends a revoked task: the one asked for, except those pool
    processes ignore (SIGTERM, SIGINT: shutdown is the main process's call) and those
    this platform lacks: then the kill (SIGKILL)."""
    signum = platforms.signal_number(name)
    if signum is not None and signum not in (signal.SIGTERM, signal.SIGINT):
        return signum
    return platforms.kill_signal()


def _kill(process: Any) -> None:
    platforms.kill_process(process)


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "is still running"
    if code < 0:
        try:
            return f"was killed by signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


__all__ = ["ChildOptions", "PoolStartError", "Slot", "SlotWriter", "Supervisor", "child_main"]
