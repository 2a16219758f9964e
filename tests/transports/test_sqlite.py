"""What only the SQLite transport does: boots, file modes, locks, query plans, and the
application's own transactions (the shared contract: test_contract.py)."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
from pathlib import Path

import pytest

from liteq import OperationalError
from liteq.messages import Message
from liteq.transports.base import (
    ControlCommand,
    LostTaskPolicy,
    ResultRecord,
    Settlement,
    Tally,
    TaskCount,
)
from liteq.transports.sqlite import SQLiteTransport, queries
from liteq.transports.sqlite.schema import SCHEMA_VERSION

LOST = ResultRecord("", "FAILURE", payload=b'"lost"')
EXHAUSTED = ResultRecord("", "FAILURE", payload=b'"exhausted"')
POLICY = LostTaskPolicy(max_deliveries=3, lost=LOST, exhausted=EXHAUSTED)


@pytest.fixture
def transport(tmp_path: Path):
    t = SQLiteTransport(str(tmp_path / "t.db"), {"busy_timeout": 2})
    t.open()
    yield t
    t.close()


def envelope(task_id: str, priority: int = 0, eta: float | None = None, queue: str = "celery",
             acks_late: bool = False):
    return Message(id=task_id, task="t.add", args=(1, 2), queue=queue, priority=priority,
                   eta=eta, acks_late=acks_late).encode()


def state_of(transport: SQLiteTransport, task_id: str) -> str | None:
    """Where a message is (a test-only scan: messages have no task id index)."""
    row = transport.database.conn.execute(
        "SELECT state FROM liteq_messages WHERE task_id = ?", (task_id,)).fetchone()
    return None if row is None else {0: "ready", 1: "leased", 2: "scheduled"}[row[0]]


def test_a_reboot_expires_old_leases(tmp_path: Path) -> None:
    path = str(tmp_path / "t.db")
    t = SQLiteTransport(path, {})
    t.open()
    t.publish([envelope("x", acks_late=True)])
    t.claim(["celery"], 1, "w", 3600)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE liteq_meta SET value = 'another-boot' WHERE key = 'boot_id'")
    t.close()
    fresh = SQLiteTransport(path, {})
    fresh.open()
    assert fresh.reap_expired(POLICY).requeued == ["x"]


def test_files_are_private(transport: SQLiteTransport) -> None:
    for suffix in ("", "-wal", "-shm"):
        mode = stat.S_IMODE(os.stat(transport.path + suffix).st_mode)
        assert mode == 0o600, (suffix, oct(mode))
    with sqlite3.connect(transport.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_synchronous_setting(tmp_path: Path) -> None:
    full = SQLiteTransport(f"sqlite:///{tmp_path / 'f.db'}?synchronous=full", {})
    full.open()
    assert full.database.conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    normal = SQLiteTransport(str(tmp_path / "n.db"), {})
    assert normal.database.conn.execute("PRAGMA synchronous").fetchone()[0] == 1


def test_a_held_lock_ends_in_operational_error_naming_the_file(tmp_path: Path) -> None:
    t = SQLiteTransport(str(tmp_path / "t.db"), {"busy_timeout": 0.3})
    t.open()
    blocker = sqlite3.connect(t.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with pytest.raises(OperationalError, match=r"t\.db stayed locked.*0\.3s"):
            t.publish([envelope("x")])
        assert 0.25 < time.monotonic() - started < 3
    finally:
        blocker.execute("ROLLBACK")
    t.publish([envelope("x")])  # nothing half-done, and it works again
    assert t.depth()["celery"].ready == 1


def test_a_briefly_held_lock_is_waited_for(tmp_path: Path) -> None:
    t = SQLiteTransport(str(tmp_path / "t.db"), {"busy_timeout": 5})
    t.open()
    blocker = sqlite3.connect(t.path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    threading.Timer(0.3, lambda: blocker.execute("COMMIT")).start()
    t.publish([envelope("x")])
    assert t.depth()["celery"].ready == 1


def test_many_threads_publishing_never_see_database_is_locked(tmp_path: Path) -> None:
    t = SQLiteTransport(str(tmp_path / "t.db"), {})
    t.open()
    errors: list[BaseException] = []

    def produce(n: int) -> None:
        try:
            for i in range(200):
                t.publish([envelope(f"{n}-{i}")])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert t.depth()["celery"].ready == 1600


@pytest.mark.parametrize("name,sql,params", [
    ("claim one queue", queries.claim(1), {"q0": "a", "limit": 5, "lease_until": 0, "worker": "w"}),
    ("claim three queues", queries.claim(3),
     {"q0": "a", "q1": "b", "q2": "c", "limit": 5, "lease_until": 0, "worker": "w"}),
    ("promote", queries.PROMOTE, {"queue": "a", "now": 0}),
    ("promote three queues", queries.promote(3), {"q0": "a", "q1": "b", "q2": "c", "now": 0}),
    ("claimable three queues", queries.claimable(3),
     {"q0": "a", "q1": "b", "q2": "c", "now": 0}),
    ("expired", queries.EXPIRED, {"now": 0}),
    ("expired holders", queries.EXPIRED_HOLDERS, {"now": 0}),
    ("hold lease", queries.HOLD_LEASE, {"worker": "w", "lease_until": 0}),
    ("extend", queries.EXTEND_LEASES, {"lease_until": 0, "lo": "w", "hi": "w0"}),
    ("release worker", queries.RELEASE_WORKER, ("w/1",)),
    ("lease info", queries.LEASE_INFO, (1, 2)),
    ("ready exists", queries.READY_EXISTS, ("a",)),
    ("due exists", queries.DUE_EXISTS, ("a", 0)),
    ("next eta", queries.NEXT_ETA, ("a",)),
    ("ack", queries.ACK, (1, 1)),
    ("orphaned (in-flight rows only)", queries.ORPHANED, ()),
    ("is leased (in-flight rows only)", queries.IS_LEASED, ("x",)),
    ("expire results", queries.EXPIRE_RESULTS, {"now": 0, "limit": 10}),
    ("expire chords", queries.EXPIRE_CHORDS, (0,)),
    ("chord count", queries.CHORD_PART_COUNT, ("c",)),
    ("chord members", queries.CHORD_MEMBERS, ("c",)),
])
def test_hot_queries_use_an_index(transport: SQLiteTransport, name: str, sql: str,
                                  params: object) -> None:
    plan = transport.database.conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
    details = [row[-1] for row in plan]
    # Every table access is a SEARCH through an index. The only SCANs allowed: small
    # bounded subquery results (the per-queue branches of a multi-queue claim), the tiny
    # leases table (one row per worker process), and, for the orphan check, the partial
    # index of leased rows (the in-flight set, never the queue).
    allowed = {"SCAN l", "SCAN liteq_leases", "SCAN CONSTANT ROW"}  # CONSTANT: no table
    if "in-flight rows only" in name:
        allowed.add("SCAN liteq_messages USING INDEX liteq_messages_worker")
    scans = [d for d in details if d.startswith("SCAN") and "subquery" not in d]
    assert set(scans) <= allowed, (name, details)
    if name == "claim one queue":
        assert "SEARCH liteq_messages USING INDEX liteq_messages_ready (queue=?)" in details
        assert not any("TEMP B-TREE" in d for d in details), details


def test_app_transaction_commits_or_rolls_back_with_the_task(tmp_path: Path) -> None:
    from liteq import LiteQ

    app = LiteQ("x", broker=str(tmp_path / "t.db"))

    @app.task
    def ship(order):
        return order

    app.broker.open()
    with app.transaction() as conn:
        conn.execute("CREATE TABLE orders (id INTEGER)")
    with app.transaction() as conn:
        conn.execute("INSERT INTO orders VALUES (1)")
        kept = ship.delay(1)
    with pytest.raises(RuntimeError), app.transaction() as conn:
        conn.execute("INSERT INTO orders VALUES (2)")
        dropped = ship.delay(2)
        raise RuntimeError("abort")
    assert state_of(app.broker, kept.id) == "ready"
    assert state_of(app.broker, dropped.id) is None
    with sqlite3.connect(app.broker.location) as conn:
        assert conn.execute("SELECT id FROM orders").fetchall() == [(1,)]


def test_publish_through_the_callers_own_connection(tmp_path: Path) -> None:
    from liteq import LiteQ

    app = LiteQ("x", broker=str(tmp_path / "t.db"))

    @app.task
    def ship(order):
        return order

    app.broker.open()
    conn = sqlite3.connect(app.broker.location, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    res = ship.apply_async((1,), connection=conn)
    assert state_of(app.broker, res.id) is None  # not visible before commit
    conn.execute("ROLLBACK")
    assert state_of(app.broker, res.id) is None
    conn.execute("BEGIN IMMEDIATE")
    res = ship.apply_async((2,), connection=conn)
    conn.execute("COMMIT")
    assert state_of(app.broker, res.id) == "ready"


def test_a_schema_1_file_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    first = SQLiteTransport(str(path), {})
    first.store_results([ResultRecord("kept", "SUCCESS")])
    first.close()
    with sqlite3.connect(path) as conn:  # back to what liteq's first schema wrote
        conn.execute("DROP TABLE liteq_chord_parts")
        conn.execute("DROP TABLE liteq_control")
        conn.execute("DROP TABLE liteq_control_replies")
        conn.execute(f"PRAGMA user_version = {(0x4C51 << 16) + 1}")
    conn.close()
    transport = SQLiteTransport(str(path), {})
    try:
        assert transport.chord_part_done("c", "m", 0, 1, None) == ["m"]
        conn = transport.database.conn
        assert conn.execute("PRAGMA user_version").fetchone()[0] == (0x4C51 << 16) + SCHEMA_VERSION
        assert transport.get_result("kept") is not None
        transport.send_control(ControlCommand("t", "ping"), 60)  # the v4 tables
        assert [c.name for c in transport.read_control("0")[0]] == ["ping"]
    finally:
        transport.close()


def test_a_schema_2_file_is_migrated_to_children_and_groups(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    first = SQLiteTransport(str(path), {})
    first.store_results([ResultRecord("kept", "SUCCESS")])
    first.close()
    with sqlite3.connect(path) as conn:  # back to what schema 2 wrote
        conn.execute("DROP TABLE liteq_groups")
        conn.execute("ALTER TABLE liteq_results DROP COLUMN children")
        conn.execute(f"PRAGMA user_version = {(0x4C51 << 16) + 2}")
    conn.close()
    transport = SQLiteTransport(str(path), {})
    try:
        assert transport.get_result("kept").children is None
        transport.store_results([ResultRecord("new", "SUCCESS", children=b"[]")])
        assert transport.get_result("new").children == b"[]"
        transport.save_group("g", b"[]", None)
        assert transport.get_group("g") == b"[]"
        conn = transport.database.conn
        assert conn.execute("PRAGMA user_version").fetchone()[0] == (0x4C51 << 16) + SCHEMA_VERSION
    finally:
        transport.close()


def test_a_schema_4_file_is_migrated_to_counters_and_the_timeline(tmp_path: Path) -> None:
    path = tmp_path / "v4.db"
    first = SQLiteTransport(str(path), {})
    first.store_results([ResultRecord("kept", "SUCCESS")])
    first.close()
    with sqlite3.connect(path) as conn:  # back to what schema 4 wrote
        conn.execute("DROP TABLE liteq_stats")
        conn.execute("ALTER TABLE liteq_results DROP COLUMN date_received")
        conn.execute("ALTER TABLE liteq_results DROP COLUMN date_started")
        conn.execute(f"PRAGMA user_version = {(0x4C51 << 16) + 4}")
    conn.close()
    transport = SQLiteTransport(str(path), {})
    try:
        assert transport.get_result("kept").date_started is None
        transport.publish([envelope("x")])
        (delivery,) = transport.claim(["celery"], 1, "w", 30)
        record = ResultRecord("x", "SUCCESS", date_received=1.0, date_started=2.0)
        assert transport.settle([Settlement(delivery, record, tally=Tally("t.add", "SUCCESS"))])
        assert transport.get_result("x").date_started == 2.0
        assert [row.count for row in transport.task_counts()] == [1]
        conn = transport.database.conn
        assert conn.execute("PRAGMA user_version").fetchone()[0] == (0x4C51 << 16) + SCHEMA_VERSION
    finally:
        transport.close()


def test_old_counters_are_summed_so_totals_never_go_down(transport: SQLiteTransport) -> None:
    conn = transport.database.conn
    now = time.time()
    old, recent = (now - 9 * 86400) // 60 * 60, now // 60 * 60
    for minute in (old, old + 60, recent):
        conn.execute(queries.count_tasks(1), (minute, "t.add", "SUCCESS", 3, 2, 0.5))
    before = transport.task_counts()
    transport.maintain()  # a worker's housekeeping prunes the counters
    assert transport.task_counts() == before == [TaskCount(0.0, "t.add", "SUCCESS", 3, 6, 1.5)]
    assert [row.minute for row in transport.task_counts(0.0)] == [0.0, recent]


def test_a_worker_of_many_queues_promotes_and_finds_work_in_any_of_them(
    transport: SQLiteTransport,
) -> None:
    queues = [f"q{n}" for n in range(5)]
    # Nothing anywhere: an idle probe finds nothing (and takes no write lock).
    assert transport.claim(queues, 10, "w", 60) == []
    transport.publish([envelope("due", eta=time.time() + 0.05, queue="q3"),
                       envelope("later", eta=time.time() + 3600, queue="q1"),
                       envelope("ready", queue="q4"),
                       envelope("elsewhere", queue="other")])
    time.sleep(0.06)  # the eta of "due" must pass
    claimed = transport.claim(queues, 10, "w", 60)
    assert sorted(d.task_id for d in claimed) == ["due", "ready"]
    assert state_of(transport, "later") == "scheduled"
    assert state_of(transport, "elsewhere") == "ready"
    assert transport.claim(queues, 10, "w", 60) == []
