"""A Django project on SQLite in a temporary directory, with real worker processes.

``django_project`` copies a project (Celery's ``examples/django`` layout by default,
``celery_layout/``), runs ``manage.py migrate`` and gives helpers to run code in the
project (``manage.py shell -c``), run management commands and start workers, either as
``liteq -A proj worker`` or ``python manage.py liteq worker``. ``broker_kind`` runs a
test on SQLite and on Redis (``TEST_BROKER_URL`` reaches the project's settings).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from liteq.testing import WorkerProcess

HERE = Path(__file__).resolve().parent
WORKTREE = HERE.parent.parent


class DjangoProject:
    """A copied Django project, its environment, and the workers started in it."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = {**os.environ, "PYTHONPATH": str(WORKTREE), "PYTHONWARNINGS": "default",
                    **env}
        self.env.pop("DJANGO_SETTINGS_MODULE", None)
        self.workers: list[WorkerProcess] = []

    def manage(self, *args: str, timeout: float = 60,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """``python manage.py ARGS`` in the project."""
        return subprocess.run([sys.executable, "manage.py", *args], cwd=self.root,
                              capture_output=True, text=True, timeout=timeout,
                              env={**self.env, **(env or {})})

    def shell(self, code: str, timeout: float = 60, env: dict[str, str] | None = None) -> str:
        """Run ``code`` with Django set up (``manage.py shell -c``); its stdout, or
        AssertionError with its stderr when it fails."""
        done = self.manage("shell", "--no-imports", "-c", textwrap.dedent(code),
                           timeout=timeout, env=env)
        if done.returncode != 0:
            raise AssertionError(f"shell failed ({done.returncode}):\n{done.stderr}")
        return done.stdout

    def liteq(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """The ``liteq`` command line in the project directory."""
        return subprocess.run([sys.executable, "-m", "liteq", *args], cwd=self.root,
                              capture_output=True, text=True, timeout=timeout, env=self.env)

    def worker(self, *args: str, command: list[str] | None = None, wait: bool = True,
               env: dict[str, str] | None = None) -> WorkerProcess:
        """Start a worker (``liteq -A proj worker ARGS`` unless ``command`` is given)."""
        log = self.root / f"worker-{len(self.workers)}.log"
        prefix = command or [sys.executable, "-m", "liteq", "-A", "proj", "worker"]
        worker = WorkerProcess(["-l", "info", *args], cwd=self.root, log=str(log),
                               env={**self.env, **(env or {})}, command=prefix)
        self.workers.append(worker)
        worker.start()
        if wait:
            worker.wait_for_output("ready.", timeout=30)
        return worker

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def broker_kind(request: pytest.FixtureRequest) -> str:
    """Run the test on a SQLite file and on a Redis database."""
    return str(request.param)


def make_project(tmp_path: Path, template: Path, env: dict[str, str]) -> Iterator[DjangoProject]:
    root = tmp_path / template.name
    shutil.copytree(template, root, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3",
                                                                 "*.db"))
    project = DjangoProject(root, env)
    migrated = project.manage("migrate", "--noinput")
    assert migrated.returncode == 0, migrated.stderr
    try:
        yield project
    finally:
        project.close()


@pytest.fixture
def broker_url(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The broker of the test's kind (SQLite unless the test takes ``broker_kind``)."""
    kind = request.getfixturevalue("broker_kind") if "broker_kind" in request.fixturenames \
        else "sqlite"
    if kind == "redis":
        return str(request.getfixturevalue("redis_url"))
    return f"sqlite:///{tmp_path / 'tasks.db'}"


@pytest.fixture
def django_project(tmp_path: Path, broker_url: str) -> Iterator[DjangoProject]:
    """Celery's examples/django layout (import and broker URL changed), migrated."""
    yield from make_project(tmp_path, HERE / "celery_layout", {"TEST_BROKER_URL": broker_url})
