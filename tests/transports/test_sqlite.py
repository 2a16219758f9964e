"""The SQLite transport's contract: ordering, leases, fencing, reaping, plans, contention."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from liteq import OperationalError, _clock
from liteq.messages import Message
from liteq.transports.base import LostTaskPolicy, ResultRecord, Settlement
from liteq.transports.sqlite import SQLiteTransport, queries

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


def ids(deliveries) -> list[str]:
    return [d.task_id for d in deliveries]


def state_of(transport: SQLiteTransport, task_id: str) -> str | None:
    """Where a message is (a test-only scan: messages have no task id index)."""
    row = transport.database.conn.execute(
        "SELECT state FROM liteq_messages WHERE task_id = ?", (task_id,)).fetchone()
    return None if row is None else {0: "ready", 1: "leased", 2: "scheduled"}[row[0]]


def test_claim_order_priority_then_eta_then_arrival(transport: SQLiteTransport) -> None:
    now = time.time()
    transport.publish([envelope("late-eta", eta=now - 1), envelope("a")])
    transport.publish([envelope("hi", priority=9), envelope("b")])
    transport.publish([envelope("early-eta", eta=now - 100), envelope("hi2", priority=9)])
    claimed = transport.claim(["celery"], 10, "w", 30)
    assert ids(claimed) == ["hi", "hi2", "early-eta", "late-eta", "a", "b"]
    assert len({d.token for d in claimed}) == 6
    assert all(d.deliveries == 1 for d in claimed)


def test_claim_respects_the_limit_and_queues(transport: SQLiteTransport) -> None:
    transport.publish([envelope(f"m{i}") for i in range(5)] + [envelope("other", queue="q2")])
    assert ids(transport.claim(["celery"], 2, "w", 30)) == ["m0", "m1"]
    assert ids(transport.claim(["q2", "celery"], 10, "w", 30)) == ["m2", "m3", "m4", "other"]
    assert transport.claim(["celery", "q2"], 10, "w", 30) == []


def test_scheduled_messages_wait_until_due(transport: SQLiteTransport) -> None:
    transport.publish([envelope("soon", eta=time.time() + 0.3)])
    assert state_of(transport, "soon") == "scheduled"
    assert transport.claim(["celery"], 10, "w", 30) == []
    eta = transport.next_eta(["celery"])
    assert eta is not None and eta > time.time()
    time.sleep(max(0, eta - time.time()) + 0.01)
    assert ids(transport.claim(["celery"], 10, "w", 30)) == ["soon"]
    assert state_of(transport, "soon") == "leased"


def test_settle_is_fenced_by_the_lease_token(transport: SQLiteTransport) -> None:
    transport.publish([envelope("x")])
    (delivery,) = transport.claim(["celery"], 1, "w", 30)
    forged = replace(delivery, token=delivery.token + 1)
    result = ResultRecord("x", "SUCCESS", payload=b"3")
    assert transport.settle([Settlement(forged, result)]) == [False]
    assert transport.get_result("x") is None
    assert transport.settle([Settlement(delivery, result)]) == [True]
    assert transport.get_result("x").payload == b"3"
    assert state_of(transport, "x") is None
    assert transport.settle([Settlement(delivery, result)]) == [False]  # only once


def test_a_late_ack_after_takeover_is_refused(transport: SQLiteTransport, monkeypatch) -> None:
    transport.publish([envelope("x", acks_late=True)])
    (first,) = transport.claim(["celery"], 1, "worker-a", 5)
    clock = time.clock_gettime(time.CLOCK_BOOTTIME)
    monkeypatch.setattr(_clock, "lease_clock", lambda: clock + 10)
    report = transport.reap_expired(POLICY)
    assert report.requeued == ["x"] and report.failed == []
    (second,) = transport.claim(["celery"], 1, "worker-b", 30)
    assert second.deliveries == 2
    assert transport.extend_leases("worker-a", 30) == 0  # A cannot renew B's lease
    late = ResultRecord("x", "SUCCESS", payload=b'"from A"')
    assert transport.settle([Settlement(first, late)]) == [False]
    assert transport.settle([Settlement(second, replace(late, payload=b'"from B"'))]) == [True]
    assert transport.get_result("x").payload == b'"from B"'


def test_reaping_without_acks_late_records_worker_lost(transport: SQLiteTransport,
                                                        monkeypatch) -> None:
    transport.publish([envelope("x")])
    transport.claim(["celery"], 1, "w", 5)
    clock = time.clock_gettime(time.CLOCK_BOOTTIME)
    monkeypatch.setattr(_clock, "lease_clock", lambda: clock + 10)
    assert transport.reap_expired(POLICY).failed == ["x"]
    stored = transport.get_result("x")
    assert stored.state == "FAILURE" and stored.payload == b'"lost"'
    assert stored.task_name == "t.add"
    assert state_of(transport, "x") is None


def test_delivery_limit_ends_a_task_that_keeps_killing_its_worker(
        transport: SQLiteTransport, monkeypatch) -> None:
    transport.publish([envelope("poison", acks_late=True)])
    base = time.clock_gettime(time.CLOCK_BOOTTIME)
    for attempt in range(1, 4):
        monkeypatch.setattr(_clock, "lease_clock", lambda a=attempt: base + 100 * a)
        (delivery,) = transport.claim(["celery"], 1, "w", 5)
        assert delivery.deliveries == attempt
        monkeypatch.setattr(_clock, "lease_clock", lambda a=attempt: base + 100 * a + 50)
        report = transport.reap_expired(POLICY)
    assert report.failed == ["poison"]
    assert transport.get_result("poison").payload == b'"exhausted"'


def test_lose_applies_the_policy_now_and_release_does_not_count(
        transport: SQLiteTransport) -> None:
    transport.publish([envelope("a", acks_late=True), envelope("b"), envelope("c")])
    a, b, c = transport.claim(["celery"], 3, "w", 30)
    report = transport.lose([a, b], POLICY)
    assert report.requeued == ["a"] and report.failed == ["b"]
    assert transport.settle([Settlement(c, release=True)]) == [True]
    again = transport.claim(["celery"], 3, "w", 30)
    assert {d.task_id: d.deliveries for d in again} == {"a": 2, "c": 1}


def test_interim_states_never_overwrite_a_final_one(transport: SQLiteTransport) -> None:
    transport.store_results([ResultRecord("x", "SUCCESS", payload=b"1")])
    assert transport.store_result(ResultRecord("x", "STARTED")) is True
    assert transport.get_result("x").state == "SUCCESS"
    transport.publish([envelope("y")])
    (delivery,) = transport.claim(["celery"], 1, "w", 30)
    assert transport.store_result(ResultRecord("y", "PROGRESS"), fence=delivery)
    stale = replace(delivery, token=delivery.token ^ 1)
    assert not transport.store_result(ResultRecord("y", "OTHER"), fence=stale)
    assert transport.get_result("y").state == "PROGRESS"


def test_results_expire(transport: SQLiteTransport) -> None:
    old = ResultRecord("old", "SUCCESS", date_done=time.time() - 100, expires_in=10)
    keep = ResultRecord("keep", "SUCCESS", expires_in=None)
    fresh = ResultRecord("fresh", "SUCCESS", expires_in=3600)
    transport.store_results([old, keep, fresh])
    assert transport.expire_results() == 1
    assert transport.get_result("old") is None
    assert transport.get_result("keep") and transport.get_result("fresh")


def test_depth_and_purge(transport: SQLiteTransport) -> None:
    transport.publish([envelope("a"), envelope("b", eta=time.time() + 60), envelope("c")])
    transport.claim(["celery"], 1, "w", 30)
    depth = transport.depth()["celery"]
    assert (depth.ready, depth.scheduled, depth.leased) == (1, 1, 1)
    assert transport.purge() == 2
    assert transport.depth()["celery"].total == 1


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
])
def test_hot_queries_use_an_index(transport: SQLiteTransport, name: str, sql: str,
                                  params: object) -> None:
    plan = transport.database.conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
    details = [row[-1] for row in plan]
    # Every table access is a SEARCH through an index. The only SCANs allowed: small
    # bounded subquery results (the per-queue branches of a multi-queue claim), the tiny
    # leases table (one row per worker process), and, for the orphan check, the partial
    # index of leased rows (the in-flight set, never the queue).
    allowed = {"SCAN l", "SCAN liteq_leases"}
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
