"""A worker inside the application: ``app.Worker(...)`` and ``app.run_worker(...)``.

It runs the same :class:`~liteq.worker.Worker` as ``liteq worker`` in a background
thread of this process, for desktop and edge applications, web apps, tests and
scripts. With the ``threads`` or ``solo`` pool it runs the tasks of the very app it is
given, so tasks defined anywhere on that app (a test module, a function body) run
without importing anything by name. With ``prefork`` it starts child processes that
import the app from the module holding it (``spawn`` by default: the host has threads,
and a fork of a threaded process is unsafe). It installs no signal handlers and leaves
logging alone. ``stop()`` is a warm shutdown: running tasks finish, prefetched ones go
back to the queue, so stopping never loses a task; tasks still queued wait in the store
for the next start (of this application or any other on the same store).

Example:
    >>> with run_worker(app, pool="threads", concurrency=4):  # doctest: +SKIP
    ...     assert add.delay(2, 2).get(timeout=10) == 4
"""

from __future__ import annotations

import atexit
import importlib
import logging
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from liteq import embedding
from liteq.exceptions import ImproperlyConfigured, TimeoutError
from liteq.utils.log import mlevel
from liteq.worker import Worker, WorkerOptions
from liteq.worker.spec import AppSpec

if TYPE_CHECKING:
    from liteq.app import LiteQ

logger = logging.getLogger("liteq.worker")

#: What ``WorkerThread`` takes besides the pool and concurrency (``WorkerOptions``).
_OPTIONS = {"hostname": "nodename", "queues": "queues", "exclude_queues": "exclude_queues",
            "prefetch_multiplier": "prefetch_multiplier", "time_limit": "time_limit",
            "soft_time_limit": "soft_time_limit", "loglevel": "loglevel", "beat": "beat",
            "start_method": "start_method", "max_tasks_per_child": "max_tasks_per_child",
            "max_memory_per_child": "max_memory_per_child"}
POOLS = ("threads", "solo", "prefork")


class EmbeddedWorker:
    """A :class:`~liteq.worker.Worker` running in a background thread of this process.

    Args:
        app: the app whose tasks and broker the worker uses.
        pool: ``"threads"`` (default), ``"solo"`` or ``"prefork"`` (child processes
            that import the app from its module, so the app must live at module
            level).
        concurrency: tasks at once (the solo pool runs one).
        shutdown_timeout: seconds the warm stop at interpreter exit waits for running
            tasks (an application that ends without calling :meth:`stop`).
        **options: ``hostname``, ``queues``, ``exclude_queues``, ``prefetch_multiplier``,
            ``time_limit``, ``soft_time_limit``, ``beat``, ``loglevel``, and for
            prefork ``start_method`` (default ``spawn``), ``max_tasks_per_child``,
            ``max_memory_per_child``.

    Raises:
        ImproperlyConfigured: an unknown pool or option; prefork for an app that no
            module holds.

    Example:
        >>> worker = app.Worker(pool="threads", concurrency=4).start()  # doctest: +SKIP
        >>> add.delay(2, 2).get(timeout=10)  # doctest: +SKIP
        4
        >>> worker.stop(timeout=10)  # doctest: +SKIP
    """

    def __init__(self, app: LiteQ, *, pool: str = "threads", concurrency: int | None = None,
                 shutdown_timeout: float = 10.0, **options: Any) -> None:
        pool = (pool or "threads").lower()
        #: how long the stop at interpreter exit waits for running tasks
        self.shutdown_timeout = shutdown_timeout
        if pool not in POOLS:
            raise ImproperlyConfigured(
                f"unknown pool {pool!r} for a worker inside the application: choose "
                f"{', '.join(POOLS)}"
            )
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise ImproperlyConfigured(
                f"unknown worker option(s) {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(sorted(_OPTIONS))}"
            )
        fields = {_OPTIONS[name]: value for name, value in options.items() if value is not None}
        if "loglevel" in fields:
            fields["loglevel"] = mlevel(fields["loglevel"])
        for key in ("queues", "exclude_queues"):  # "a,b", ("a", "b") or "a"
            if key in fields:
                fields[key] = _names(fields[key])
        fields.setdefault("nodename", "embedded@%h")
        if pool == "prefork":
            # The host runs threads (this worker's, at least): a forked child could
            # inherit a lock held by one of them. Spawned children import the app.
            fields.setdefault("start_method", app.conf.worker_pool_start_method or "spawn")
            spec = AppSpec(import_path=app_import_path(app))
        else:
            spec = AppSpec(import_tasks=False)
        self.app = app
        self.worker = Worker(app, spec, WorkerOptions(pool=pool, concurrency=concurrency,
                                                      banner=False, **fields))
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def hostname(self) -> str:
        """The worker's node name."""
        return self.worker.hostname

    @property
    def queues(self) -> list[str]:
        """The queues it consumes."""
        return self.worker.queues

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 30.0) -> EmbeddedWorker:
        """Start the worker in the background; return once it consumes.

        Raises:
            TimeoutError: it was not ready within ``timeout`` seconds.
            Exception: what stopped the worker while starting (a bad setting...).
        """
        if self._thread is not None:
            raise RuntimeError("this worker was started already")
        self._thread = threading.Thread(target=self._run, name=f"liteq-worker {self.hostname}",
                                        daemon=True)
        self._thread.start()
        ready = self.worker.ready
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05) and self._thread.is_alive():
            if time.monotonic() >= deadline:
                self.stop(timeout=10)
                raise TimeoutError(f"worker {self.hostname} was not ready in {timeout:g}s")
        if not ready.is_set():
            self._thread.join()
            error = self._error
            raise error if error is not None else RuntimeError(
                f"worker {self.hostname} stopped while starting")
        # An application that ends without stop() still stops warm: prefetched tasks go
        # back to the queue instead of waiting out their lease (and failing, unless
        # acks_late) when the process is gone.
        atexit.register(self._stop_at_exit)
        return self

    def _stop_at_exit(self) -> None:
        try:
            self.stop(timeout=self.shutdown_timeout)
        except RuntimeError as exc:
            logger.warning("at exit: %s", exc)

    def _run(self) -> None:
        try:
            self.worker.start()
        except BaseException as exc:  # reported by start() or stop() in the caller
            self._error = exc
            logger.exception("worker %s failed", self.hostname)

    def stop(self, timeout: float | None = 10.0) -> None:
        """Shut the worker down warm and wait for its thread: running tasks finish and
        store their results, prefetched tasks go back to the queue. (There is no cold
        stop here: a thread cannot be killed, so its task would outlive the worker.)

        Raises:
            RuntimeError: the thread did not end within ``timeout`` seconds (a task
                runs longer: raise the timeout), or the worker failed.
        """
        thread = self._thread
        if thread is None:
            return
        atexit.unregister(self._stop_at_exit)
        self.worker.stop("warm")
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError(
                f"worker {self.hostname} did not stop within {timeout}s; a task is still "
                "running (give stop() a longer timeout)"
            )
        error, self._error = self._error, None
        if error is not None:
            raise RuntimeError(f"worker {self.hostname} failed: {error!r}") from error

    def reload(self, modules: Iterable[str] | None = None, reload: bool = False,
               reloader: Any = None) -> None:
        """Import ``modules`` (again, with ``reload=True``), as Celery's
        ``WorkController.reload``. Tasks added to the app after the worker started
        need no reload: it looks them up on the app for each message."""
        for name in modules or ():
            module = importlib.import_module(name)
            if reload:
                (reloader or importlib.reload)(module)

    def __enter__(self) -> EmbeddedWorker:
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_alive() else "stopped"
        return f"<EmbeddedWorker {self.hostname} ({self.worker.pool_name}, {state})>"


