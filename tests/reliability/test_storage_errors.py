"""The store refuses writes for a while: another program holds SQLite's write lock past
``sqlite_busy_timeout``, the disk is full, Redis is down past its retry bound. Workers
stay alive, keep finished outcomes, and settle them once the store takes writes again.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from liteq.testing import wait_for
from tests.conftest import Project
from tests.redis_fixtures import RedisServer
from tests.reliability.conftest import log_lines, running_pid, starts

#: Tasks that log their start, sleep, and return a value of the size asked for.
TASKS = '''
import os
import time
from liteq import LiteQ

app = LiteQ(__name__, broker="@BROKER@", sqlite_busy_timeout=0.5,
            broker_transport_options={"visibility_timeout": 60,
                                      "retry_policy": {"timeout": 1.0}})


@app.task(bind=True)
def work(self, log, seconds, size=0):
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, f"start {self.request.id} {os.getpid()}\\n".encode())
    os.close(fd)
    time.sleep(seconds)
    return "x" * size if size else os.getpid()
'''

#: Holds the write lock of a SQLite file until told to let go (a second program).
HOLDER = '''
import os, sqlite3, sys, time
db, held, release = sys.argv[1:4]
conn = sqlite3.connect(db, isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
open(held, "w").close()
while not os.path.exists(release):
    time.sleep(0.05)
conn.execute("ROLLBACK")
'''


def _children(worker_pid: int) -> set[int]:
    return {child.pid for child in psutil.Process(worker_pid).children(recursive=True)}


def _settled_after_outage(project: Project, tasks, ids: list[str], log: Path,
                          pool_before: set[int], worker_pid: int) -> None:  # type: ignore[no-untyped-def]
    for task_id in ids:
        assert tasks.app.AsyncResult(task_id).get(timeout=60) is not None
    assert all(count == 1 for count in starts(log).values())  # none ran twice
    assert set(starts(log)) == set(ids)
    # the worker and its pool processes lived through it
    assert psutil.pid_exists(worker_pid)
    assert _children(worker_pid) == pool_before
    output = "\n".join(worker.output() for worker in project.workers)
    assert "the store refused a write" in output
    assert "the store takes writes again" in output
    # and it goes on claiming new work
    assert tasks.work.delay(str(log), 0).get(timeout=30)


@pytest.mark.sqlite_only("SQLite's write lock held by another program")
def test_write_lock_held_past_the_busy_timeout(project: Project) -> None:
    tasks = project.module(TASKS)
    log = project.root / "log"
    worker = project.worker("-c", "2", "-A", tasks.__name__, pool="prefork", database="")
    pool = _children(worker.pid)
    ids = [tasks.work.delay(str(log), 0.3).id for _ in range(8)]
    running_pid(log, ids[0])
    held, release = project.root / "held", project.root / "release"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HOLDER), str(project.db),
                               str(held), str(release)])
    try:
        wait_for(held.exists, 10, message="the lock holder")
        # tasks finish while the lock is held; their outcomes wait to be written
        wait_for(lambda: "the store refused a write" in worker.output(), 30,
                 message="a refused write")
        wait_for(lambda: len(log_lines(log)) >= 2, 10, message="tasks running on")
        release.touch()
        holder.wait(10)
        _settled_after_outage(project, tasks, ids, log, pool, worker.pid)
    finally:
        release.touch()
        with contextlib.suppress(subprocess.TimeoutExpired):
            holder.wait(10)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs the test can fill, or a skip saying why there is none."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if sys.platform != "linux":
        pytest.skip("a tmpfs for a full disk needs Linux")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for a full disk here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _fill(path: Path) -> None:
    """Write ``path`` until the disk is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 512):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)


@pytest.mark.sqlite_only("a full disk under the SQLite file")
def test_full_disk_then_space_freed(small_disk: Path, tmp_path: Path) -> None:
    project = Project(tmp_path / "project", "sqlite",
                      broker_url=f"sqlite:///{small_disk / 'q.db'}")
    (tmp_path / "project").mkdir()
    try:
        tasks = project.module(TASKS)
        log = project.root / "log"  # on the normal disk: the tasks themselves can log
        worker = project.worker("-c", "2", "-A", tasks.__name__, pool="prefork",
                                database="")
        pool = _children(worker.pid)
        # results of 512 KB: storing them needs the WAL to grow
        ids = [tasks.work.delay(str(log), 1.0, 512 * 1024).id for _ in range(4)]
        running_pid(log, ids[0])
        filler = small_disk / "filler"
        _fill(filler)
        wait_for(lambda: "the store refused a write" in worker.output(), 30,
                 message="a refused write")
        filler.unlink()
        for task_id in ids:
            assert len(tasks.app.AsyncResult(task_id).get(timeout=60)) == 512 * 1024
        assert all(count == 1 for count in starts(log).values())
        assert psutil.pid_exists(worker.pid) and _children(worker.pid) == pool
        assert "disk is full" in worker.output()
        assert "the store takes writes again" in worker.output()
    finally:
        project.close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", appendonly=True).start()
    yield server
    server.stop()


def test_redis_down_past_its_retry_bound(tmp_path: Path, own_redis: RedisServer) -> None:
    project = Project(tmp_path / "project", "redis", own_redis.url(0))
    (tmp_path / "project").mkdir()
    try:
        tasks = project.module(TASKS)
        log = project.root / "log"
        worker = project.worker("-c", "2", "-A", tasks.__name__, pool="prefork",
                                database="")
        pool = _children(worker.pid)
        ids = [tasks.work.delay(str(log), 1.0).id for _ in range(4)]
        running_pid(log, ids[0])
        own_redis.stop()
        wait_for(lambda: "the store refused a write" in worker.output(), 30,
                 message="a refused write")
        own_redis.start()
        _settled_after_outage(project, tasks, ids, log, pool, worker.pid)
    finally:
        project.close()

