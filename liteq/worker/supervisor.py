"""The prefork pool: child processes that each run the consumer loop, supervised.

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
import marshal
import multiprocessing
import os
import selectors
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from liteq import platforms, serialization, signals
from liteq.exceptions import TaskRevokedError, TimeLimitExceeded
from liteq.execute import Outcome
from liteq.records import error_record
from liteq.states import FAILURE, REVOKED
from liteq.transports.base import Delivery, LeaseRef, LostTaskPolicy
from liteq.worker import logs
from liteq.worker.consumer import Consumer
from liteq.worker.pool import PoolOptions, SoloPool
from liteq.worker.remote import child_commands, poll_child_commands, set_task_option, task_option

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

_LEASES_BYTES = 8192


class PoolStartError(RuntimeError):
    """Children cannot start (the app or its tasks fail to import)."""


class Slot(ctypes.Structure):
    """What a child tells the supervisor, in shared memory."""

    _fields_ = [
        ("seq", ctypes.c_uint64),  # odd while the child writes (seqlock)
        ("ready", ctypes.c_uint8),
        ("running", ctypes.c_uint8),
        ("processed", ctypes.c_uint64),
        ("busy_retries", ctypes.c_uint64),  # the child's SQLite busy retries
        ("started_at", ctypes.c_double),  # time.monotonic() (host-wide on Linux)
        ("hard_limit", ctypes.c_double),  # seconds; 0: none
        ("leases_size", ctypes.c_uint32),
        ("task_id", ctypes.c_char * 100),  # of the running task
        ("task_name", ctypes.c_char * 200),
        ("leases", ctypes.c_char * _LEASES_BYTES),  # marshal: [(key, token), ...]
    ]


_LEASES_OFFSET: int = Slot.leases.offset


@dataclass(frozen=True)
class ChildOptions:
    """Everything a child needs besides the app spec (plain, picklable values)."""

    worker_id: str
    queues: tuple[str, ...]
    capacity: int
    lease: float
    policy: LostTaskPolicy
    pool: PoolOptions
    #: task options changed by remote control: (task name, option, value), in order
    task_options: tuple[tuple[str, str, Any], ...] = ()


# -- the child -----------------------------------------------------------------------


class SlotWriter:
    """The child's side of its slot: a :class:`~liteq.worker.consumer.Tracker`."""

    def __init__(self, slot: Slot, default_hard_limit: float | None,
                 task_hard_limit: Callable[[str], float | None] | None = None,
                 busy_retries: Callable[[], int] | None = None) -> None:
        self.slot = slot
        self.busy_retries = busy_retries or (lambda: 0)
        self.default_hard_limit = default_hard_limit or 0.0
        #: a task's own hard limit (its ``time_limit``, changed by remote control)
        self.task_hard_limit = task_hard_limit or (lambda name: None)
        self.leases: list[tuple[Any, Any]] = []
        self._address = ctypes.addressof(slot)

    def _write_leases(self) -> None:
        blob = marshal.dumps(self.leases)
        if len(blob) > _LEASES_BYTES:  # cannot happen with a sane prefetch; stay correct
            blob = marshal.dumps(self.leases[-64:])
        ctypes.memmove(self._address + _LEASES_OFFSET, blob, len(blob))
        self.slot.leases_size = len(blob)

    def started(self, delivery: Delivery) -> None:
        slot = self.slot
        slot.seq += 1
        self.leases.append((delivery.key, delivery.token))
        self._write_leases()
        slot.hard_limit = (_hard_limit(delivery) or self.task_hard_limit(delivery.task_name)
                           or self.default_hard_limit)
        slot.task_id = delivery.task_id.encode()[:99]
        slot.task_name = delivery.task_name.encode()[:199]
        slot.started_at = time.monotonic()
        slot.running = 1
        slot.seq += 1

    def finished(self, delivery: Delivery) -> None:
        slot = self.slot
        slot.seq += 1
        slot.running = 0
        slot.processed += 1
        slot.busy_retries = self.busy_retries()
        slot.seq += 1

    def settled(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        done = {(d.key, d.token) for d in deliveries}
        slot = self.slot
        slot.seq += 1
        self.leases = [lease for lease in self.leases if lease not in done]
        self._write_leases()
        slot.seq += 1


def child_main(spec: AppSpec, control: Connection, report: Connection, index: int,
               slot: Slot, options: ChildOptions, parent_pid: int) -> None:
    """A prefork child: run the consumer loop until told to stop or recycled."""
    platforms.die_with_parent()
    pool_options = options.pool
    method = pool_options.start_method  # the one the supervisor resolved and used
    if method != "forkserver" and os.getppid() != parent_pid:
        os._exit(1)  # the worker died before prctl took effect
    # The main process decides about shutdown; Ctrl-C reaches the whole process group.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if method != "fork" or not logging.root.handlers:
        logs.setup_logging(pool_options.loglevel, pool_options.logformat, pool_options.logfile)
    if pool_options.redirect_stdouts is not None:  # a forked child has it already
        logs.redirect_stdouts(pool_options.redirect_stdouts)
    try:
        app = spec.load()
        app.finalize()
        if method != "fork":  # not inherited: the application's own set-up, if any, again
            logs.configure_child_logging(app, pool_options.loglevel, pool_options.logfile)
        logs.configure_task_loggers(app)
        for transport in {id(t): t for t in (app.broker, app.backend)}.values():
            transport.after_fork()
        pool = SoloPool(app, spec, 1, pool_options, hard_limit_in_process=False)
        tracker = SlotWriter(slot, pool_options.time_limit,
                             lambda name: task_option(pool, name, "time_limit"),
                             app.broker.busy_retries)
        consumer = Consumer(app, pool, options.queues, f"{options.worker_id}/{index}",
                            capacity=options.capacity, lease=options.lease,
                            policy=options.policy, tracker=tracker)
        for task_name, option, value in options.task_options:
            set_task_option(pool, task_name, option, value)
        signals.worker_process_init.send(sender=None)
    except BaseException as exc:
        report.send_bytes(f"{type(exc).__name__}: {exc}".encode())
        raise SystemExit(1) from None
    consumer.max_tasks = pool_options.max_tasks_per_child
    if pool_options.max_memory_per_child:
        limit = pool_options.max_memory_per_child
        consumer.recycle_when = lambda: platforms.rss_kib() > limit
    consumer.watch(control.fileno(), lambda: child_commands(control, consumer, pool))
    consumer.before_claim = lambda: poll_child_commands(control, consumer, pool)
    slot.ready = 1
    try:
        consumer.run()
        consumer.return_prefetched()
    finally:
        consumer.close()
    signals.worker_process_shutdown.send(sender=None, pid=os.getpid(), exitcode=0)




def _hard_limit(delivery: Delivery) -> float | None:
    header = delivery.envelope.header
    if b'"timelimit"' not in header:  # the common case, without parsing
        return None
    try:
        limit = serialization.json_loads(header).get("timelimit", [None, None])[1]
        return float(limit) if limit else None
    except Exception:  # an undecodable header: the task will fail with the reason
        return None


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
        blob = ctypes.string_at(ctypes.addressof(self.slot) + _LEASES_OFFSET,
                                self.slot.leases_size)
        try:
            return list(marshal.loads(blob)) if blob else []
        except (EOFError, ValueError, TypeError):
            return []

    @property
    def deadline(self) -> float | None:
        slot = self.slot
        if slot.running and slot.hard_limit:
            return float(slot.started_at + slot.hard_limit)
        return None


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

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        for index in range(self.concurrency):
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        control_reader, control_writer = self._context.Pipe(duplex=False)
        report_reader, report_writer = self._context.Pipe(duplex=False)
        slot = self._context.RawValue(Slot)
        process = self._context.Process(
            target=child_main,
            args=(self.spec, control_reader, report_writer, index, slot, self.options,
                  os.getpid()),
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

    def children(self) -> list[_Child]:
        return [child for child in self._children if child is not None]

    # -- the loop --------------------------------------------------------------------

    def run(self) -> None:
        """Supervise until a warm stop drained the children, or a cold stop."""
        while self.children():
            if self.stopping == "cold":
                self._kill_all()
                break
            self._check_deadlines()
            self._check_revoked()
            for key, _ in self._selector.select(self._timeout()):
                if key.data is None:
                    self._handlers[key.fd]()
                else:
                    self._child_exited(key.data)
        self._selector.close()

    def _timeout(self) -> float:
        now = time.monotonic()
        deadlines = [d for d in (child.deadline for child in self.children()) if d]
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
        for revocation in self.app.broker.revoked(list(running)):
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
        view = child.read()
        leases = view.leases
        if child.killed_for == "time limit" and view.running and leases:
            self._time_limit_failure(LeaseRef(*leases[-1]), view)
            leases = leases[:-1]
        elif child.killed_for == "revoked" and view.running and leases:
            self._terminated(LeaseRef(*leases[-1]), view)
            leases = leases[:-1]
        elif leases and child.process.exitcode != 0:
            logger.error("worker process %d %s while running %s", child.process.pid,
                         _exit_reason(child.process.exitcode), view.current)
        self._lose(child, leases)
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
        if self.stopping is None:
            self._spawn(child.index)

    def _startup_error(self, child: _Child) -> str | None:
        with contextlib.suppress(EOFError, OSError):
            if child.report.poll(0):
                return child.report.recv_bytes().decode(errors="replace")
        return None

    def _lose(self, child: _Child, leases: list[tuple[Any, Any]]) -> None:
        broker = self.app.broker
        if leases:
            report = broker.lose([LeaseRef(*lease) for lease in leases], self.options.policy)
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
        record = error_record(self.app, view.task_id, state, error, task_name=view.task_name,
                              worker=self.options.pool.hostname)
        self.app.outcome_store.settle(lease, Outcome(state, record))

    def _kill_all(self) -> None:
        for child in self.children():
            _kill(child.process)
        for child in self.children():
            self._child_exited(child)

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