#: The name ``liteq.testing`` and older code use.
WorkerThread = EmbeddedWorker


def app_import_path(app: LiteQ) -> str:
    """``module:attribute`` of a loaded module that holds ``app`` (a prefork child
    imports it from there; ``__main__`` is the script, which ``spawn`` runs again as
    ``__mp_main__``, so its start must sit under ``if __name__ == "__main__":``).

    Raises:
        ImproperlyConfigured: no module holds the app at its top level.
    """
    found = []
    for name, module in list(sys.modules.items()):
        if module is None or name == "__mp_main__":
            continue
        for attribute, value in list(getattr(module, "__dict__", {}).items()):
            if value is app:
                found.append(f"{name}:{attribute}")
                break
    found.sort(key=lambda path: path.startswith("__main__:"))  # a real module first
    if not found:
        raise ImproperlyConfigured(
            "a prefork worker inside the application imports the app in its child "
            "processes, but no module holds this app at its top level (define it as "
            "app = LiteQ(...) in a module, or use pool='threads')"
        )
    return found[0]


def _names(value: str | Iterable[str]) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return [item.strip() for item in items if item.strip()]


@contextmanager
def run_worker(app: LiteQ, *, pool: str = "threads", concurrency: int | None = None,
               shutdown_timeout: float = 10.0, **options: Any) -> Iterator[EmbeddedWorker]:
    """Run a worker for ``app`` in a background thread for the ``with`` block.

    Example:
        >>> with run_worker(app, pool="threads", concurrency=4) as worker:  # doctest: +SKIP
        ...     add.delay(2, 2).get(timeout=10)
        4
    """
    worker = EmbeddedWorker(app, pool=pool, concurrency=concurrency,
                            shutdown_timeout=shutdown_timeout, **options).start()
    try:
        yield worker
    finally:
        worker.stop(timeout=shutdown_timeout)


embedding.register(EmbeddedWorker, run_worker)

__all__ = ["EmbeddedWorker", "WorkerThread", "app_import_path", "run_worker"]
