"""The prefork pool: child processes that run tasks, supervised by the main process.

The main process claims tasks and hands each to an idle child over a pipe (so a free
child always takes the next task, and prefetched tasks stay with the main process,
leased, never hidden in a busy child). Children are started with an :class:`AppSpec`
and plain options, never live objects, and open their own database connections, so the
pool works with the ``fork``, ``forkserver`` and ``spawn`` start methods.

The main process supervises: it kills a child that runs past a task's hard time limit
(the task is recorded as FAILURE with ``TimeLimitExceeded``), notices a child that died
(its task is *lost*: run again when ``acks_late``, else FAILURE with
``WorkerLostError``), and replaces children that reach ``max_tasks_per_child`` or
``max_memory_per_child``.

Pipe protocol, one framed message each: main -> child: a delivery, or ``b""`` (stop);
child -> main: ``b"R"`` (ready), ``b"O" + outcome``, ``b"E" + error text`` (cannot start).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import resource
import signal
import sys
import time
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from liteq import serialization, signals
from liteq.exceptions import TimeLimitExceeded
from liteq.execute import Outcome, run_delivery
from liteq.result import exception_info
from liteq.states import FAILURE
from liteq.transports.base import Delivery
from liteq.worker import wire
from liteq.worker.pool import Finished, Pool, PoolOptions

if TYPE_CHECKING:
    from liteq.app import LiteQ
    from liteq.worker.spec import AppSpec

logger = logging.getLogger(__name__)

#: Children that die this many times in a row before becoming ready stop the worker.
MAX_FAILED_STARTS = 3
#: Seconds a stopping child gets to exit before it is killed.
STOP_GRACE = 10.0

_PR_SET_PDEATHSIG = 1


class PoolStartError(RuntimeError):
    """Children cannot start (the app or its tasks fail to import)."""


# -- the child -----------------------------------------------------------------------


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the main process dies, so no child outlives it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def child_main(spec: AppSpec, inbox: Connection, outbox: Connection, index: int,
               options: PoolOptions, parent_pid: int) -> None:
    """A prefork child: run tasks from ``inbox`` until told to stop or recycled."""
    _die_with_parent()
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    # The main process decides about shutdown; Ctrl-C reaches the whole process group.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if multiprocessing.get_start_method(allow_none=True) != "fork" or not logging.root.handlers:
        logging.basicConfig(level=options.loglevel, format=options.logformat, stream=sys.stderr)
    try:
        app = spec.load()
        app.finalize()
        for transport in {id(t): t for t in (app.broker, app.backend)}.values():
            transport.after_fork()
        find_task = app.task_finder(import_on_demand=spec.import_on_demand)
        signals.worker_process_init.send(sender=None)
    except BaseException as exc:
        outbox.send_bytes(b"E" + f"{type(exc).__name__}: {exc}".encode())
        raise SystemExit(1) from None
    outbox.send_bytes(b"R")
    _serve(app, inbox, outbox, find_task, options)
    signals.worker_process_shutdown.send(sender=None, pid=os.getpid(), exitcode=0)


def _serve(app: LiteQ, inbox: Connection, outbox: Connection, find_task: Any,
           options: PoolOptions) -> None:
    done = 0
    limits = (options.soft_time_limit, options.time_limit)
    while True:
        try:
            data = inbox.recv_bytes()
        except (EOFError, OSError):
            return
        if not data:
            return
        delivery = wire.load_delivery(data)
        outcome = run_delivery(app, delivery, options.hostname, find_task, hard_limit=False,
                               default_limits=limits)
        outbox.send_bytes(b"O" + wire.dump_outcome(delivery.key, outcome))
        done += 1
        if options.max_tasks_per_child and done >= options.max_tasks_per_child:
            return
        if options.max_memory_per_child and _rss_kib() > options.max_memory_per_child:
            logger.info("child %d uses more than %d KiB: recycling", os.getpid(),
                        options.max_memory_per_child)
            return


def _rss_kib() -> int:
    """This process's resident memory in KiB (current, from /proc; else the peak)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


# -- the main process's side ---------------------------------------------------------


class _Child:
    """One child process as the main process sees it."""

    def __init__(self, index: int, process: Any, inbox: Connection, outbox: Connection):
        self.index = index
        self.process = process
        self.inbox = inbox  # main writes deliveries
        self.outbox = outbox  # main reads outcomes
        self.ready = False
        self.delivery: Delivery | None = None
        self.started = 0.0
        self.deadline: float | None = None

    @property
    def idle(self) -> bool:
        return self.ready and self.delivery is None and self.process.exitcode is None


