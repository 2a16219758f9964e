"""Daemonization and ``liteq multi`` as Celery's docs write them: numbered nodes,
per-node options, ``--detach`` and ``--pidfile`` for worker and beat.

Every process is stopped by the pid its pid file names, never by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from liteq.cli.daemon import alive
from liteq.testing import wait_for
from tests.conftest import Project

HOST = socket.gethostname()

PROJ = '''
import os
from liteq import LiteQ

app = LiteQ("proj", broker="@BROKER@")
app.conf.worker_heartbeat_interval = 0.5
app.conf.beat_schedule = {"tick": {"task": "proj.tick", "schedule": 0.3}}


@app.task(bind=True)
def where(self):
    return self.request.hostname


@app.task
def tick():
    return os.getpid()
'''


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    return alive(pid)  # a zombie (exited, not yet reaped by init) is not alive


@contextlib.contextmanager
def _reaped(root: Path) -> Iterator[None]:
    """Kill (by pid) whatever the test's pid files still name when it ends."""
    try:
        yield
    finally:
        for path in root.glob("*.pid"):
            pid = _pid(path)
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def proj(project: Project) -> Iterator[Project]:
    project.module(PROJ, name="proj")
    with _reaped(project.root):
        yield project


def test_multi_start_numbered_nodes_with_per_node_options(proj: Project) -> None:
    done = proj.liteq("multi", "start", "3", "-A", "proj", "-P", "solo",
                      "-Q:1-2", "images,video", "-Q:3", "data", "-l", "info")
    assert done.returncode == 0, done.stderr
    nodes = [f"liteq{i}@{HOST}" for i in (1, 2, 3)]
    for node in nodes:
        assert f"> {node}: OK" in done.stdout
    pids = [_pid(proj.root / f"liteq{i}.pid") for i in (1, 2, 3)]
    assert all(pid and _alive(pid) for pid in pids)
    assert all((proj.root / f"liteq{i}.log").exists() for i in (1, 2, 3))
    import proj as module  # type: ignore[import-not-found]

    app = module.app
    wait_for(lambda: len(app.control.ping(timeout=0.5)) == 3, 20)
    queues = app.control.inspect().active_queues()
    assert queues is not None
    assert {node: [q["name"] for q in queues[node]] for node in nodes} == {
        nodes[0]: ["images", "video"], nodes[1]: ["images", "video"], nodes[2]: ["data"]}
    assert module.where.apply_async(queue="data").get(timeout=15) == nodes[2]
    assert module.where.apply_async(queue="video").get(timeout=15) in nodes[:2]

    again = proj.liteq("multi", "start", "3", "-A", "proj")
    assert again.returncode == 0 and "already running" in again.stdout
    shown = proj.liteq("multi", "show", "3", "-A", "proj", "-c", "3", "-c:1", "10")
    lines = shown.stdout.splitlines()
    assert f"-n {nodes[0]}" in lines[0] and "-c 10" in lines[0] and "-c 3" not in lines[0]
    assert "-c 3" in lines[1] and "--pidfile liteq2.pid" in lines[1]
    shown = proj.liteq("multi", "show", "w1", "w2", "-A", "proj", "--loglevel:w2=debug",
                       "--range-prefix", "unused")
    first, second = shown.stdout.splitlines()
    assert f"-n w1@{HOST}" in first and "debug" not in first
    assert f"-n w2@{HOST}" in second and "--loglevel debug" in second
    shown = proj.liteq("multi", "show", "2", "--range-prefix", "worker", "-n", "example.org")
    assert "-n worker1@example.org" in shown.stdout and "-n worker2@example.org" in shown.stdout
    bad = proj.liteq("multi", "show", "2", "-c:1")
    assert bad.returncode == 2 and "-c:1 needs a value" in bad.stderr

    done = proj.liteq("multi", "restart", "3", "-A", "proj", "-P", "solo", "-Q:1-2",
                      "images,video", "-Q:3", "data")
    assert done.returncode == 0, done.stderr
    new_pids = [_pid(proj.root / f"liteq{i}.pid") for i in (1, 2, 3)]
    assert all(new and new != old for new, old in zip(new_pids, pids, strict=True))
    assert not any(_alive(pid) for pid in pids if pid)
    done = proj.liteq("multi", "stopwait", "3")
    assert done.returncode == 0 and done.stdout.count("stopped") == 3
    assert not list(proj.root.glob("liteq*.pid"))
    assert not any(_alive(pid) for pid in new_pids if pid)


def test_worker_detach_writes_the_pidfile_and_refuses_a_second_start(proj: Project) -> None:
    done = proj.liteq("-A", "proj", "worker", "-D", "-n", "w1@%h", "--pidfile", "run-%n.pid",
                      "-f", "%n-%i.log", "-P", "solo", "-l", "info")
    assert done.returncode == 0, done.stderr
    pidfile = proj.root / "run-w1.pid"
    pid = _pid(pidfile)
    assert pid is not None and _alive(pid)
    import proj as module  # type: ignore[import-not-found]

    assert module.where.delay().get(timeout=15) == f"w1@{HOST}"
    assert "ready." in (proj.root / "w1-0.log").read_text()  # logs go to the file

    again = proj.liteq("-A", "proj", "worker", "-D", "-n", "w1@%h", "--pidfile",
                       "run-%n.pid", "-P", "solo")
    assert again.returncode == 1
    assert f"pidfile run-w1.pid belongs to running process {pid}" in again.stderr
    assert _pid(pidfile) == pid  # untouched

    os.kill(pid, signal.SIGTERM)  # warm shutdown: the daemon removes its pid file
    wait_for(lambda: not pidfile.exists(), 20)
    wait_for(lambda: not _alive(pid), 10)
    assert "shutdown complete (warm)" in (proj.root / "w1-0.log").read_text()


def test_a_stale_pidfile_is_replaced(proj: Project) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (proj.root / "w2.pid").write_text(f"{gone.pid}\n")
    done = proj.liteq("-A", "proj", "worker", "--detach", "-n", "w2@%h", "-P", "solo")
    assert done.returncode == 0, done.stderr
    pid = _pid(proj.root / "w2.pid")  # the default pid file when detached: %n.pid
    assert pid is not None and pid != gone.pid and _alive(pid)
    assert (proj.root / "w2.log").exists()  # and the default log file: %n%I.log
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not (proj.root / "w2.pid").exists(), 20)


def test_detach_into_a_missing_directory_fails_in_the_foreground(proj: Project) -> None:
    done = proj.liteq("-A", "proj", "worker", "--detach", "--pidfile", "nope/w.pid")
    assert done.returncode == 1
    assert "nope" in done.stderr and "Traceback" not in done.stderr


def test_beat_detach_and_pidfile(proj: Project) -> None:
    done = proj.liteq("-A", "proj", "beat", "--detach", "-l", "info")
    assert done.returncode == 0, done.stderr
    pidfile = proj.root / "celerybeat.pid"
    pid = _pid(pidfile)
    assert pid is not None and _alive(pid)
    import proj as module  # type: ignore[import-not-found]

    wait_for(lambda: module.app.broker.depth(["celery"]).get("celery") is not None, 15)
    again = proj.liteq("-A", "proj", "beat", "--pidfile", "celerybeat.pid")
    assert again.returncode == 1 and "belongs to running process" in again.stderr
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not pidfile.exists(), 20)
    assert "periodic task(s)" in (proj.root / "celerybeat.log").read_text()
