"""The floor: a minimal task queue on the stdlib ``sqlite3`` module.

It shows what Python and SQLite can do on this machine, so the other systems' numbers
can be read as ratios to it. It keeps only what any queue with results needs: a task
id the caller can look up, JSON arguments and results, a ready/claimed state with a
partial index, and the job row kept until it is finished. No leases, retries,
heartbeats or wake-ups: it is a ceiling, not a product.

Each worker process loops: ``BEGIN IMMEDIATE``; claim up to ``batch`` ready jobs
(``UPDATE ... RETURNING``); run ``add``; store the results; delete the jobs;
``COMMIT``. ``batch=1`` is "floor-1", ``batch=64`` is "floor-64". When nothing is
ready, a worker polls ``PRAGMA data_version`` (a change means another connection
committed) every :data:`POLL` seconds; producers wait for results the same way.

Run a worker (the harness does this):
    python bench/floor.py worker /path/to/floor.db --batch 64
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
import uuid
from collections.abc import Iterable, Sequence

#: Seconds between two looks at ``PRAGMA data_version`` while idle.
POLL = 0.001
#: SQLite's own busy handler waits this long for the write lock.
BUSY_TIMEOUT = 30.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id      INTEGER PRIMARY KEY,
    task_id TEXT    NOT NULL,
    state   INTEGER NOT NULL DEFAULT 0,
    payload TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (id) WHERE state = 0;
CREATE TABLE IF NOT EXISTS results (
    task_id TEXT PRIMARY KEY,
    value   TEXT NOT NULL
) WITHOUT ROWID;
"""

#: Claim up to :batch ready jobs, oldest first.
CLAIM = (
    "UPDATE jobs SET state = 1 WHERE id IN "
    "(SELECT id FROM jobs WHERE state = 0 ORDER BY id LIMIT ?) RETURNING id, task_id, payload"
)
STORE = "INSERT OR REPLACE INTO results (task_id, value) VALUES (?, ?)"
FINISH = "DELETE FROM jobs WHERE id = ?"
PUBLISH = "INSERT INTO jobs (task_id, payload) VALUES (?, ?)"


def connect(path: str) -> sqlite3.Connection:
    """An autocommit connection in WAL mode with ``synchronous=NORMAL``."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT,
                           check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def create(path: str) -> None:
    """Create the schema (before workers start)."""
    conn = connect(path)
    conn.executescript(SCHEMA)
    conn.close()


def add(x: int, y: int) -> int:
    return x + y


def blob(x: int, y: int, data: str, size: int) -> int | str:
    """The payload task (W8, W9): ``data`` is the argument's bytes; ``size`` bytes of
    result (0: the sum, as ``add``)."""
    return x + y if not size else str(x + y) + "r" * size


def run(payload: str) -> str:
    """One job: ``[x, y]`` runs ``add``, ``[x, y, data, size]`` runs ``blob``."""
    call = json.loads(payload)
    return json.dumps(add(*call) if len(call) == 2 else blob(*call))


def work_once(conn: sqlite3.Connection, batch: int) -> int:
    """Claim, run and finish up to ``batch`` jobs in one transaction; returns how many."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        rows = conn.execute(CLAIM, (batch,)).fetchall()
        if rows:
            results = [(task_id, run(payload)) for _key, task_id, payload in rows]
            conn.executemany(STORE, results)
            conn.executemany(FINISH, [(row[0],) for row in rows])
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return len(rows)


def data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def worker(path: str, batch: int) -> None:
    """Run jobs until killed."""
    conn = connect(path)
    while True:
        version = data_version(conn)  # before the claim, so no commit goes unseen
        if work_once(conn, batch):
            continue
        while data_version(conn) == version:
            time.sleep(POLL)


class Producer:
    """The caller's side: enqueue jobs and read their results."""

    def __init__(self, path: str) -> None:
        self.conn = connect(path)

    def send(self, x: int, y: int) -> str:
        """One job, one transaction (as ``delay()``)."""
        task_id = str(uuid.uuid4())
        self.conn.execute(PUBLISH, (task_id, json.dumps([x, y])))
        return task_id

    def send_payload(self, x: int, y: int, data: str, size: int) -> str:
        """One ``blob`` job (W8, W9), one transaction."""
        task_id = str(uuid.uuid4())
        self.conn.execute(PUBLISH, (task_id, json.dumps([x, y, data, size])))
        return task_id

    def send_many(self, pairs: Iterable[tuple[int, int]]) -> list[str]:
        """Many jobs in one transaction."""
        rows = [(str(uuid.uuid4()), json.dumps([x, y])) for x, y in pairs]
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.executemany(PUBLISH, rows)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return [row[0] for row in rows]

    def values(self, task_ids: Sequence[str]) -> dict[str, int]:
        """Stored results of ``task_ids`` (those that have one)."""
        found: dict[str, int] = {}
        for start in range(0, len(task_ids), 500):
            chunk = list(task_ids[start:start + 500])
            marks = ",".join("?" * len(chunk))
            for task_id, value in self.conn.execute(
                f"SELECT task_id, value FROM results WHERE task_id IN ({marks})", chunk
            ):
                found[task_id] = json.loads(value)
        return found

    def count_done(self, task_ids: Sequence[str]) -> int:
        total = 0
        for start in range(0, len(task_ids), 500):
            chunk = list(task_ids[start:start + 500])
            marks = ",".join("?" * len(chunk))
            total += self.conn.execute(
                f"SELECT count(*) FROM results WHERE task_id IN ({marks})", chunk
            ).fetchone()[0]
        return int(total)

    def wait(self, task_id: str, timeout: float) -> int:
        """Wait for one result, polling ``data_version`` like the workers."""
        deadline = time.monotonic() + timeout
        while True:
            version = data_version(self.conn)
            row = self.conn.execute("SELECT value FROM results WHERE task_id = ?",
                                    (task_id,)).fetchone()
            if row is not None:
                return int(json.loads(row[0]))
            while data_version(self.conn) == version:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"floor job {task_id} not done within {timeout:g}s")
                time.sleep(POLL)

    def close(self) -> None:
        self.conn.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="floor.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("worker", help="run a floor worker process until killed")
    run.add_argument("database")
    run.add_argument("--batch", type=int, default=1, help="jobs claimed per transaction")
    args = parser.parse_args(argv)
    try:
        worker(args.database, max(1, args.batch))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
