"""Platforms without fork or FIFOs (macOS, Windows), tested on Linux through the same
seams (``liteq.platforms``): prefork children started with ``spawn``, and SQLite
wake-ups over loopback UDP instead of named pipes."""

from __future__ import annotations

import statistics
import time

import pytest

from liteq import platforms
from tests.conftest import Project

TASKS = """
import os

from liteq import LiteQ

app = LiteQ(__name__, broker="@BROKER@")
IMPORTED_IN = os.getpid()  # a spawned child imports this module itself; a forked one not


@app.task
def origin():
    return {"pid": os.getpid(), "imported_here": IMPORTED_IN == os.getpid()}


@app.task
def add(x, y):
    return x + y
"""


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_prefork_children_start_with_the_chosen_method(project: Project, method: str) -> None:
    tasks = project.module(TASKS)
    worker = project.worker("-A", tasks.__name__, "-c", "2", pool="prefork", database="",
                            env={platforms.START_METHOD_ENV: method})
    infos = [r.get(timeout=30) for r in [tasks.origin.delay() for _ in range(4)]]
    assert worker.pid not in {info["pid"] for info in infos}
    assert all(info["imported_here"] is (method == "spawn") for info in infos)


def test_an_unknown_start_method_is_one_clear_line(project: Project) -> None:
    tasks = project.module(TASKS)
    worker = project.worker("-A", tasks.__name__, pool="prefork", database="", wait=False,
                            env={platforms.START_METHOD_ENV: "vfork"})
    assert worker.process is not None and worker.process.wait(30) != 0
    output = worker.output()
    assert "LITEQ_START_METHOD='vfork': choose fork, forkserver or spawn" in output
    assert "Traceback" not in output


def test_spawn_is_the_default_where_fork_is_unsafe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(platforms.START_METHOD_ENV, raising=False)
    monkeypatch.setattr(platforms, "IS_MACOS", True)
    assert platforms.default_start_method() == "spawn"
    assert platforms.start_method("forkserver") == "forkserver"  # a setting wins
    monkeypatch.setattr(platforms, "IS_MACOS", False)
    monkeypatch.setattr(platforms, "IS_WINDOWS", True)
    assert platforms.start_method(None) == "spawn"


def _round_trips(tasks: object, count: int = 6) -> list[float]:
    latencies = []
    for i in range(count):
        time.sleep(0.15)  # let the worker fall asleep (it sleeps up to 2 s when idle)
        begun = time.monotonic()
        assert tasks.add.delay(i, i).get(timeout=10, interval=5) == 2 * i  # type: ignore[attr-defined]
        latencies.append(time.monotonic() - begun)
    return latencies


@pytest.mark.sqlite_only(reason="wake-up pipes or datagrams beside the SQLite file")
@pytest.mark.parametrize(("worker_kind", "caller_kind"),
                         [("udp", "udp"), ("fifo", "udp"), ("udp", "fifo")])
def test_wakeups_over_udp_where_there_are_no_fifos(
        project: Project, monkeypatch: pytest.MonkeyPatch, worker_kind: str,
        caller_kind: str) -> None:
    monkeypatch.setenv(platforms.WAKEUPS_ENV, caller_kind)
    tasks = project.module(TASKS)
    project.worker("-A", tasks.__name__, pool="solo", database="",
                   env={platforms.WAKEUPS_ENV: worker_kind})
    workers_dir = project.root / "tasks.db-liteq" / "workers"
    entries = [path.name for path in workers_dir.iterdir()]
    assert any(name.endswith(".udp") for name in entries) is (worker_kind == "udp")
    latencies = _round_trips(tasks)
    # Woken both ways: the idle worker (else up to 2 s) and get() (else up to 5 s).
    assert statistics.median(latencies) < 0.5 and max(latencies) < 1.5, latencies