class PreforkPool(Pool):
    """Child processes, each running one task at a time."""

    name = "prefork"

    def __init__(self, app: LiteQ, spec: AppSpec, concurrency: int, options: PoolOptions):
        super().__init__(app, spec, concurrency, options)
        self._context = multiprocessing.get_context(options.start_method)
        self._children: list[_Child] = []
        self._failed_starts = 0
        self._stopping = False

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        for index in range(self.concurrency):
            self._children.append(self._spawn(index))

    def _spawn(self, index: int) -> _Child:
        inbox_reader, inbox_writer = self._context.Pipe(duplex=False)
        outbox_reader, outbox_writer = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=child_main,
            args=(self.spec, inbox_reader, outbox_writer, index, self.options, os.getpid()),
            name=f"ForkPoolWorker-{index + 1}",
            daemon=True,
        )
        process.start()
        inbox_reader.close()
        outbox_writer.close()
        self.generation += 1
        return _Child(index, process, inbox_writer, outbox_reader)

    def stop(self, cold: bool) -> list[Finished]:
        self._stopping = True
        lost = []
        for child in self._children:
            if cold:
                if child.delivery is not None:
                    lost.append(Finished(child.delivery, None, "cold shutdown"))
                    child.delivery = None
                _kill(child.process)
            else:
                with contextlib.suppress(OSError):
                    child.inbox.send_bytes(b"")
        deadline = time.monotonic() + STOP_GRACE
        for child in self._children:
            child.process.join(max(0.0, deadline - time.monotonic()))
            if child.process.exitcode is None:
                _kill(child.process)
                child.process.join()
            child.inbox.close()
            child.outbox.close()
        self._children = []
        return lost

    # -- dispatching -----------------------------------------------------------------

    def free(self) -> int:
        return sum(1 for child in self._children if child.idle)

    def dispatch(self, delivery: Delivery) -> None:
        child = next(child for child in self._children if child.idle)
        child.delivery = delivery
        child.started = time.monotonic()
        hard = _hard_limit(delivery) or self.options.time_limit
        child.deadline = child.started + hard if hard else None
        child.inbox.send_bytes(wire.dump_delivery(delivery))

    def running(self) -> list[Delivery]:
        return [child.delivery for child in self._children if child.delivery is not None]

    def fds(self) -> list[int]:
        fds = []
        for child in self._children:
            fds.append(child.outbox.fileno())
            fds.append(child.process.sentinel)
        return fds

    def next_deadline(self) -> float | None:
        deadlines = [child.deadline for child in self._children if child.deadline is not None]
        return min(deadlines) if deadlines else None

    def collect(self) -> list[Finished]:
        finished = []
        for child in self._children:
            finished.extend(self.collect_from(child))
        return finished

    def _receive(self, child: _Child, data: bytes) -> Finished | None:
        kind, body = data[:1], data[1:]
        if kind == b"R":
            child.ready = True
            self._failed_starts = 0
            return None
        if kind == b"E":
            raise PoolStartError(f"a worker process cannot start: {body.decode(errors='replace')}")
        _, outcome = wire.load_outcome(body)
        delivery = child.delivery
        child.delivery = None
        child.deadline = None
        if delivery is None:  # cannot happen: a child only answers what it was given
            logger.error("child %d sent an outcome for no task", child.process.pid)
            return None
        return Finished(delivery, outcome)

    # -- supervision -----------------------------------------------------------------

    def check(self, now: float) -> list[Finished]:
        finished = []
        for position, child in enumerate(self._children):
            if child.deadline is not None and now >= child.deadline and child.delivery:
                finished.append(self._time_limit_exceeded(child))
            if child.process.exitcode is None:
                continue
            finished.extend(self.collect_from(child))
            if child.delivery is not None:
                reason = _exit_reason(child.process.exitcode)
                logger.error("worker process %d running %s[%s] %s", child.process.pid,
                             child.delivery.task_name, child.delivery.task_id, reason)
                finished.append(Finished(child.delivery, None, reason))
                child.delivery = None
            elif not child.ready:
                self._failed_starts += 1
                if self._failed_starts >= MAX_FAILED_STARTS:
                    raise PoolStartError(
                        f"worker processes keep dying at start ({_exit_reason(child.process.exitcode)})"
                    )
            child.inbox.close()
            child.outbox.close()
            if not self._stopping:
                self._children[position] = self._spawn(child.index)
        return finished

    def collect_from(self, child: _Child) -> list[Finished]:
        """Outcomes a child sent before it exited."""
        finished = []
        while True:
            try:
                if not child.outbox.poll(0):
                    break
                data = child.outbox.recv_bytes()
            except (EOFError, OSError):
                break
            item = self._receive(child, data)
            if item is not None:
                finished.append(item)
        return finished

    def _time_limit_exceeded(self, child: _Child) -> Finished:
        delivery = child.delivery
        assert delivery is not None
        limit = (child.deadline or 0) - child.started
        logger.error("Hard time limit (%gs) exceeded for %s[%s]: killing process %d",
                     limit, delivery.task_name, delivery.task_id, child.process.pid)
        _kill(child.process)
        child.process.join(STOP_GRACE)
        child.delivery = None
        child.deadline = None
        error = TimeLimitExceeded(f"TimeLimitExceeded({limit:g})")
        record = self.app.make_record(delivery.task_id, FAILURE, exception_info(error),
                                      task_name=delivery.task_name,
                                      worker=self.options.hostname)
        return Finished(delivery, Outcome(FAILURE, record, summary=repr(error)))


def _kill(process: Any) -> None:
    with contextlib.suppress(ProcessLookupError, OSError):
        if process.exitcode is None:
            os.kill(process.pid, signal.SIGKILL)


def _hard_limit(delivery: Delivery) -> float | None:
    try:
        header = serialization.json_loads(delivery.envelope.header)
        limit = header.get("timelimit", [None, None])[1]
        return float(limit) if limit else None
    except Exception:  # an undecodable header: the child will report it
        return None


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "is still running"
    if code < 0:
        try:
            return f"was killed by signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


__all__ = ["PoolStartError", "PreforkPool", "child_main"]
