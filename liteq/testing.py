"""Testing helpers, and a pytest plugin (``-p liteq.testing``).

* ``drain(app)`` runs the queued tasks here, in this process, through the same
  execution path as a worker, until the queues are idle; with ``fail_fast`` it re-raises
  the first task failure.
* ``WorkerProcess`` starts a real ``liteq worker`` in a subprocess and stops it by pid.
* Fixtures: ``liteq_app`` (an app on a temporary file) and ``liteq_worker`` (a real
  worker process for that app's file).

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

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from liteq._state import reset_current_app
from liteq.app import LiteQ
from liteq.exceptions import TimeoutError
from liteq.execute import run_delivery
from liteq.routing import queues_from_setting
from liteq.states import FAILURE
from liteq.transports.base import Settlement


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
            record = outcome.record
            if not app.results_with_broker and record is not None:
                app.backend.store_results([record])
                record = None
            broker.settle([Settlement(delivery, record, outcome.publish, outcome.requeue)])
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


# -- pytest plugin -------------------------------------------------------------------

try:
    import pytest
except ImportError:  # pragma: no cover - pytest is only needed for the fixtures
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    def liteq_app(tmp_path: Any) -> Iterator[LiteQ]:
        """An app on a fresh database file in a temporary directory."""
        app = LiteQ("tests", broker=f"sqlite:///{tmp_path / 'tasks.db'}")
        try:
            yield app
        finally:
            app.close()
            reset_current_app()

    @pytest.fixture
    def liteq_worker(liteq_app: LiteQ, tmp_path: Any) -> Iterator[WorkerProcess]:
        """A real worker (solo pool) on ``liteq_app``'s file; tasks are imported by name."""
        path = liteq_app.broker.location
        worker = WorkerProcess([path, "-P", "solo", "-l", "info"], cwd=tmp_path,
                               log=str(tmp_path / "worker.log"))
        worker.start()
        try:
            yield worker
        finally:
            worker.stop()


__all__ = ["WorkerProcess", "drain", "wait_for"]
