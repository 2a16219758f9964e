"""Shared fixtures: a project directory with a task module, and real worker processes.

Behaviour and reliability tests run once per transport: ``project`` is on a SQLite
file, or on a Redis database of the test's own (``tests/redis_fixtures.py``). Tests that
are about SQLite itself carry ``@pytest.mark.sqlite_only(reason)``.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from liteq._state import reset_current_app
from liteq.platforms import START_METHOD_ENV
from liteq.testing import WorkerProcess
from tests.redis_fixtures import (  # noqa: F401 - fixtures
    cluster_set,
    redis_server,
    redis_url,
    sentinel_set,
)

#: Test directories whose tests run on every transport.
EVERY_TRANSPORT = {"behaviour", "conformance", "reliability"}

#: The task module most behaviour tests use; ``@BROKER@`` stands for the broker URL
#: (a SQLite file or a Redis database), ``@DB@`` for the SQLite file's path.
TASKS = '''
import os
import time
from liteq import LiteQ, Task

app = LiteQ(__name__, broker="@BROKER@")


@app.task
def add(x, y):
    return x + y


class Boom(Exception):
    pass


@app.task
def boom(message):
    raise Boom(message)


@app.task
def fail(message):
    raise ValueError(message)


@app.task(bind=True)
def whoami(self):
    return {"id": self.request.id, "retries": self.request.retries,
            "hostname": self.request.hostname, "pid": os.getpid(),
            "root_id": self.request.root_id, "parent_id": self.request.parent_id}


@app.task
def record(path, value):
    with open(path, "a") as handle:
        handle.write(f"{value}\\n")
    return value


@app.task
def sleep(seconds):
    time.sleep(seconds)
    return seconds


@app.task(ignore_result=True)
def quiet(path):
    with open(path, "a") as handle:
        handle.write("ran\\n")


@app.task
def unserializable():
    return object()


class DatabaseTask(Task):
    _db = None

    @property
    def db(self):
        if self._db is None:
            self._db = {"pid": os.getpid(), "created": time.time_ns()}
        return self._db


@app.task(base=DatabaseTask)
def connection_info():
    return connection_info.db
'''


class Project:
    """A temporary directory with task modules, a broker, and worker processes."""

    def __init__(self, root: Path, transport: str = "sqlite",
                 broker_url: str | None = None) -> None:
        self.root = root
        self.transport = transport
        self.db = root / "tasks.db"
        #: what task modules and workers use: the SQLite file, or a Redis database
        self.broker_url = broker_url or f"sqlite:///{self.db}"
        self.workers: list[WorkerProcess] = []
        self.module_names: list[str] = []
        sys.path.insert(0, str(root))

    @property
    def location(self) -> str:
        """What a command line takes as the broker: the file path, or the Redis URL."""
        return str(self.db) if self.transport == "sqlite" else self.broker_url

    def module(self, source: str = TASKS, name: str | None = None) -> ModuleType:
        """Write a module into the project and import it here."""
        name = name or f"tasks_{uuid.uuid4().hex[:10]}"
        text = textwrap.dedent(source).replace("@BROKER@", self.broker_url)
        text = text.replace("@DB@", str(self.db))
        (self.root / f"{name}.py").write_text(text)
        importlib.invalidate_caches()
        self.module_names.append(name)
        return importlib.import_module(name)

    def worker(self, *args: str, pool: str = "solo", loglevel: str = "info",
               database: str | None = None, wait: bool = True,
               env: dict[str, str] | None = None,
               global_args: tuple[str, ...] = ()) -> WorkerProcess:
        """Start ``liteq worker`` on the project's broker; wait until it is ready.

        ``database`` names another file or URL; ``""`` gives none (the app's, with -A).
        """
        log = self.root / f"worker-{len(self.workers)}.log"
        target = [database or self.location] if database != "" else []
        worker = WorkerProcess([*target, "-P", pool, "-l", loglevel, *args], cwd=self.root,
                               log=str(log), env={"PYTHONPATH": _pythonpath(), **(env or {})},
                               global_args=global_args)
        self.workers.append(worker)
        worker.start()
        if wait:
            worker.wait_for_output("ready.", timeout=30)
        return worker

    def run(self, code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run Python code in a fresh interpreter in the project directory."""
        return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=self.root,
                              capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHONPATH": _pythonpath()})

    def liteq(self, *args: str, timeout: float = 60,
              input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run the ``liteq`` command line in the project directory."""
        return subprocess.run([sys.executable, "-m", "liteq", *args], cwd=self.root,
                              capture_output=True, text=True, timeout=timeout, input=input,
                              env={**os.environ, "PYTHONPATH": _pythonpath()})

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        for name in self.module_names:
            sys.modules.pop(name, None)
        if str(self.root) in sys.path:
            sys.path.remove(str(self.root))
        reset_current_app()


def _pythonpath() -> str:
    here = str(Path(__file__).resolve().parent.parent)
    existing = os.environ.get("PYTHONPATH")
    return f"{here}{os.pathsep}{existing}" if existing else here


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Behaviour and reliability tests run on SQLite and on Redis."""
    if "transport_kind" not in metafunc.fixturenames:
        return
    if metafunc.definition.path.parent.name not in EVERY_TRANSPORT:
        return
    if metafunc.definition.get_closest_marker("sqlite_only"):
        return
    metafunc.parametrize("transport_kind",
                         ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])


@pytest.fixture
def transport_kind() -> str:
    """The transport a project uses (tests outside behaviour/ and reliability/: SQLite)."""
    return "sqlite"


#: The start method of prefork children per (test folder, transport). The behaviour
#: suite runs once under spawn (the default on macOS and Windows) on SQLite and under
#: fork (Linux's) on Redis; reliability tests run under fork. An outer
#: LITEQ_START_METHOD (a CI step running everything under spawn) wins.
START_METHODS = {("behaviour", "sqlite"): "spawn"}


@pytest.fixture
def project(tmp_path: Path, transport_kind: str, request: pytest.FixtureRequest,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    method = START_METHODS.get((request.node.path.parent.name, transport_kind))
    if method and START_METHOD_ENV not in os.environ:
        monkeypatch.setenv(START_METHOD_ENV, method)  # workers and scripts inherit it
    url = request.getfixturevalue("redis_url") if transport_kind == "redis" else None
    project = Project(tmp_path, transport_kind, url)
    try:
        yield project
    finally:
        project.close()


@pytest.fixture(autouse=True)
def _fresh_current_app() -> Iterator[None]:
    yield
    reset_current_app()
