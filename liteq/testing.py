"""Testing helpers, and a pytest plugin (loaded automatically once liteq is installed).

* ``drain(app)`` runs the queued tasks here, in this process, through the same
  execution path as a worker, until the queues are idle; with ``fail_fast`` it re-raises
  the first task failure.
* ``start_worker(app)`` runs a real worker in a thread of this process on that app
  object (Celery's ``celery.contrib.testing.worker.start_worker``), so tasks defined in
  a test module or a test function run without being imported by name.
* ``WorkerProcess`` starts a real ``liteq worker`` in a subprocess and stops it by pid.
* Fixtures: ``liteq_app`` (an app on a temporary file) and ``liteq_worker`` (a worker
  thread on it); and Celery's, under Celery's names, so a suite moves over by changing
  its imports: ``celery_app``, ``celery_worker``, ``celery_config``,
  ``celery_parameters``, ``celery_includes``, ``celery_worker_pool``,
  ``celery_worker_parameters``, ``celery_class_tasks``, ``celery_enable_logging``,
  ``use_celery_app_trap``, ``celery_session_app``, ``celery_session_worker``,
  ``depends_on_current_app``, and the ``@pytest.mark.celery(**settings)`` marker.
  Apps live on a temporary SQLite file; Celery's in-memory test URLs (``memory://``,
  ``cache+memory://``) mean that file.

Example:
    >>> def test_add(liteq_app):  # doctest: +SKIP
    ...     @liteq_app.task
    ...     def add(x, y):
    ...         return x + y
    ...     res = add.delay(2, 3)
    ...     drain(liteq_app)
    ...     assert res.get(timeout=1) == 5
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from liteq._state import current_app_as, reset_current_app
from liteq.app import LiteQ
from liteq.exceptions import TimeoutError
from liteq.routing import queues_from_setting
from liteq.states import FAILURE
from liteq.task import Task
from liteq.transports.base import Settlement
from liteq.utils.log import WorkerFormatter, mlevel
from liteq.worker.background import WorkerThread
from liteq.worker.running import run_delivery


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01,
             message: str = "condition") -> Any:
    """Poll ``condition`` until it returns something true, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{message} not met within {timeout:g}s")
        time.sleep(interval)


def drain(app: LiteQ, queues: Sequence[str] | None = None, *, fail_fast: bool = True,
          timeout: float = 30.0, limit: int = 100) -> int:
    """Run queued tasks in this process until none is ready; returns how many ran.

    Tasks sent by the drained tasks run too. Scheduled tasks (countdown/eta) run once
    they are due within ``timeout``. With ``fail_fast`` the first failure is raised.
    """
    if not queues:
        queues = list(queues_from_setting(app.conf.task_queues)) or [app.conf.task_default_queue]
    find = app.task_finder(import_on_demand=True)
    worker_id = f"drain@{socket.gethostname()}:{os.getpid()}"
    broker = app.broker
    deadline = time.monotonic() + timeout
    ran = 0
    while True:
        claimed = broker.claim(queues, limit, worker_id, app.visibility_timeout)
        if not claimed:
            eta = broker.next_eta(queues)
            if eta is None:
                return ran
            if time.monotonic() + max(0.0, eta - time.time()) > deadline:
                raise TimeoutError(f"a scheduled task is due after drain()'s {timeout:g}s")
            time.sleep(max(0.0, min(eta - time.time(), 0.5)))
            continue
        for index, delivery in enumerate(claimed):
            outcome = run_delivery(app, delivery, "drain", find)
            ran += 1
            app.outcome_store.settle(delivery, outcome)
            if fail_fast and outcome.state == FAILURE and outcome.exception is not None:
                unstarted = claimed[index + 1:]
                if unstarted:
                    broker.settle([Settlement(d, release=True) for d in unstarted])
                raise outcome.exception
        if time.monotonic() > deadline:
            raise TimeoutError(f"the queues were still busy after {timeout:g}s")


