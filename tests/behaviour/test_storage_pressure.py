"""Callers get liteq's typed errors, never a raw sqlite3 exception, when the store is
under pressure: another process holding the write lock, a full disk; and nothing
acknowledged is lost once the pressure ends."""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import liteq
from liteq.testing import wait_for
from tests.conftest import TASKS, Project

HOLD_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()  # until the test closes our stdin
conn.execute("ROLLBACK")
"""


@contextlib.contextmanager
def write_lock_held(db: Path) -> Iterator[None]:
    """Another process holds ``db``'s write lock (BEGIN IMMEDIATE) inside the block."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(db)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield
    finally:
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.close()
        holder.wait(10)
        holder.stdout.close()


def _module(project: Project, broker: str | None = None) -> object:
    source = TASKS.replace("@BROKER@", broker or "@BROKER@") + textwrap.dedent("""
        app.conf.update(sqlite_busy_timeout=0.5, task_publish_retry=False)
    """)
    return project.module(source)


@pytest.mark.sqlite_only(reason="holds SQLite's write lock from another process")
def test_a_held_write_lock_gives_callers_a_typed_error(project: Project) -> None:
    tasks = _module(project)
    waiting = tasks.add.delay(1, 2)  # type: ignore[attr-defined]
    with write_lock_held(project.db):
        with pytest.raises(liteq.OperationalError, match=r"tasks\.db") as caught:
            tasks.add.delay(2, 3)  # type: ignore[attr-defined]
        assert not isinstance(caught.value, sqlite3.Error)
        assert "sqlite_busy_timeout" in str(caught.value)
        with pytest.raises(liteq.TimeoutError):  # reads go on under a writer (WAL)
            waiting.get(timeout=0.5)
    project.worker()
    assert waiting.get(timeout=15) == 3
    assert tasks.add.delay(3, 4).get(timeout=15) == 7  # type: ignore[attr-defined]


@contextlib.contextmanager
def small_disk(path: Path, size: str = "2m") -> Iterator[Path]:
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                              str(path)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs for a full disk: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    with contextlib.suppress(OSError):  # every last block: the WAL cannot grow at all
        while True:
            with open(filler, "ab") as handle:
                handle.write(b"\0" * 512)
    return filler


@pytest.mark.sqlite_only(reason="fills the filesystem of the SQLite file")
def test_a_full_disk_gives_callers_a_typed_error_and_loses_nothing(
        project: Project, tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        db = disk / "tasks.db"
        tasks = _module(project, f"sqlite:///{db}")
        accepted = [tasks.add.delay(n, n) for n in range(20)]  # type: ignore[attr-defined]
        filler = _fill(disk)
        errors = 0
        for n in range(200):  # until the pages the file had are used up too
            try:
                accepted.append(tasks.add.delay(n, 1))  # type: ignore[attr-defined]
            except liteq.LiteQError as exc:
                assert not isinstance(exc, sqlite3.Error)
                assert "full" in str(exc), exc
                errors += 1
                break
        assert errors, "the disk never filled up"
        os.unlink(filler)
        accepted.append(tasks.add.delay(100, 100))  # type: ignore[attr-defined]
        project.worker(database=str(db))
        for res in accepted:
            wait_for(lambda res=res: res.state == "SUCCESS", timeout=30, message=res.id)


@pytest.mark.sqlite_only(reason="fills the filesystem of the SQLite file")
def test_a_worker_started_on_a_full_disk_says_so(project: Project, tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        db = disk / "tasks.db"
        tasks = _module(project, f"sqlite:///{db}")
        waiting = tasks.add.delay(1, 2)  # type: ignore[attr-defined]
        filler = _fill(disk)
        done = project.liteq("worker", str(db), "-P", "solo", timeout=60)
        assert done.returncode != 0
        line = done.stderr.strip().splitlines()[-1]
        assert str(db) in line and "disk full" in line.replace("disk is full", "disk full"), \
            done.stderr
        assert "not a SQLite database" not in done.stderr  # it is one: the disk is full
        os.unlink(filler)
        project.worker(database=str(db))
        assert waiting.get(timeout=30) == 3
