"""The chaos scenarios. Each takes a transport and a size, runs real processes, and
returns one row of counts (``Row``); ``None`` in a cell means "does not apply"."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.chaos.raw import good_columns, write
from bench.chaos.world import World


@dataclass
class Row:
    scenario: str
    transport: str
    tasks: int = 0
    lost: int | None = 0
    duplicates: int | None = 0
    explained: int | None = 0  #: duplicates that follow a recorded lease loss (a kill)
    producer_errors: int | None = 0  #: exceptions that reached delay()
    raw_errors: int | None = 0  #: of those, not liteq's own (a raw sqlite3/redis error)
    pending_forever: int | None = 0  #: not final when the scenario ended
    crashes: int | None = 0  #: workers that died by themselves (not killed by us)
    notes: list[str] = field(default_factory=list)


def _is_raw(exc: BaseException) -> bool:
    return not type(exc).__module__.startswith("liteq")


def _duplicates(world: World, ids: list[str]) -> tuple[int, int]:
    """Extra executions, and how many of them follow a recorded lease loss: a kill of the
    worker that ran the earlier execution, or an outcome its worker discarded because
    the lease had been lost (call after ``world.close()``: every log is complete)."""
    runs = world.executed_by()
    discarded = world.lease_losses() | world.requeued_after_loss()
    extra = explained = 0
    for task_id in ids:
        pids = runs.get(task_id, [])
        for earlier in pids[:-1]:
            extra += 1
            explained += earlier in world.killed or task_id in discarded
    return extra, explained


def kill_workers(transport: str, size: int, seconds: float, acks_late: bool) -> Row:
    """kill -9 of a random worker every 2 s while ``size`` tasks drain."""
    name = f"kill -9 every 2 s, acks_late {'on' if acks_late else 'off'}"
    row = Row(name, transport, size)
    # tasks long enough that the 4 pool processes drain them in about ``seconds``
    world = World(transport, lease=3.0, work=min(0.5, seconds * 4 / max(size, 1)))
    ids: list[str] = []
    try:
        task = world.tasks.late if acks_late else world.tasks.early
        for _ in range(2):
            world.worker(concurrency=2)
        results = [task.delay(n) for n in range(size)]
        ids = [r.id for r in results]
        deadline = time.monotonic() + seconds
        rng = random.Random(17)
        while time.monotonic() < deadline:
            time.sleep(2)
            live = world.live_workers()
            if live:
                world.kill(rng.choice(live))
            world.worker(concurrency=2)
        states = world.wait_final(ids, timeout=60 + size / 20)
        executions = world.executions()
        if acks_late:
            row.lost = sum(1 for i in ids if states.get(i) != "SUCCESS")
        else:  # a lost task must end FAILURE (WorkerLostError), never vanish
            row.lost = sum(1 for i in ids if states.get(i) not in ("SUCCESS", "FAILURE"))
            lost = [i for i in ids if states.get(i) == "FAILURE"]
            row.notes.append(f"{len(lost)} recorded WorkerLostError")
            unstarted = sum(1 for i in lost if executions[i] == 0)
            if unstarted:
                row.notes.append(f"{unstarted} of them never started (issue 18)")
        row.pending_forever = sum(1 for i in ids if states.get(i) not in ("SUCCESS",
                                                                           "FAILURE"))
        row.notes.append(f"{len(world.killed)} kills")
    finally:
        _close(world, row)
    row.duplicates, row.explained = _duplicates(world, ids)
    return row


def producers(transport: str, size: int, count: int = 8) -> Row:
    """``count`` producers × ``size`` tasks while 2 workers drain."""
    row = Row(f"{count} producers × {size} while 2 workers drain", transport, count * size)
    world = World(transport)
    errors: list[BaseException] = []
    sent: list[str] = []
    lock = threading.Lock()

    def produce() -> None:
        for n in range(size):
            try:
                result = world.tasks.add.delay(n, 1)
            except Exception as exc:
                with lock:
                    errors.append(exc)
                continue
            with lock:
                sent.append(result.id)

    try:
        world.worker(concurrency=2)
        world.worker(concurrency=2)
        threads = [threading.Thread(target=produce) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        states = world.wait_final(sent, timeout=120 + len(sent) / 50)
        _count_sends(row, sent, states, errors)
    finally:
        _close(world, row)
    return row


def stop_past_lease(transport: str, size: int) -> Row:
    """SIGSTOP a worker past its lease, then SIGCONT: its late outcomes must be refused."""
    row = Row("SIGSTOP past the lease, SIGCONT", transport, size)
    world = World(transport, lease=2.0, work=0.25)
    ids: list[str] = []
    try:
        frozen = world.worker(concurrency=2)
        time.sleep(1.5)
        ids = [world.tasks.late.delay(n).id for n in range(size)]
        time.sleep(0.5)
        import signal
        os.killpg(frozen.pid, signal.SIGSTOP)  # the worker's own group: main and pool
        world.worker(concurrency=2)
        time.sleep(6)  # past the lease: the other worker takes the tasks over
        os.killpg(frozen.pid, signal.SIGCONT)
        states = world.wait_final(ids, timeout=60 + size / 20)
        row.lost = sum(1 for i in ids if states.get(i) != "SUCCESS")
        row.pending_forever = sum(1 for i in ids if states.get(i) not in ("SUCCESS",
                                                                           "FAILURE"))
    finally:
        _close(world, row)
    row.duplicates, row.explained = _duplicates(world, ids)
    refused = len(world.lease_losses())
    row.notes.append(f"{refused} stale outcome(s) refused by the lease fence; "
                     f"{row.duplicates - refused} stale outcome(s) accepted")
    return row


def copies_under_load(transport: str, copies: int) -> Row:
    """Copies of db + WAL taken under load: each opens, integrity_check ok, liteq reads."""
    row = Row(f"{copies} copies of db + WAL under load", transport, copies)
    if transport != "sqlite":
        return _not_applicable(row)
    world = World(transport)
    bad = 0
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):
                world.tasks.add.delay(1, 1)

    try:
        world.worker(concurrency=2)
        thread = threading.Thread(target=load)
        thread.start()
        db = Path(world.location)
        from liteq import LiteQ
        for n in range(copies):
            time.sleep(0.2)
            target = world.root / f"copy-{n}"
            target.mkdir()
            for suffix in ("", "-wal"):  # a plain copy, as a backup script would
                with contextlib.suppress(FileNotFoundError):
                    shutil.copyfile(f"{db}{suffix}", target / f"chaos.db{suffix}")
            try:
                conn = sqlite3.connect(target / "chaos.db")
                ok = conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
                conn.close()
                copy = LiteQ("copy", broker=f"sqlite:///{target / 'chaos.db'}")
                copy.broker.depth()
                copy.broker.close()
            except Exception as exc:
                ok = False
                row.notes.append(f"copy {n}: {exc}")
            bad += not ok
        stop.set()
        thread.join()
        row.lost = row.duplicates = row.explained = None
        row.producer_errors = row.raw_errors = row.pending_forever = None
        row.notes.append(f"{bad} copies failed to open or check")
        row.lost = bad
    finally:
        _close(world, row)
    return row


def disk_full(transport: str, size: int) -> Row:
    """A store on a small tmpfs filled up during delay(), claims and settles; then freed."""
    row = Row("disk full, then freed", transport, size)
    if transport != "sqlite":
        return _not_applicable(row)
    mount = Path(f"/tmp/liteq-chaos-disk-{uuid.uuid4().hex[:8]}")
    mount.mkdir()
    # room for the WAL a producer lets grow before it checkpoints (4,000 pages)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        mount.rmdir()
        row.notes.append(f"skipped: cannot mount a tmpfs ({done.stderr.strip()})")
        return _not_applicable(row, keep_notes=True)
    try:
        world = World(transport)
    except Exception:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        raise
    try:
        from liteq import LiteQ
        app = LiteQ("disk", broker=f"sqlite:///{mount / 'chaos.db'}")
        app.conf.update(task_publish_retry=False, sqlite_busy_timeout=1.0)
        add = app.task(name="chaostasks.add")(lambda x, y: x + y)
        world.env["CHAOS_BROKER"] = f"sqlite:///{mount / 'chaos.db'}"
        sent = [add.delay(n, 1).id for n in range(size // 2)]
        worker = world.worker(concurrency=2)
        # the disk fills while the worker claims and settles, not while it starts
        world.wait_final(sent[:1], timeout=30)
        filler = mount / "filler"
        with open(filler, "wb") as handle, contextlib.suppress(OSError):
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        errors: list[BaseException] = []
        for n in range(size // 2):
            try:
                sent.append(add.delay(n, 2).id)
            except Exception as exc:
                errors.append(exc)
        time.sleep(2)  # the worker meets the full disk in its claims and settles
        filler.unlink()
        row.producer_errors = len(errors)
        row.raw_errors = sum(_is_raw(e) for e in errors)
        if worker.poll() is not None:
            row.notes.append(f"worker exited with {worker.returncode} on the full disk")
            world.worker(concurrency=2)
        states = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = {i: app.AsyncResult(i).state for i in sent}
            if all(s == "SUCCESS" for s in states.values()):
                break
            time.sleep(0.3)
        row.lost = sum(1 for s in states.values() if s != "SUCCESS")
        row.pending_forever = sum(1 for s in states.values() if s not in ("SUCCESS", "FAILURE"))
        row.tasks = len(sent)
        row.duplicates = row.explained = None
        app.broker.close()
    finally:
        _close(world, row)
        subprocess.run(["umount", "-l", str(mount)], check=False)
        with contextlib.suppress(OSError):
            mount.rmdir()
    return row


def malformed_corpus(transport: str, copies: int) -> Row:
    """Every envelope field with a wrong type, huge and nested values, module and builtin
    names, written straight into the store; workers must be alive at the end."""
    corpus = corpus_messages("chaostasks.add")
    row = Row("malformed-message corpus", transport, len(corpus) * copies)
    world = World(transport)
    try:
        worker = world.worker(concurrency=2)
        ids = []
        for _ in range(copies):
            batch = corpus_messages("chaostasks.add")
            write(world.location, batch)
            ids += [m["task_id"] for m in batch]
        if transport == "sqlite":
            world.app.broker.notify_workers()
        states = world.wait_final(ids, timeout=90)
        row.pending_forever = sum(1 for i in ids if states.get(i) not in ("SUCCESS", "FAILURE",
                                                                           "REVOKED"))
        logs = world.worker_logs()
        row.crashes = sum(logs.count(text) for text in ("lost its worker process",
                                                         "exited with code", "was killed"))
        row.crashes += worker.poll() is not None
        row.lost = row.duplicates = row.explained = None
        row.producer_errors = row.raw_errors = None
    finally:
        world.close()
    return row


def corpus_messages(task: str) -> list[dict[str, Any]]:
    deep = b"[" * 20000 + b"]" * 20000
    header_cases: list[bytes] = [
        b'{"v":1,"retries":"x"}', b'{"v":1,"retries":' + b"9" * 40 + b"}",
        b'{"v":1,"retries":-1}', b'{"v":1,"headers":5}', b'{"v":1,"headers":[1]}',
        b'{"v":1,"options":"x"}', b'{"v":1,"options":{"chain":5}}',
        b'{"v":1,"options":{"link":[1]}}', b'{"v":1,"options":{"chord":{"id":1}}}',
        b'{"v":1,"options":{"group_index":"x"}}', b'{"v":1,"timelimit":"10"}',
        b'{"v":1,"timelimit":[-1,"x"]}', b'{"v":1,"eta":"tomorrow"}',
        b'{"v":1,"root_id":5}', b'{"v":1,"ignore_result":"yes"}', b'{"v":1,"eta":' + deep[:1] +
        b"1]}", b'{"v":1,"headers":' + deep + b"}", b"null", b"[]", b'{"v":"1"}', b"\xff",
        b'{"v":1,"group":"\\udc00"}',
    ]
    column_cases: list[dict[str, Any]] = [
        {"priority": "high"}, {"priority": 1.5}, {"expires": "soon"}, {"run_at": "now"},
        {"content_type": "application/x-python-serialize"}, {"content_type": ""},
        {"body": b"[[" + b"9" * 5000 + b"],{}]"}, {"body": b"[[" + deep + b"],{}]"},
        {"body": b'[["\\udc00"],{}]'}, {"body": b"{}"}, {"body": b"\x80"},
        {"task_name": "os.system"}, {"task_name": "builtins.eval"},
        {"task_name": "subprocess.run"}, {"task_name": "__import__"}, {"task_name": ""},
        {"task_name": "../../etc/passwd"}, {"task_id": "x" * 10000},
    ]
    messages = []
    for header in header_cases:
        messages.append({**good_columns(str(uuid.uuid4()), task, [1, 2]), "header": header})
    for columns in column_cases:
        task_id = str(uuid.uuid4())
        message = {**good_columns(task_id, task, [1, 2]), **columns}
        message["task_id"] = task_id  # results are looked up by it
        messages.append(message)
    return messages


def redis_killed(transport: str, size: int) -> Row:
    """redis-server SIGKILLed mid-run (AOF, fsync always), restarted: acknowledged sends
    lost?"""
    row = Row("redis-server SIGKILLed mid-run (AOF)", transport, size)
    if transport != "redis":
        return _not_applicable(row)
    world = World(transport)
    errors: list[BaseException] = []
    sent: list[str] = []
    try:
        assert world.redis is not None
        for n in range(size):
            if n == size // 2:
                world.redis.kill()
                world.redis.start()
            try:
                sent.append(world.tasks.add.delay(n, 1).id)
            except Exception as exc:
                errors.append(exc)
        world.worker(concurrency=2)
        states = world.wait_final(sent, timeout=60 + size / 20)
        _count_sends(row, sent, states, errors)
    finally:
        _close(world, row)
    return row


def _close(world: World, row: Row) -> None:
    """Stop the scenario's workers; count those that died by themselves, and why."""
    world.close()
    row.crashes = world.crashes
    row.notes.extend(world.crash_reasons)


