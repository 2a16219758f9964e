"""A prefork pool process: its consumer loop, and what it tells its supervisor.

The main process supervises each child through one small shared-memory *slot*
(:class:`Slot`), where the child writes which leases it may have started and what
runs now (a seqlock keeps reads consistent); see ``supervisor.py`` for the main
process's side. A child whose worker died (Linux: the kernel's ``SIGUSR2``) records
its running task as lost, stores the outcomes it holds, gives back the tasks it
claimed ahead, and exits (:class:`_Orphan`).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import marshal
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from liteq import platforms, serialization, signals
from liteq.transports.base import Delivery, LostTaskPolicy
from liteq.worker import logs
from liteq.worker.consumer import Consumer
from liteq.worker.pool import PoolOptions, SoloPool
from liteq.worker.remote import child_commands, poll_child_commands, set_task_option, task_option
from liteq.worker.running import keeping_calls

if TYPE_CHECKING:
    from liteq.worker.spec import AppSpec

logger = logging.getLogger("liteq.worker")

_LEASES_BYTES = 8192
#: Longest a pool process whose worker died takes to give back its tasks (seconds).
ORPHAN_GRACE = 10.0


class ParentGone(BaseException):
    """Raised in a pool process's running task when its worker died (Linux)."""


class Slot(ctypes.Structure):
    """What a child tells the supervisor, in shared memory."""

    _fields_ = [
        ("seq", ctypes.c_uint64),  # odd while the child writes (seqlock)
        ("ready", ctypes.c_uint8),
        ("running", ctypes.c_uint8),
        ("processed", ctypes.c_uint64),
        ("busy_retries", ctypes.c_uint64),  # the child's SQLite busy retries
        # written by the supervisor: commands sent so far (after each is in the pipe),
        # so the child looks at its control pipe only when one came
        ("commands", ctypes.c_uint64),
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
    #: children stop claiming when the main process's last heartbeat is this old (s)
    stale_after: float | None = None


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
               slot: Slot, options: ChildOptions, parent_pid: int,
               heartbeat: Any = None) -> None:
    """A prefork child: run the consumer loop until told to stop or recycled."""
    pool_options = options.pool
    method = pool_options.start_method  # the one the supervisor resolved and used
    orphan = _Orphan.watch(parent_pid, method)
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
                            policy=keeping_calls(app, options.policy), tracker=tracker)
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
    seen = 0

    def before_claim() -> None:
        # One memory read per claim and per task; the control pipe is polled only when
        # the supervisor has sent something since the last look.
        nonlocal seen
        sent = slot.commands
        if sent != seen:
            seen = sent
            poll_child_commands(control, consumer, pool)

    consumer.before_claim = before_claim
    stale_after = options.stale_after
    if heartbeat is not None and stale_after:
        # the main process renews this child's leases with its heartbeat: stalled
        # (SIGSTOP, swapped out, stuck), it renews nothing, so claim nothing new
        consumer.paused_when = lambda: time.monotonic() - heartbeat.value > stale_after
    orphan.consumer, orphan.pool = consumer, pool
    slot.ready = 1
    try:
        orphan.run()
    finally:
        consumer.close()
    signals.worker_process_shutdown.send(sender=None, pid=os.getpid(), exitcode=0)




def slot_leases(slot: Slot) -> list[tuple[Any, Any]]:
    """The leases a child's slot lists (read by the main process; empty if torn)."""
    blob = ctypes.string_at(ctypes.addressof(slot) + _LEASES_OFFSET, slot.leases_size)
    try:
        return list(marshal.loads(blob)) if blob else []
    except (EOFError, ValueError, TypeError):
        return []


class _Orphan:
    """A pool process whose worker died (``SIGUSR2`` from the kernel, Linux): it stops
    its task, records it as lost (started: WorkerLostError, or again with acks_late),
    stores the outcomes it holds and gives back its unstarted tasks, then exits; all
    within ``ORPHAN_GRACE`` seconds, else it exits anyway (the leases expire)."""

    def __init__(self, parent_pid: int, method: str | None) -> None:
        self.parent_pid = parent_pid
        self.method = method
        self.consumer: Consumer | None = None
        self.pool: SoloPool | None = None
        self.gone = False

    @classmethod
    def watch(cls, parent_pid: int, method: str | None) -> _Orphan:
        """Ask the kernel for a signal when the worker dies, and handle it."""
        orphan = cls(parent_pid, method)
        gone_signal = platforms.parent_death_signal()
        if gone_signal is not None:
            signal.signal(gone_signal, orphan.on_signal)
        platforms.die_with_parent(gone_signal)
        return orphan

    def run(self) -> None:
        """The consumer loop until stopped; orphaned: give back, and exit now."""
        assert self.consumer is not None
        try:
            self.consumer.run()
        except ParentGone:
            pass
        if self.gone:
            self.give_back()
            os._exit(1)
        self.consumer.return_prefetched()

    def on_signal(self, signum: int, frame: Any) -> None:
        if self.method != "forkserver" and os.getppid() == self.parent_pid:
            return  # not the kernel's notice: the worker is alive
        if self.gone:
            return
        self.gone = True
        deadline = threading.Timer(ORPHAN_GRACE, os._exit, (1,))
        deadline.daemon = True
        deadline.start()
        if self.consumer is None:
            os._exit(1)  # still starting: nothing claimed yet
        self.consumer.stop("cold")
        if self.pool is not None and self.pool.busy:
            raise ParentGone()

    def give_back(self) -> None:
        assert self.consumer is not None and self.pool is not None
        logger.error("the worker's main process is gone: this pool process gives back its "
                     "unstarted tasks and exits")
        with contextlib.suppress(Exception):
            self.consumer.finish(self.pool.stop(cold=True))
        with contextlib.suppress(Exception):
            self.consumer.return_prefetched()


def _hard_limit(delivery: Delivery) -> float | None:
    header = delivery.envelope.header
    if b'"timelimit"' not in header:  # the common case, without parsing
        return None
    try:
        limit = serialization.json_loads(header).get("timelimit", [None, None])[1]
        return float(limit) if limit else None
    except Exception:  # an undecodable header: the task will fail with the reason
        return None


__all__ = [
    "ORPHAN_GRACE",
    "ChildOptions",
    "ParentGone",
    "Slot",
    "SlotWriter",
    "child_main",
    "slot_leases",
]
