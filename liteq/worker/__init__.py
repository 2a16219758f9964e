"""The worker: ``liteq worker``. Starts a pool, claims tasks, shuts down cleanly.

Shutdown, as in Celery: the first SIGTERM or Ctrl-C is a *warm* shutdown (stop
claiming, return prefetched tasks to the queue, let running tasks finish; exit code 0);
a second one, or SIGQUIT, is a *cold* shutdown (stop now: running tasks are lost and
follow the lease rules, run again with ``acks_late``, else FAILURE; exit code 1).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from liteq import __version__, signals
from liteq.beat import Beat
from liteq.exceptions import ImproperlyConfigured, WorkerLostError
from liteq.result import exception_info
from liteq.routing import queues_from_setting
from liteq.states import FAILURE
from liteq.transports.base import LostTaskPolicy, WorkerInfo
from liteq.worker.consumer import Consumer
from liteq.worker.housekeeping import Housekeeper
from liteq.worker.pool import Pool, PoolOptions, SoloPool, ThreadPool
from liteq.worker.spec import AppSpec
from liteq.worker.supervisor import ChildOptions, Supervisor

if TYPE_CHECKING:
    from liteq.app import LiteQ

logger = logging.getLogger("liteq.worker")

#: The pools that run in the worker's own process (prefork is the Supervisor's).
POOLS: dict[str, type[Pool]] = {"threads": ThreadPool, "solo": SoloPool}
EXIT_OK, EXIT_FAILURE = 0, 1


class ColdShutdown(BaseException):
    """Raised in the main thread to interrupt a solo-pool task at cold shutdown."""


def expand_nodename(template: str, index: int | None = None) -> str:
    """Celery's node name variables: ``%h`` host, ``%n`` name, ``%d`` domain,
    ``%i`` pool process index, ``%I`` ``-index`` or nothing, ``%p`` the full node name.

    Example:
        >>> expand_nodename("w1@%h").startswith("w1@")
        True
    """
    host = socket.gethostname()
    name, _, domain = host.partition(".")
    result = template.replace("%h", host).replace("%n", name).replace("%d", domain)
    node_name = result.partition("@")[0] if "@" in result else result
    result = result.replace("%p", result).replace("%N", node_name)
    result = result.replace("%i", str(index or 0)).replace("%I", f"-{index}" if index else "")
    return result.replace("%%", "%")


@dataclass
class WorkerOptions:
    """What ``liteq worker`` takes on the command line (None: from settings)."""

    nodename: str = "liteq@%h"
    queues: list[str] | None = None
    exclude_queues: list[str] = field(default_factory=list)
    concurrency: int | None = None
    pool: str | None = None
    prefetch_multiplier: int | None = None
    max_tasks_per_child: int | None = None
    max_memory_per_child: int | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    start_method: str | None = None
    loglevel: int = logging.WARNING
    banner: bool = True
    #: run the beat in this worker (``-B``)
    beat: bool = False


class Worker:
    """One worker process (and its pool).

    Example:
        >>> options = WorkerOptions(concurrency=4)
        >>> Worker(app, AppSpec(import_path="proj"), options).start()  # doctest: +SKIP
    """

    def __init__(self, app: LiteQ, spec: AppSpec, options: WorkerOptions) -> None:
        self.app = app
        self.spec = spec
        self.options = options
        conf = app.conf
        self.hostname = expand_nodename(options.nodename)
        self.pool_name = (options.pool or conf.worker_pool or "prefork").lower()
        if self.pool_name not in (*POOLS, "prefork"):
            raise ImproperlyConfigured(
                f"unknown pool {self.pool_name!r}: choose prefork, threads or solo"
            )
        concurrency = options.concurrency or conf.worker_concurrency or os.cpu_count() or 1
        self.concurrency = 1 if self.pool_name == "solo" else int(concurrency)
        if self.concurrency < 1:
            raise ImproperlyConfigured("concurrency must be at least 1")
        multiplier = options.prefetch_multiplier
        if multiplier is None:
            multiplier = conf.worker_prefetch_multiplier
        self.capacity = self.concurrency * max(1, int(multiplier or 1))
        self.queues = self._queues()
        self.lease = app.visibility_timeout
        interval = conf.worker_heartbeat_interval
        self.heartbeat_interval = (float(interval) if interval
                                   else min(10.0, max(0.2, self.lease / 6)))
        self.worker_id = f"{self.hostname}:{os.getpid()}:{secrets.token_hex(3)}"
        self.policy = self._lost_policy()
        self._runner: Consumer | Supervisor | None = None
        self.exit_code = EXIT_OK
        self._signals_seen = 0

    # -- configuration ---------------------------------------------------------------

    def _queues(self) -> list[str]:
        queues = self.options.queues
        if not queues:
            declared = list(queues_from_setting(self.app.conf.task_queues))
            queues = declared or [self.app.conf.task_default_queue]
        queues = [q for q in dict.fromkeys(queues) if q not in self.options.exclude_queues]
        if not queues:
            raise ImproperlyConfigured("no queues left to consume (check -Q and -X)")
        return queues

    def _lost_policy(self) -> LostTaskPolicy:
        app = self.app
        limit = int(app.conf.task_max_deliveries or 5)

        def record(message: str) -> Any:
            error = WorkerLostError(message)
            template = app.make_record("", FAILURE, exception_info(error), worker=self.hostname)
            return dataclasses.replace(template, traceback=f"WorkerLostError: {message}")

        return LostTaskPolicy(
            max_deliveries=limit,
            lost=record("Worker exited prematurely or stopped renewing its lease; the task "
                        "was not run again because acks_late is off"),
            exhausted=record(f"The task's worker was lost on each of {limit} deliveries "
                             "(task_max_deliveries); giving up"),
        )

    def _pool_options(self) -> PoolOptions:
        conf = self.app.conf
        options = self.options
        return PoolOptions(
            hostname=self.hostname,
            max_tasks_per_child=options.max_tasks_per_child or conf.worker_max_tasks_per_child,
            max_memory_per_child=options.max_memory_per_child or conf.worker_max_memory_per_child,
            start_method=options.start_method or conf.worker_pool_start_method,
            loglevel=options.loglevel,
            logformat=conf.worker_log_format,
            time_limit=options.time_limit,
            soft_time_limit=options.soft_time_limit,
        )

    # -- running ---------------------------------------------------------------------

    def start(self) -> int:
        """Run until shut down; returns the exit code (0 warm, 1 cold)."""
        app = self.app
        signals.worker_init.send(sender=self)
        app.finalize()
        broker = app.broker
        broker.open()
        if app.backend is not broker:
            app.backend.open()
        broker.register_worker(WorkerInfo(
            id=self.worker_id, hostname=self.hostname, pid=os.getpid(), queues=tuple(self.queues),
            concurrency=self.concurrency, pool=self.pool_name, started_at=time.time(),
        ))
        housekeeper = Housekeeper(broker, app.backend, self.worker_id, lease=self.lease,
                                  interval=self.heartbeat_interval, policy=self.policy,
                                  info=self._info, result_expires=app.result_expires)
        signal_fd = self._install_signals()
        beat_stop = threading.Event()
        beat_thread = self._start_beat(housekeeper.busy, beat_stop) if self.options.beat \
            else None
        try:
            housekeeper.start()
            if self.pool_name == "prefork":
                self._run_prefork(signal_fd, housekeeper.busy)
            else:
                self._run_in_process(signal_fd)
        finally:
            beat_stop.set()
            if beat_thread is not None:
                beat_thread.join(timeout=10)
            housekeeper.stop()
            broker.unregister_worker(self.worker_id)
            signals.worker_shutdown.send(sender=self)
            logger.warning("%s shutdown complete (%s).", self.hostname,
                           "cold" if self.exit_code else "warm")
        return self.exit_code

    def _start_beat(self, lock: Any, stop: threading.Event) -> threading.Thread:
        beat = Beat(self.app, lock=lock)
        beat.setup()  # here, so a bad schedule stops the worker with a clear error
        signals.beat_embedded_init.send(sender=beat)
        thread = threading.Thread(target=beat.run, args=(stop,), name="liteq-beat",
                                  daemon=True)
        thread.start()
        return thread

    def _ready(self) -> None:
        if self.options.banner:
            self._print_banner()
        signals.worker_ready.send(sender=self)
        logger.info("%s ready.", self.hostname)

    def _run_prefork(self, signal_fd: int, fork_guard: Any) -> None:
        options = ChildOptions(worker_id=self.worker_id, queues=tuple(self.queues),
                               capacity=self.capacity // self.concurrency, lease=self.lease,
                               policy=self.policy, pool=self._pool_options())
        supervisor = Supervisor(self.app, self.spec, self.concurrency, options,
                                start_method=options.pool.start_method, fork_guard=fork_guard)
        self._runner = supervisor
        supervisor.watch(signal_fd, lambda: _drain(signal_fd))
        supervisor.start()
        self._ready()
        supervisor.run()

    def _run_in_process(self, signal_fd: int) -> None:
        pool = POOLS[self.pool_name](self.app, self.spec, self.concurrency, self._pool_options())
        consumer = Consumer(self.app, pool, self.queues, self.worker_id,
                            capacity=self.capacity, lease=self.lease, policy=self.policy)
        self._runner = consumer
        consumer.watch(signal_fd, lambda: _drain(signal_fd))
        pool.start()
        self._ready()
        try:
            consumer.run()
        except ColdShutdown:
            pass
        try:
            consumer.return_prefetched()
            finished = pool.stop(cold=consumer.stopping == "cold")
            interrupted = sum(1 for item in finished if item.outcome is None)
            if interrupted:
                logger.warning("cold shutdown interrupted %d running task(s); they follow "
                               "the lease rules (run again with acks_late, else FAILURE)",
                               interrupted)
            consumer.finish(finished)
        finally:
            consumer.close()

    def _info(self) -> dict[str, Any]:
        runner = self._runner
        info: dict[str, Any] = {"pool": self.pool_name,
                                "registered": sorted(self.app.tasks.regular())}
        if isinstance(runner, Supervisor):
            info.update(runner.info())
        elif isinstance(runner, Consumer):
            info.update(processed=runner.processed, active=len(runner.pool.running()),
                        prefetched=len(runner.buffer))
        return info

    # -- signals ---------------------------------------------------------------------

    def _install_signals(self) -> int:
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGQUIT, self._on_cold_signal)
        return read_fd

    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        self._signals_seen += 1
        if self._signals_seen > 1:
            self._on_cold_signal(signum, frame)
            return
        print(f"worker: Warm shutdown ({signal.Signals(signum).name}): finishing running "
              "tasks; press Ctrl-C again to stop now", file=sys.stderr, flush=True)
        signals.worker_shutting_down.send(sender=self.hostname, sig=signum, how="warm",
                                          exitcode=EXIT_OK)
        if self._runner is not None:
            self._runner.stop("warm")

    def _on_cold_signal(self, signum: int, frame: Any) -> None:
        print(f"worker: Cold shutdown ({signal.Signals(signum).name})", file=sys.stderr,
              flush=True)
        self.exit_code = EXIT_FAILURE
        signals.worker_shutting_down.send(sender=self.hostname, sig=signum, how="cold",
                                          exitcode=EXIT_FAILURE)
        runner = self._runner
        if runner is None:
            return
        runner.stop("cold")
        if isinstance(runner, Consumer) and self.pool_name == "solo" and runner.pool.running():
            raise ColdShutdown()

    # -- banner ----------------------------------------------------------------------

    def _print_banner(self) -> None:
        app = self.app
        tasks = sorted(app.tasks.regular())
        lines = [
            f" -------------- {self.hostname} v{__version__} (Python {sys.version.split()[0]})",
            f" transport:   {app.broker.location}",
            f" results:     {'same store' if app.results_with_broker else app.backend.location}",
            f" concurrency: {self.concurrency} ({self.pool_name})",
            f" queues:      {', '.join(self.queues)}",
            " tasks:       " + (", ".join(tasks) if tasks else
                                "imported on first use" if self.spec.import_on_demand else "none"),
        ]
        print("\n".join(lines), flush=True)


def _drain(fd: int) -> None:
    """Empty the signal wake-up pipe (the handlers already ran)."""
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


__all__ = ["ColdShutdown", "Worker", "WorkerOptions", "expand_nodename"]