class WorkerProcess:
    """A real ``liteq worker`` subprocess, stopped by its pid (never by name).

    Example:
        >>> with WorkerProcess(["tasks.db", "-P", "solo"], cwd=tmp_path):  # doctest: +SKIP
        ...     assert add.delay(2, 2).get(timeout=10) == 4
    """

    def __init__(self, args: Sequence[str], *, cwd: str | os.PathLike[str] | None = None,
                 env: dict[str, str] | None = None, log: str | None = None,
                 global_args: Sequence[str] = (),
                 command: Sequence[str] | None = None) -> None:
        """``command`` replaces ``python -m liteq [global_args] worker`` (for example
        ``[sys.executable, "proj.py", "worker"]`` for an app that calls ``app.start()``);
        ``args`` follow it."""
        self.command = list(command) if command is not None else None
        self.args = list(args)
        self.global_args = list(global_args)
        self.cwd = os.fspath(cwd) if cwd is not None else None
        self.env = {**os.environ, **(env or {})}
        self.log_path = log
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> WorkerProcess:
        prefix = self.command or [sys.executable, "-m", "liteq", *self.global_args, "worker"]
        command = [*prefix, *self.args]
        if self.log_path:
            self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            command, cwd=self.cwd, env=self.env, stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if self._log else subprocess.DEVNULL,
        )
        return self

    def output(self) -> str:
        if not self.log_path or not os.path.exists(self.log_path):
            return ""
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def wait_for_output(self, text: str, timeout: float = 15.0) -> None:
        wait_for(lambda: text in self.output() or self._exited(), timeout,
                 message=f"worker output {text!r}")
        if text not in self.output():
            raise AssertionError(f"worker exited ({self.returncode}):\n{self.output()}")

    def _exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signum)

    def stop(self, timeout: float = 20.0) -> int | None:
        """Warm shutdown (SIGTERM), then SIGKILL if it does not exit in ``timeout``."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log:
            self._log.close()
            self._log = None
        return self.process.returncode

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- a worker in this process --------------------------------------------------------

#: The level ``start_worker`` logs at by default (Celery reads the same variable).
WORKER_LOGLEVEL = os.environ.get("WORKER_LOGLEVEL", "error")
#: The task ``start_worker`` sends to check that the worker consumes.
PING_TASK = "liteq.ping"
#: Celery worker options that mean nothing here (no gossip, mingle or event stream).
_CELERY_ONLY_OPTIONS = frozenset({"without_heartbeat", "without_mingle", "without_gossip",
                                  "optimization", "task_events", "send_events",
                                  "ready_callback"})


def ping() -> str:
    """The ping task's body: ``"pong"``."""
    return "pong"


def ping_task(app: LiteQ) -> Task[Any, Any]:
    """``liteq.ping`` on ``app`` (registered on first use)."""
    task = app.tasks.get(PING_TASK)
    if task is None:
        task = app.task(name=PING_TASK)(ping)
    return task


@contextlib.contextmanager
def _logging_to(handler: logging.Handler | None, level: Any, app: LiteQ) -> Iterator[None]:
    """Send liteq's and task loggers' records to ``handler`` in the worker's formats."""
    if handler is None:
        yield
        return
    handler.setFormatter(WorkerFormatter(logging.Formatter(app.conf.worker_log_format),
                                         app.conf.worker_task_log_format))
    base = logging.getLogger("liteq")
    previous = base.level
    base.addHandler(handler)
    base.setLevel(mlevel(level) or logging.WARNING)
    try:
        yield
    finally:
        base.removeHandler(handler)
        base.setLevel(previous)
        handler.close()


