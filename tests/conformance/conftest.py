"""Conformance fixtures: a page's project, written once per test module and transport.

Each test module holds the snippets of one page of Celery's user guide (or one of
Celery's ``examples/``), pasted with only the import and the broker URL changed. The
files of a page are written once into a temporary project, one worker starts for them,
and every test of the module talks to that worker: ``page(FILES, "-A", "tasks")``.

The tests of a module run on SQLite first, then on Redis (see
``pytest_collection_modifyitems``), so a page's modules (``tasks``, ``proj``, ...) are
imported in this process under the names the docs use, one transport at a time.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from liteq.testing import wait_for
from tests.conftest import Project
from tests.redis_fixtures import fresh_database

#: Placeholders in a page's files: the broker URL and the project's directory.
BROKER = "@BROKER@"
ROOT = "@ROOT@"


def write_files(project: Project, files: dict[str, str]) -> None:
    """Write a page's files into the project (``@BROKER@`` is the project's broker)."""
    for name, text in files.items():
        path = project.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        text = textwrap.dedent(text).lstrip("\n")
        path.write_text(text.replace(BROKER, project.broker_url).replace(ROOT, str(project.root)))
    importlib.invalidate_caches()


def forget_modules(root: Path) -> None:
    """Drop every module imported from ``root`` (so the next page may reuse the names)."""
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None) or ""
        if origin.startswith(str(root)):
            del sys.modules[name]


class Page:
    """A page's project on one transport: its files, its worker, its imported modules."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.root = project.root

    def module(self, name: str) -> ModuleType:
        """Import one of the page's modules here, as the user's shell does."""
        return importlib.import_module(name)

    def run(self, code: str, timeout: float = 60) -> str:
        """Run Python code in a fresh interpreter in the project; returns its stdout."""
        done = self.project.run(code, timeout=timeout)
        assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def liteq(self, *args: str, timeout: float = 60) -> Any:
        """Run the ``liteq`` command line in the project."""
        return self.project.liteq(*args, timeout=timeout)

    def output(self) -> str:
        """Everything the page's workers wrote to their logs so far."""
        return "".join(worker.output() for worker in self.project.workers)

    def wait_for_output(self, text: str, timeout: float = 5.0, count: int = 1) -> str:
        """Wait until the workers' logs hold ``text`` (``count`` times)."""
        wait_for(lambda: self.output().count(text) >= count, timeout,
                 message=f"{text!r} x{count} in the worker log")
        return self.output()

    def file_lines(self, name: str, count: int = 1, timeout: float = 5.0) -> list[str]:
        """The lines of a file the page's tasks write, once it has ``count`` of them."""
        path = self.root / name

        def lines() -> list[str] | None:
            if not path.exists():
                return None
            found = path.read_text().splitlines()
            return found if len(found) >= count else None

        return list(wait_for(lines, timeout, message=f"{count} line(s) in {name}"))


class _Pages:
    """The module's projects, one transport at a time."""

    def __init__(self, request: pytest.FixtureRequest,
                 factory: pytest.TempPathFactory) -> None:
        self.request = request
        self.factory = factory
        self.current: tuple[str, Page] | None = None

    def get(self, transport: str, files: dict[str, str], worker_args: tuple[str, ...],
            pool: str) -> Page:
        if self.current is not None and self.current[0] == transport:
            return self.current[1]
        self.close()
        url = None
        if transport == "redis":
            url = fresh_database(self.request.getfixturevalue("redis_server"))
        name = Path(str(self.request.node.name)).stem
        root = self.factory.mktemp(f"{name}-{transport}")
        project = Project(root, transport, url)
        page = Page(project)
        self.current = (transport, page)
        write_files(project, files)
        if worker_args:
            # With -A the app names the broker; without, the worker takes the store's
            # location and imports a task's module when it first meets the task.
            database = "" if "-A" in worker_args else None
            project.worker(*worker_args, database=database, pool=pool)
        return page

    def close(self) -> None:
        if self.current is None:
            return
        page = self.current[1]
        self.current = None
        page.project.close()
        forget_modules(page.root)


@pytest.fixture(scope="module")
def _pages(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Pages]:
    pages = _Pages(request, tmp_path_factory)
    try:
        yield pages
    finally:
        pages.close()


PageFactory = Callable[..., Page]


@pytest.fixture
def page(_pages: _Pages, transport_kind: str) -> PageFactory:
    """``page(FILES, *worker_args, pool="solo")``: the module's project on this transport.

    The first test of a module (per transport) writes the files and starts one worker
    with ``worker_args`` (none: no worker); the following tests reuse both. Without
    ``-A`` the worker reads the project's store and imports task modules on demand, so
    a snippet whose import fails only fails the tests that use it.
    """

    def get(files: dict[str, str], *worker_args: str, pool: str = "solo") -> Page:
        return _pages.get(transport_kind, files, worker_args, pool)

    return get


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Within each conformance module, run every SQLite case before the Redis ones.

    A page's project stays up for the module on one transport at a time, so the
    modules it imports keep the names the docs give them (``tasks``, ``proj``).
    """
    here = Path(__file__).parent
    slots = [i for i, item in enumerate(items) if Path(str(item.path)).parent == here]
    ours = [items[i] for i in slots]
    order = {path: n for n, path in enumerate(dict.fromkeys(str(item.path) for item in ours))}

    def key(item: pytest.Item) -> tuple[int, int]:
        callspec = getattr(item, "callspec", None)
        transport = callspec.params.get("transport_kind", "sqlite") if callspec else "sqlite"
        return order[str(item.path)], 0 if transport == "sqlite" else 1

    for slot, item in zip(slots, sorted(ours, key=key), strict=True):
        items[slot] = item