def _count_sends(row: Row, sent: list[str], states: dict[str, str],
                 errors: list[BaseException]) -> None:
    """Lost, waiting and producer errors of a scenario whose sends must all succeed."""
    row.lost = sum(1 for i in sent if states.get(i) != "SUCCESS")
    row.pending_forever = sum(1 for i in sent if states.get(i) not in ("SUCCESS", "FAILURE"))
    row.producer_errors = len(errors)
    row.raw_errors = sum(_is_raw(e) for e in errors)
    row.duplicates = row.explained = None


def _not_applicable(row: Row, keep_notes: bool = False) -> Row:
    notes = row.notes if keep_notes else ["does not apply"]
    return Row(row.scenario, row.transport, 0, None, None, None, None, None, None, None,
               notes)


HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
"""


def lock_held(transport: str, size: int, seconds: float) -> Row:
    """Another process holds the write lock for ``seconds`` while tasks run and finish."""
    row = Row(f"write lock held {seconds:g} s by another process", transport, size)
    if transport != "sqlite":
        return _not_applicable(row)
    world = World(transport, work=0.5)
    ids: list[str] = []
    try:
        worker = world.worker(concurrency=2)
        ids = [world.tasks.late.delay(n).id for n in range(size)]
        time.sleep(1)
        holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, world.location,
                                   str(seconds)])
        holder.wait(seconds + 30)
        if worker.poll() is not None:
            row.notes.append(f"worker exited with {worker.returncode} under the lock")
            world.worker(concurrency=2)
        states = world.wait_final(ids, timeout=60 + size)
        row.lost = sum(1 for i in ids if states.get(i) != "SUCCESS")
        row.pending_forever = sum(1 for i in ids if states.get(i) not in ("SUCCESS",
                                                                           "FAILURE"))
        row.producer_errors = row.raw_errors = None
    finally:
        _close(world, row)
    row.duplicates, row.explained = _duplicates(world, ids)
    lost = world.worker_logs().count("lost its worker process")
    if lost:
        row.notes.append(f"{lost} task(s) lost with a pool process that died (issue 18)")
    return row


def expiry(transport: str, size: int) -> Row:
    """``size`` tasks with ``result_expires=5``: are expired results cleaned up as fast
    as they are made (file, WAL and worker memory bounded)?"""
    row = Row(f"{size} tasks, result_expires=5", transport, size)
    world = World(transport, expires=5.0)
    try:
        worker = world.worker(concurrency=2)
        ids = [world.tasks.add.delay(n, 1).id for n in range(size)]
        deadline = time.monotonic() + 120 + size / 50
        while time.monotonic() < deadline and \
                sum(depth.total for depth in world.app.broker.depth().values()):
            time.sleep(0.5)
        time.sleep(12)  # two expiry periods after the last result
        kept = sum(1 for i in ids[-2000:] if world.app.AsyncResult(i).state == "SUCCESS")
        row.notes.append(f"results still readable 12 s after draining: {kept} of the last "
                         f"{min(2000, len(ids))}")
        if transport == "sqlite":
            db = Path(world.location)
            wal = Path(f"{db}-wal")
            row.notes.append(f"file {db.stat().st_size // 1024} KiB, WAL "
                             f"{(wal.stat().st_size if wal.exists() else 0) // 1024} KiB")
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{worker.pid}/status").read_text()
            rss = next(line.split()[1] for line in status.splitlines()
                       if line.startswith("VmRSS"))
            row.notes.append(f"worker RSS {int(rss) // 1024} MiB")
        row.lost = row.duplicates = row.explained = None
        row.producer_errors = row.raw_errors = row.pending_forever = None
    finally:
        _close(world, row)
    return row