@contextlib.contextmanager
def start_worker(app: LiteQ, concurrency: int = 1, pool: str = "solo",
                 loglevel: str | int = WORKER_LOGLEVEL, logfile: str | None = None,
                 perform_ping_check: bool = True, ping_task_timeout: float = 10.0,
                 shutdown_timeout: float = 10.0, **kwargs: Any) -> Iterator[WorkerThread]:
    """Run a worker for ``app`` in a thread of this process for the ``with`` block.

    As Celery's ``celery.contrib.testing.worker.start_worker``: the worker uses ``app``
    itself (tasks defined anywhere on it run, nothing is imported by name), checks it
    consumes by sending ``liteq.ping`` when ``perform_ping_check``, and stops warm at
    the end of the block (running tasks finish, prefetched ones go back).

    Args:
        app: the app under test.
        concurrency: tasks at once (``pool="threads"``).
        pool: ``"solo"`` (default, as Celery's) or ``"threads"``.
        loglevel: the level of the worker's log records (with ``logfile``).
        logfile: write liteq's and task loggers' records there, as a worker's ``-f``.
        perform_ping_check: wait until the worker answered ``liteq.ping``.
        ping_task_timeout: seconds to wait for that answer.
        shutdown_timeout: seconds to wait for running tasks at the end.
        **kwargs: ``hostname``, ``queues``, ``exclude_queues``, ``prefetch_multiplier``,
            ``time_limit``, ``soft_time_limit``, ``beat``; Celery's ``without_*`` flags
            are accepted and ignored.

    Raises:
        RuntimeError: the worker did not stop within ``shutdown_timeout``.

    Example:
        >>> with start_worker(app, pool="threads", concurrency=2):  # doctest: +SKIP
        ...     assert add.delay(2, 2).get(timeout=10) == 4
    """
    options = {k: v for k, v in kwargs.items() if k not in _CELERY_ONLY_OPTIONS}
    handler = logging.FileHandler(logfile) if logfile else None
    app.finalize()
    with _logging_to(handler, loglevel, app):
        worker = WorkerThread(app, pool=pool, concurrency=concurrency, **options).start()
        try:
            if perform_ping_check:
                result = ping_task(app).apply_async(queue=worker.queues[0])
                answer = result.get(timeout=ping_task_timeout)
                result.forget()
                if answer != "pong":
                    raise RuntimeError(f"the worker's ping check answered {answer!r}")
            yield worker
        finally:
            worker.stop(timeout=shutdown_timeout)


