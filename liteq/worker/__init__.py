"""The worker: ``liteq worker``. Starts a pool, claims tasks, shuts down cleanly.

Shutdown, as in Celery: the first SIGTERM or Ctrl-C is a *warm* shutdown (stop
claiming, return prefetched tasks to the queue, let running tasks finish; exit code 0);
a second one, or SIGQUIT (where the platform has it), is a *cold* shutdown (stop now:
running tasks are lost and follow the lease rules, run again with ``acks_late``, else
FAILURE; exit code 1).
``Worker.stop()`` asks for the same from any thread.

A worker started outside the main thread (see ``liteq.worker.background``) installs no
signal handlers and leaves logging alone.

Signals, in order: ``celeryd_init`` (before the settings are read), ``worker_init``,
``celeryd_after_setup`` (queues chosen, logging ready), ``worker_ready``,
``worker_shutting_down`` (on a signal), ``worker_shutdown``.
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

from liteq import __version__, platforms, signals
from liteq.beat import Beat
from liteq.exceptions import ImproperlyConfigured, OperationalError, WorkerLostError
from liteq.platforms import WakePipe
from liteq.records import error_record
from liteq.routing import queues_from_setting
from liteq.states import FAILURE
from liteq.transports.base import LostTaskPolicy, WorkerInfo
from liteq.worker.consumer import Consumer
from liteq.worker.housekeeping import Housekeeper
from liteq.worker.logs import configure_task_loggers, terminal
from liteq.worker.pool import Pool, PoolOptions, SoloPool, ThreadPool
from liteq.worker.remote import RemoteControl, known_tasks
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
    #: the ``-f`` log file (prefork children started by spawn log there too)
    logfile: str | None = None
    #: the level print() in tasks is logged at, or None to leave stdout alone
    #: (the command line sets it from ``worker_redirect_stdouts``)
    redirect_stdouts: str | None = None


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
        # First, so receivers can configure this node by name before anything is read.
        signals.celeryd_init.send(sender=self.hostname, instance=self, conf=conf,
                                  options={**dataclasses.asdict(options),
                                           "hostname": options.nodename})
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
        self._remote: RemoteControl | None = None
        self.exit_code = EXIT_OK
        self._signals_seen = 0
        #: set once the worker consumes (``worker_ready`` was sent)
        self.ready = threading.Event()
        self._stop_requested: str | None = None
        self._pipe: WakePipe | None = None  # woken by stop() and signal handlers
        self._wake_lock = threading.Lock()  # stop() never writes to a closed (reused) fd

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
            return error_record(app, "", FAILURE, WorkerLostError(message),
                                worker=self.hostname)

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
            logfile=options.logfile,
            redirect_stdouts=options.redirect_stdouts,
            time_limit=options.time_limit,
            soft_time_limit=options.soft_time_limit,
        )

    # -- running ---------------------------------------------------------------------

    def start(self) -> int:
        """Run until shut down; returns the exit code (0 warm, 1 cold).

        In the main thread it handles SIGTERM, SIGINT and SIGQUIT; in any thread,
        :meth:`stop` ends it.

        """
        app = self.app
        main_thread = threading.current_thread() is threading.main_thread()
        signals.worker_init.send(sender=self)
        app.finalize()
        if main_thread:
            configure_task_loggers(app)
        signals.celeryd_after_setup.send(sender=self.hostname, instance=self, conf=app.conf)
        self.queues = [q for q in dict.fromkeys(self.queues)
                       if q not in self.options.exclude_queues]
        broker = app.broker
        broker.open()
        if app.backend is not broker:
            app.backend.open()
        broker.register_worker(WorkerInfo(
            id=self.worker_id, hostname=self.hostname, pid=os.getpid(), queues=tuple(self.queues),
            concurrency=self.concurrency, pool=self.pool_name, started_at=time.time(),
            info=self._info(),
        ))
        housekeeper = Housekeeper(broker, app.backend, self.worker_id, lease=self.lease,
                                  interval=self.heartbeat_interval, policy=self.policy,
                                  info=self._info, result_expires=app.result_expires)
        pipe = self._wake_pipe(install_signals=main_thread)
        self._remote = RemoteControl(
            app, self.hostname, self.queues, prefork=self.pool_name == "prefork",
            finder=app.task_finder(import_on_demand=self.spec.import_on_demand),
            guard=housekeeper.busy)
        beat_stop = threading.Event()
        beat_thread = None
        try:
            if self.options.beat:
                beat_thread = self._start_beat(housekeeper.busy, beat_stop)
            housekeeper.start()
            self._remote.start()
            if self.pool_name == "prefork":
                self._run_prefork(pipe, housekeeper)
            else:
                self._run_in_process(pipe)
        finally:
            beat_stop.set()
            if beat_thread is not None:
                beat_thread.join(timeout=10)
            self._remote.stop()
            housekeeper.stop()
            try:
                broker.unregister_worker(self.worker_id)
            except OperationalError as exc:  # its heartbeat record expires by itself
                logger.error("could not unregister %s: %s", self.worker_id, exc)
            self._close_wake_pipe(restore_signals=main_thread)
            signals.worker_shutdown.send(sender=self)
            # (quietly for a worker inside an application: no banner, no farewell)
            logger.log(logging.WARNING if self.options.banner else logging.INFO,
                       "%s shutdown complete (%s).", self.hostname,
                       "cold" if self.exit_code else "warm")
        return self.exit_code

    def stop(self, how: str = "warm") -> None:
        """Shut down from any thread: ``"warm"`` lets running tasks finish and returns
        prefetched ones; ``"cold"`` stops now. :meth:`start` returns once done."""
        if how not in ("warm", "cold"):
            raise ValueError(f"stop how={how!r}: choose 'warm' or 'cold'")
        self._request_stop(how)
        self._wake()

    def _request_stop(self, how: str) -> None:
        # Also called from signal handlers: takes no lock (Python itself writes the
        # wake-up pipe when a signal arrives).
        if how == "cold":
            self.exit_code = EXIT_FAILURE
        if self._stop_requested != "cold":
            self._stop_requested = how
        runner = self._runner
        if runner is not None:
            runner.stop(how)

    def _wake(self) -> None:
        with self._wake_lock:
            if self._pipe is not None:
                self._pipe.wake()

    def _adopt(self, runner: Consumer | Supervisor) -> None:
        """Make ``runner`` the loop to stop; a stop asked for before it existed applies."""
        self._runner = runner
        if self._stop_requested is not None:
            runner.stop(self._stop_requested)

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
        self.ready.set()

    def _run_prefork(self, pipe: WakePipe, housekeeper: Housekeeper) -> None:
        pool_options = self._pool_options()
        # Resolved here (spawn on macOS/Windows...), so children know how they started.
        pool_options = dataclasses.replace(
            pool_options, start_method=platforms.start_method(pool_options.start_method))
        # Children stop claiming when heartbeats (which renew their leases) stop for this
        # long: between two missed beats and half a lease.
        interval = self.heartbeat_interval
        stale_after = max(2 * interval, min(self.lease / 2, 3 * interval))
        options = ChildOptions(worker_id=self.worker_id, queues=tuple(self.queues),
                               capacity=self.capacity // self.concurrency, lease=self.lease,
                               policy=self.policy, pool=pool_options,
                               stale_after=stale_after)
        supervisor = Supervisor(self.app, self.spec, self.concurrency, options,
                                start_method=options.pool.start_method,
                                fork_guard=housekeeper.busy)
        housekeeper.on_beat = supervisor.beat
        self._adopt(supervisor)
        supervisor.watch(pipe.fileno(), pipe.drain)
        if self._remote is not None:
            supervisor.watch(self._remote.fileno(), self._apply_remote)
        supervisor.start()
        try:
            self._ready()
            supervisor.run()
        finally:
            supervisor.kill_leftovers()  # no pool process outlives a failed start or run

    def _run_in_process(self, pipe: WakePipe) -> None:
        pool = POOLS[self.pool_name](self.app, self.spec, self.concurrency, self._pool_options())
        consumer = Consumer(self.app, pool, self.queues, self.worker_id,
                            capacity=self.capacity, lease=self.lease, policy=self.policy)
        self._adopt(consumer)
        consumer.watch(pipe.fileno(), pipe.drain)
        if self._remote is not None:
            consumer.watch(self._remote.fileno(), self._apply_remote)
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

    def _apply_remote(self) -> None:
        """Apply what remote control handed over (``liteq.worker.remote``)."""
        assert self._remote is not None
        runner = self._runner
        for change in self._remote.pending():
            if change.kind == "shutdown":
                signals.worker_shutting_down.send(sender=self.hostname, sig="remote",
                                                  how="warm", exitcode=EXIT_OK)
                self._request_stop("warm")
            elif change.kind == "queues":
                self.queues = list(change.queues)
                logger.warning("%s: consuming from %s", self.hostname, ", ".join(self.queues))
                if runner is not None:
                    runner.set_queues(self.queues)
            elif change.kind == "task_option" and isinstance(runner, Supervisor):
                runner.set_task_option(change.task, change.option, change.value)
            change.applied.set()

    def _info(self) -> dict[str, Any]:
        runner = self._runner
        info: dict[str, Any] = {"pool": self.pool_name, "queues": list(self.queues),
                                "registered": known_tasks(self.app)}
        # SQLite busy retries of this process (and of its pool's children), summed by
        # the metrics over live workers: liteq_sqlite_busy_retries_total.
        busy = self.app.broker.busy_retries()
        if isinstance(runner, Supervisor):
            children = runner.info()
            busy += children.pop("busy_retries", 0)
            info.update(children)
        elif isinstance(runner, Consumer):
            info.update(processed=runner.processed, active=len(runner.pool.running()),
                        prefetched=len(runner.buffer))
        info["sqlite_busy_retries"] = busy
        return info

    # -- signals ---------------------------------------------------------------------

    def _wake_pipe(self, *, install_signals: bool) -> WakePipe:
        """A pipe that wakes the loop: woken by :meth:`stop` and, in the main thread,
        by Python when a signal arrives (its handlers then run there)."""
        pipe = WakePipe()
        self._pipe = pipe
        if install_signals:
            signal.set_wakeup_fd(pipe.write_fd, warn_on_full_buffer=False)
            warm, cold = platforms.shutdown_signals()  # (Windows has no SIGQUIT)
            for signum in warm:
                signal.signal(signum, self._on_stop_signal)
            for signum in cold:
                signal.signal(signum, self._on_cold_signal)
        return pipe

    def _close_wake_pipe(self, *, restore_signals: bool) -> None:
        if restore_signals:
            signal.set_wakeup_fd(-1)
        with self._wake_lock:
            pipe, self._pipe = self._pipe, None
        if pipe is not None:
            pipe.close()

    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        self._signals_seen += 1
        if self._signals_seen > 1:
            self._on_cold_signal(signum, frame)
            return
        _say(f"worker: Warm shutdown ({signal.Signals(signum).name}): finishing running "
             "tasks; press Ctrl-C again to stop now")
        signals.worker_shutting_down.send(sender=self.hostname, sig=signum, how="warm",
                                          exitcode=EXIT_OK)
        self._request_stop("warm")

    def _on_cold_signal(self, signum: int, frame: Any) -> None:
        _say(f"worker: Cold shutdown ({signal.Signals(signum).name})")
        signals.worker_shutting_down.send(sender=self.hostname, sig=signum, how="cold",
                                          exitcode=EXIT_FAILURE)
        self._request_stop("cold")
        runner = self._runner
        if runner is None:
            return
        if isinstance(runner, Consumer) and self.pool_name == "solo" and runner.pool.running():
            raise ColdShutdown()

    # -- banner ----------------------------------------------------------------------

    def _print_banner(self) -> None:
        app = self.app
        tasks = known_tasks(app)
        lines = [
            f" -------------- {self.hostname} v{__version__} (Python {sys.version.split()[0]})",
            f" transport:   {app.broker.location}",
            f" results:     {'same store' if app.results_with_broker else app.backend.location}",
            f" concurrency: {self.concurrency} ({self.pool_name})",
            f" queues:      {', '.join(self.queues)}",
            " tasks:       " + (", ".join(tasks) if tasks else
                                "imported on first use" if self.spec.import_on_demand else "none"),
        ]
        print("\n".join(lines), file=terminal(sys.stdout), flush=True)


def _say(text: str) -> None:
    """Tell the terminal, from a signal handler: a closed stderr (``| tee`` gone) must
    not raise in the middle of the loop, so the shutdown goes on without the message."""
    try:
        print(text, file=terminal(sys.stderr), flush=True)
    except (OSError, ValueError):
        pass


__all__ = ["ColdShutdown", "Worker", "WorkerOptions", "expand_nodename"]