class _AppTrap:
    """Stands for the current app under ``use_celery_app_trap``: any use raises."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"Test depends on current_app (used current_app.{name})")


_MEMORY_BROKERS = ("memory", "cache")
#: ``Celery(...)`` arguments about parts liteq does not have (loader, AMQP, ...).
_CELERY_ONLY_PARAMETERS = frozenset({"strict_typing", "loader", "amqp", "events", "log",
                                     "control", "fixups", "set_as_current"})


def _memory_url(url: Any) -> bool:
    return isinstance(url, str) and url.split("+")[0].split(":")[0] in _MEMORY_BROKERS


@contextlib.contextmanager
def _test_app(path: Path, config: Mapping[str, Any], parameters: Mapping[str, Any],
              trap: bool) -> Iterator[LiteQ]:
    """An app on the SQLite file ``path`` with ``config`` (Celery's test app), current
    in the block (or, with ``trap``, a stand-in that refuses use is)."""
    parameters = {k: v for k, v in parameters.items() if k not in _CELERY_ONLY_PARAMETERS}
    main = parameters.pop("main", "tests")
    changes = parameters.pop("changes", None) or {}
    app = LiteQ(main, set_as_current=False, **parameters)
    app.conf.update({**changes, **config})
    if not app.conf.broker_url or _memory_url(app.conf.broker_url):
        app.conf.broker_url = f"sqlite:///{path}"
    if _memory_url(app.conf.result_backend):
        app.conf.result_backend = None  # results beside the messages, in the same file
    stand_in: Any = _AppTrap() if trap else app
    try:
        with current_app_as(stand_in):
            yield app
    finally:
        app.close()


def _settings_of(request: Any, config: Mapping[str, Any]) -> dict[str, Any]:
    """``celery_config`` with a test's ``@pytest.mark.celery(**settings)`` on top."""
    mark = request.node.get_closest_marker("celery")
    return {**config, **(mark.kwargs if mark else {})}


# -- pytest plugin -------------------------------------------------------------------

try:
    import pytest
except ImportError:  # pragma: no cover - pytest is only needed for the fixtures
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    def pytest_configure(config: Any) -> None:
        """Register the ``celery`` marker (``--strict-markers`` suites use it)."""
        config.addinivalue_line(
            "markers", "celery(**settings): override the test app's settings for a test")

    @pytest.fixture
    def liteq_app(tmp_path: Any) -> Iterator[LiteQ]:
        """An app on a fresh database file in a temporary directory (the current app)."""
        app = LiteQ("tests", broker=f"sqlite:///{tmp_path / 'tasks.db'}")
        try:
            yield app
        finally:
            app.close()
            reset_current_app()

    @pytest.fixture
    def liteq_worker(liteq_app: LiteQ) -> Iterator[WorkerThread]:
        """A worker (solo pool) in a thread of this process on ``liteq_app`` itself: it
        runs tasks the test module or the test defines on that app."""
        with start_worker(liteq_app, pool="solo", perform_ping_check=False) as worker:
            yield worker

    # Celery's fixtures (celery.contrib.pytest), same names and meaning.

    @pytest.fixture(scope="session")
    def use_celery_app_trap() -> bool:
        """Override to return True: then using the current app raises."""
        return False

    @pytest.fixture(scope="session")
    def celery_config() -> Mapping[str, Any]:
        """Override to give the test app's settings (a dict)."""
        return {}

    @pytest.fixture(scope="session")
    def celery_parameters() -> Mapping[str, Any]:
        """Override to give ``LiteQ(...)`` keyword arguments for the test app."""
        return {}

    @pytest.fixture(scope="session")
    def celery_enable_logging() -> bool:
        """Override to return True: the fixtures' workers log to stderr."""
        return False

    @pytest.fixture(scope="session")
    def celery_includes() -> Sequence[str]:
        """Override to name modules the fixtures' workers import first."""
        return ()

    @pytest.fixture(scope="session")
    def celery_worker_pool() -> str:
        """Override to choose the fixtures' pool: ``"solo"`` (default) or ``"threads"``."""
        return "solo"

    @pytest.fixture(scope="session")
    def celery_worker_parameters() -> Mapping[str, Any]:
        """Override to give ``start_worker`` options (``queues``, ``concurrency``...)."""
        return {}

    @pytest.fixture(scope="session")
    def celery_class_tasks() -> Sequence[Any]:
        """Override to list task classes the session worker registers."""
        return []

    def _worker(app: LiteQ, includes: Sequence[str], pool: str,
                parameters: Mapping[str, Any], logging_on: bool) -> Iterator[WorkerThread]:
        for module in includes:
            importlib.import_module(module)
        handler = logging.StreamHandler(sys.stderr) if logging_on else None
        level = parameters.get("loglevel", WORKER_LOGLEVEL)
        with _logging_to(handler, level, app), \
                start_worker(app, pool=pool, **parameters) as worker:
            yield worker

    @pytest.fixture
    def celery_app(request: Any, tmp_path: Path, celery_config: Mapping[str, Any],
                   celery_parameters: Mapping[str, Any],
                   use_celery_app_trap: bool) -> Iterator[LiteQ]:
        """An app for this test on a fresh SQLite file, with ``celery_config``; it is
        the current app for the test (unless ``use_celery_app_trap``)."""
        with _test_app(tmp_path / "celery.db", _settings_of(request, celery_config),
                       celery_parameters, trap=use_celery_app_trap) as app:
            yield app

    @pytest.fixture
    def celery_worker(celery_app: LiteQ, celery_includes: Sequence[str],
                      celery_worker_pool: str, celery_worker_parameters: Mapping[str, Any],
                      celery_enable_logging: bool) -> Iterator[WorkerThread]:
        """A worker in a thread on ``celery_app``, stopped warm when the test returns."""
        yield from _worker(celery_app, celery_includes, celery_worker_pool,
                           celery_worker_parameters, celery_enable_logging)

    @pytest.fixture(scope="session")
    def celery_session_app(request: Any, tmp_path_factory: Any,
                           celery_config: Mapping[str, Any],
                           celery_parameters: Mapping[str, Any],
                           use_celery_app_trap: bool) -> Iterator[LiteQ]:
        """One app for the whole session, on one SQLite file."""
        path = tmp_path_factory.mktemp("liteq") / "celery.db"
        with _test_app(path, _settings_of(request, celery_config), celery_parameters,
                       trap=use_celery_app_trap) as app:
            yield app

    @pytest.fixture(scope="session")
    def celery_session_worker(celery_session_app: LiteQ, celery_includes: Sequence[str],
                              celery_class_tasks: Sequence[Any], celery_worker_pool: str,
                              celery_worker_parameters: Mapping[str, Any],
                              celery_enable_logging: bool) -> Iterator[WorkerThread]:
        """One worker for the whole session, on ``celery_session_app``."""
        for task in celery_class_tasks:
            celery_session_app.register_task(task)
        yield from _worker(celery_session_app, celery_includes, celery_worker_pool,
                           celery_worker_parameters, celery_enable_logging)

    @pytest.fixture
    def depends_on_current_app(celery_app: LiteQ) -> None:
        """Make ``celery_app`` the current app (it already is, unless trapped)."""
        celery_app.set_current()


__all__ = ["PING_TASK", "WorkerProcess", "WorkerThread", "drain", "ping_task",
           "start_worker", "wait_for"]
