"""The Transport contract, on every transport: ordering, leases, fencing, reaping,
results, beat, workers and wake-ups. (SQLite-only matters: test_sqlite.py; Redis-only
ones: test_redis.py.)"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from liteq.transports.base import (
    BeatEntry,
    InFlight,
    LostTaskPolicy,
    QueueDepth,
    ResultRecord,
    Revocation,
    Settlement,
    Tally,
    TaskCount,
    Transport,
    WorkerInfo,
    runtime_bucket,
)
from liteq.transports.sqlite import SQLiteTransport
from tests.transports.support import (
    KINDS,
    envelope,
    forged,
    ids,
    lease_now,
    make_transport,
    set_lease_clock,
    state_of,
)

LOST = ResultRecord("", "FAILURE", payload=b'"lost"')
EXHAUSTED = ResultRecord("", "FAILURE", payload=b'"exhausted"')
POLICY = LostTaskPolicy(max_deliveries=3, lost=LOST, exhausted=EXHAUSTED)


@pytest.fixture(params=KINDS)
def transport(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Transport]:
    t = make_transport(request.param, request, tmp_path)
    yield t
    t.close()


# -- messages ------------------------------------------------------------------------


def test_claim_order_priority_then_eta_then_arrival(transport: Transport) -> None:
    now = time.time()
    transport.publish([envelope("late-eta", eta=now - 1), envelope("a")])
    transport.publish([envelope("hi", priority=9), envelope("b")])
    transport.publish([envelope("early-eta", eta=now - 100), envelope("hi2", priority=9)])
    claimed = transport.claim(["celery"], 10, "w", 30)
    assert ids(claimed) == ["hi", "hi2", "early-eta", "late-eta", "a", "b"]
    assert len({d.token for d in claimed}) == 6
    assert all(d.deliveries == 1 for d in claimed)


def test_claim_respects_the_limit_and_queues(transport: Transport) -> None:
    transport.publish([envelope(f"m{i}") for i in range(5)] + [envelope("other", queue="q2")])
    assert ids(transport.claim(["celery"], 2, "w", 30)) == ["m0", "m1"]
    assert ids(transport.claim(["q2", "celery"], 10, "w", 30)) == ["m2", "m3", "m4", "other"]
    assert transport.claim(["celery", "q2"], 10, "w", 30) == []


def test_claim_over_several_queues_keeps_the_global_order(transport: Transport) -> None:
    transport.publish([envelope("a1", queue="a"), envelope("b1", queue="b", priority=5),
                       envelope("a2", queue="a", priority=5), envelope("b2", queue="b")])
    assert ids(transport.claim(["a", "b"], 3, "w", 30)) == ["b1", "a2", "a1"]
    assert ids(transport.claim(["b", "a", "b"], 3, "w", 30)) == ["b2"]


def test_scheduled_messages_wait_until_due(transport: Transport) -> None:
    transport.publish([envelope("soon", eta=time.time() + 0.3)])
    assert state_of(transport, "soon") == "scheduled"
    assert transport.claim(["celery"], 10, "w", 30) == []
    eta = transport.next_eta(["celery"])
    assert eta is not None and eta > time.time()
    assert transport.next_eta(["other"]) is None
    time.sleep(max(0, eta - time.time()) + 0.01)
    assert ids(transport.claim(["celery"], 10, "w", 30)) == ["soon"]
    assert state_of(transport, "soon") == "leased"


def test_settle_is_fenced_by_the_lease_token(transport: Transport) -> None:
    transport.publish([envelope("x")])
    (delivery,) = transport.claim(["celery"], 1, "w", 30)
    stale = replace(delivery, token=forged(delivery.token))
    result = ResultRecord("x", "SUCCESS", payload=b"3")
    assert transport.settle([Settlement(stale, result)]) == [False]
    assert transport.get_result("x") is None
    assert transport.settle([Settlement(delivery, result)]) == [True]
    assert transport.get_result("x").payload == b"3"
    assert state_of(transport, "x") is None
    assert transport.settle([Settlement(delivery, result)]) == [False]  # only once


def test_settle_publishes_follow_ups_with_the_result(transport: Transport) -> None:
    transport.publish([envelope("first")])
    (delivery,) = transport.claim(["celery"], 1, "w", 30)
    retry = envelope("first", eta=time.time() + 60)
    callback = envelope("next", queue="q2")
    record = ResultRecord("first", "RETRY", payload=b'"again"')
    assert transport.settle([Settlement(delivery, record, (retry, callback))]) == [True]
    assert transport.depth() == {"celery": QueueDepth(scheduled=1), "q2": QueueDepth(ready=1)}
    assert transport.get_result("first").state == "RETRY"
    stale = Settlement(delivery, record, (envelope("never"),))
    assert transport.settle([stale]) == [False]
    assert transport.depth()["q2"].ready == 1  # a refused settlement publishes nothing


def test_a_late_ack_after_takeover_is_refused(transport: Transport, monkeypatch) -> None:
    transport.publish([envelope("x", acks_late=True)])
    (first,) = transport.claim(["celery"], 1, "worker-a", 5)
    set_lease_clock(monkeypatch, transport, lease_now(transport) + 10)
    report = transport.reap_expired(POLICY)
    assert report.requeued == ["x"] and report.failed == []
    (second,) = transport.claim(["celery"], 1, "worker-b", 30)
    assert second.deliveries == 2
    assert transport.extend_leases("worker-a", 30) == 0  # A cannot renew B's lease
    late = ResultRecord("x", "SUCCESS", payload=b'"from A"')
    assert transport.settle([Settlement(first, late)]) == [False]
    assert not transport.store_result(ResultRecord("x", "PROGRESS"), fence=first)
    assert transport.lose([first], POLICY).failed == []
    assert transport.settle([Settlement(second, replace(late, payload=b'"from B"'))]) == [True]
    assert transport.get_result("x").payload == b'"from B"'


def test_zombie_acks_racing_takeovers_lose_nothing(transport: Transport, monkeypatch) -> None:
    """A's late acks after B took over must not remove B's messages: when B dies too,
    a third worker still gets all of them (a plain XACK would have lost them)."""
    transport.publish([envelope(f"z{i}", acks_late=True) for i in range(100)])
    base = lease_now(transport)
    set_lease_clock(monkeypatch, transport, base)
    held_by_a = transport.claim(["celery"], 100, "a", 5)
    set_lease_clock(monkeypatch, transport, base + 10)
    assert len(transport.reap_expired(POLICY).requeued) == 100
    assert len(transport.claim(["celery"], 100, "b", 5)) == 100
    done = [ResultRecord(d.task_id, "SUCCESS") for d in held_by_a]
    accepted = transport.settle([Settlement(d, r) for d, r in zip(held_by_a, done, strict=True)])
    assert accepted == [False] * 100
    set_lease_clock(monkeypatch, transport, base + 20)  # B dies as well
    assert len(transport.reap_expired(POLICY).requeued) == 100
    assert len(transport.claim(["celery"], 100, "c", 5)) == 100
    assert all(transport.get_result(f"z{i}") is None for i in range(100))


def test_reaping_without_acks_late_records_worker_lost(transport: Transport,
                                                        monkeypatch) -> None:
    transport.publish([envelope("x")])
    transport.claim(["celery"], 1, "w", 5)
    set_lease_clock(monkeypatch, transport, lease_now(transport) + 10)
    assert transport.reap_expired(POLICY).failed == ["x"]
    stored = transport.get_result("x")
    assert stored.state == "FAILURE" and stored.payload == b'"lost"'
    assert stored.task_name == "t.add"
    assert state_of(transport, "x") is None
    assert not transport.is_leased("x")


def test_delivery_limit_ends_a_task_that_keeps_killing_its_worker(
        transport: Transport, monkeypatch) -> None:
    transport.publish([envelope("poison", acks_late=True)])
    base = lease_now(transport)
    for attempt in range(1, 4):
        set_lease_clock(monkeypatch, transport, base + 100 * attempt)
        (delivery,) = transport.claim(["celery"], 1, "w", 5)
        assert delivery.deliveries == attempt
        set_lease_clock(monkeypatch, transport, base + 100 * attempt + 50)
        report = transport.reap_expired(POLICY)
    assert report.failed == ["poison"]
    assert transport.get_result("poison").payload == b'"exhausted"'


def test_leases_are_renewed_per_worker_and_its_pool_processes(transport: Transport,
                                                               monkeypatch) -> None:
    transport.publish([envelope(f"m{i}", acks_late=True) for i in range(4)])
    base = lease_now(transport)
    set_lease_clock(monkeypatch, transport, base)
    for holder in ("w1", "w1/0", "w1/1", "w10"):
        transport.claim(["celery"], 1, holder, 5)
    set_lease_clock(monkeypatch, transport, base + 4)
    assert transport.extend_leases("w1", 5) == 3  # w1, w1/0, w1/1; not w10
    set_lease_clock(monkeypatch, transport, base + 6)
    report = transport.reap_expired(POLICY)
    assert report.requeued == ["m3"]  # only w10's lease ran out
    assert transport.depth()["celery"] == QueueDepth(ready=1, leased=3)


def test_lose_applies_the_policy_now_and_release_does_not_count(transport: Transport) -> None:
    transport.publish([envelope("a", acks_late=True), envelope("b"), envelope("c")])
    a, b, c = transport.claim(["celery"], 3, "w", 30)
    report = transport.lose([a, b], POLICY)
    assert report.requeued == ["a"] and report.failed == ["b"]
    assert transport.settle([Settlement(c, release=True)]) == [True]
    again = transport.claim(["celery"], 3, "w", 30)
    assert {d.task_id: d.deliveries for d in again} == {"a": 2, "c": 1}


def test_release_worker_returns_what_a_dead_pool_process_held(transport: Transport) -> None:
    transport.publish([envelope("a"), envelope("b"), envelope("c")])
    transport.claim(["celery"], 2, "w/1", 30)
    (kept,) = transport.claim(["celery"], 1, "w/2", 30)
    assert transport.release_worker("w/1") == 2
    assert transport.release_worker("w/1") == 0
    assert transport.is_leased(kept.task_id)
    again = transport.claim(["celery"], 5, "w/3", 30)
    assert ids(again) == ["a", "b"] and all(d.deliveries == 1 for d in again)


def test_settle_and_claim_is_settle_then_claim(transport: Transport) -> None:
    transport.publish([envelope("a"), envelope("b"), envelope("c")])
    a, b = transport.claim(["celery"], 2, "w", 30)
    follow_up = envelope("d", priority=9)
    accepted, claimed = transport.settle_and_claim(
        [Settlement(a, ResultRecord("a", "SUCCESS", payload=b"3"), publish=(follow_up,)),
         Settlement(replace(b, token=forged(b.token)))], ["celery"], 5, "w", 30)
    assert accepted == [True, False]
    assert ids(claimed) == ["d", "c"]  # the follow-up it published is claimable at once
    assert transport.get_result("a").payload == b"3"
    assert state_of(transport, "a") is None and state_of(transport, "b") == "leased"
    assert transport.settle_and_claim([], ["celery"], 5, "w", 30) == ([], [])
    assert transport.settle_and_claim([Settlement(b)], ["celery"], 0, "w", 30) == ([True], [])


def test_a_release_until_waits_as_scheduled_and_does_not_count(transport: Transport) -> None:
    transport.publish([envelope("limited"), envelope("other")])
    limited, _ = transport.claim(["celery"], 2, "w", 30)
    due = time.time() + 0.4
    assert transport.settle([Settlement(limited, release=True, release_at=due)]) == [True]
    assert state_of(transport, "limited") == "scheduled"
    assert transport.next_eta(["celery"]) == pytest.approx(due)
    assert transport.claim(["celery"], 5, "w", 30) == []
    assert transport.settle([Settlement(limited, release=True, release_at=due)]) == [False]
    time.sleep(max(0.0, due - time.time()) + 0.05)
    (again,) = transport.claim(["celery"], 5, "w", 30)
    assert again.task_id == "limited" and again.deliveries == 1


def test_is_leased_and_depth_follow_the_message(transport: Transport) -> None:
    transport.publish([envelope("a"), envelope("b", eta=time.time() + 60), envelope("c")])
    assert not transport.is_leased("a")
    transport.claim(["celery"], 1, "w", 30)
    assert transport.is_leased("a") and not transport.is_leased("c")
    assert transport.depth() == {"celery": QueueDepth(ready=1, scheduled=1, leased=1)}
    assert transport.depth(["celery", "empty"])["empty"] == QueueDepth()
    assert transport.purge() == 2
    assert transport.depth()["celery"].total == 1
    assert transport.purge(["celery"]) == 0


def test_depth_and_purge_by_queue(transport: Transport) -> None:
    transport.publish([envelope("a"), envelope("b", queue="q2"),
                       envelope("c", queue="q2", eta=time.time() + 60)])
    assert transport.purge(["q2"]) == 2
    assert transport.depth() == {"celery": QueueDepth(ready=1)}
    assert transport.claim(["q2"], 5, "w", 30) == []


# -- results ---------------------------------------------------------------------------


def test_interim_states_never_overwrite_a_final_one(transport: Transport) -> None:
    transport.store_results([ResultRecord("x", "SUCCESS", payload=b"1")])
    assert transport.store_result(ResultRecord("x", "STARTED")) is True
    assert transport.get_result("x").state == "SUCCESS"
    transport.publish([envelope("y")])
    (delivery,) = transport.claim(["celery"], 1, "w", 30)
    assert transport.store_result(ResultRecord("y", "PROGRESS"), fence=delivery)
    stale = replace(delivery, token=forged(delivery.token))
    assert not transport.store_result(ResultRecord("y", "OTHER"), fence=stale)
    assert transport.get_result("y").state == "PROGRESS"


def test_results_round_trip_and_forget(transport: Transport) -> None:
    record = ResultRecord("r", "FAILURE", content_type="application/x-test", payload=b"\x00\xff",
                          traceback="Traceback: boom", date_done=time.time(), task_name="t.add",
                          worker="w1@host", retries=2, extended=b'{"args": []}',
                          expires_in=3600)
    transport.store_results([record])
    assert transport.get_result("r") == record
    # a later record without extended keeps the stored one; a traceback can go away
    transport.store_results([replace(record, state="SUCCESS", traceback=None, extended=None)])
    stored = transport.get_result("r")
    assert stored.state == "SUCCESS" and stored.traceback is None
    assert stored.extended == b'{"args": []}'
    transport.forget(["r", "unknown"])
    assert transport.get_result("r") is None


def test_results_expire(transport: Transport) -> None:
    old = ResultRecord("old", "SUCCESS", date_done=time.time() - 100, expires_in=10)
    keep = ResultRecord("keep", "SUCCESS", expires_in=None)
    fresh = ResultRecord("fresh", "SUCCESS", expires_in=3600)
    transport.store_results([old, keep, fresh])
    # SQLite deletes expired rows in the worker's expiry pass; Redis expires them itself.
    removed = transport.expire_results()
    assert removed == (1 if isinstance(transport, SQLiteTransport) else 0)
    assert transport.get_result("old") is None
    assert transport.get_result("keep") and transport.get_result("fresh")


def test_a_result_waiter_wakes_when_a_result_is_stored(transport: Transport) -> None:
    waiter = transport.result_waiter(["w1", "w2"])
    try:
        assert waiter.wait(0.05) is False
        started = time.monotonic()
        transport.store_results([ResultRecord("w2", "SUCCESS")])
        assert waiter.wait(5) is True
        assert time.monotonic() - started < 1
    finally:
        waiter.close()


def test_an_idle_listener_wakes_on_publish(transport: Transport) -> None:
    listener = transport.listen(["celery"])
    try:
        listener.drain()
        assert select.select([listener.fileno()], [], [], 0.05)[0] == []
        transport.publish([envelope("a")])
        assert select.select([listener.fileno()], [], [], 5)[0] == [listener.fileno()]
        listener.drain()
        assert select.select([listener.fileno()], [], [], 0.05)[0] == []
    finally:
        listener.close()


def test_the_results_listener_wakes_on_any_result(transport: Transport) -> None:
    listener = transport.results_listener()
    try:
        listener.drain()
        assert select.select([listener.fileno()], [], [], 0.05)[0] == []
        for task_id in ("any-1", "any-2"):  # ids nobody named in advance
            transport.store_results([ResultRecord(task_id, "SUCCESS")])
            assert select.select([listener.fileno()], [], [], 5)[0] == [listener.fileno()]
            listener.drain()
        transport.store_result(ResultRecord("any-3", "STARTED"))  # any state wakes it
        assert select.select([listener.fileno()], [], [], 5)[0] == [listener.fileno()]
    finally:
        listener.close()


# -- beat and workers -------------------------------------------------------------------


def test_beat_entries_sync_and_fire_once(transport: Transport) -> None:
    now = time.time()
    definition = b'{"task": "t.add", "args": [], "kwargs": {}, "options": {}}'
    entries = [BeatEntry("tick", definition, '{"every": 1.0}', now + 0.5),
               BeatEntry("old", definition, '{"every": 9.0}', now + 9)]
    assert [e.name for e in transport.beat_sync(entries)] == ["tick", "old"]
    assert transport.beat_fire("tick", now + 0.5, now + 1.5, now, envelope("fired"))
    assert not transport.beat_fire("tick", now + 0.5, now + 1.5, now, envelope("twice"))
    assert ids(transport.claim(["celery"], 5, "w", 30)) == ["fired"]
    assert transport.beat_fire("tick", now + 1.5, now + 2.5, now + 1, None)  # skipped
    tick = transport.beat_entries()[0]
    assert (tick.next_run_at, tick.last_run_at, tick.total_run_count) == (now + 2.5, now, 1)
    # unchanged entries keep their run times; changed ones take the new; gone ones go
    kept = transport.beat_sync([replace(entries[0], next_run_at=now + 99)])
    assert [(e.name, e.next_run_at, e.total_run_count) for e in kept] == [("tick", now + 2.5, 1)]
    changed = transport.beat_sync([replace(entries[0], schedule='{"every": 2.0}',
                                           next_run_at=now + 7)])
    assert [(e.next_run_at, e.last_run_at, e.total_run_count) for e in changed] == \
        [(now + 7, now, 1)]
    assert not transport.beat_fire("old", now + 9, now + 18, now, envelope("retired"))


def test_workers_register_heartbeat_and_leave(transport: Transport) -> None:
    started = time.time()
    for name in ("w1", "w2"):
        transport.register_worker(WorkerInfo(name, "host", 10, ("celery", "q2"), 4, "prefork",
                                             started, info={"n": name}))
    time.sleep(0.01)
    transport.heartbeat("w1", 30, {"active": 2})
    first, second = transport.workers()
    assert (first.id, first.info, second.id) == ("w1", {"active": 2}, "w2")
    assert first.queues == ("celery", "q2") and first.concurrency == 4 and first.pid == 10
    assert first.heartbeat_at >= started and first.started_at == started
    transport.unregister_worker("w1")
    assert [w.id for w in transport.workers()] == ["w2"]
    assert transport.heartbeat("gone", 30, {}) == 0


def test_a_heartbeat_renews_the_workers_leases(transport: Transport, monkeypatch) -> None:
    transport.register_worker(WorkerInfo("w", "host", 1, ("celery",), 1, "solo", time.time()))
    transport.publish([envelope("x", acks_late=True)])
    base = lease_now(transport)
    set_lease_clock(monkeypatch, transport, base)
    transport.claim(["celery"], 1, "w/0", 5)
    set_lease_clock(monkeypatch, transport, base + 4)
    assert transport.heartbeat("w", 5, {}) == 1
    set_lease_clock(monkeypatch, transport, base + 8)
    assert transport.reap_expired(POLICY).requeued == []
    set_lease_clock(monkeypatch, transport, base + 10)
    assert transport.reap_expired(POLICY).requeued == ["x"]


# -- control ---------------------------------------------------------------------------


def test_a_revoked_task_is_claimed_marked_revoked(transport: Transport) -> None:
    transport.publish([envelope("keep"), envelope("drop"), envelope("kill")])
    transport.revoke([Revocation("drop"), Revocation("kill", True, "SIGTERM")], 60)
    claimed = {d.task_id: d.revoked for d in transport.claim(["celery"], 5, "w", 30)}
    assert claimed == {"keep": False, "drop": True, "kill": True}
    assert transport.revoked(["keep", "kill", "never"]) == [Revocation("kill", True, "SIGTERM")]
    assert sorted(transport.revoked(), key=lambda r: r.task_id) == [
        Revocation("drop"), Revocation("kill", True, "SIGTERM")]
    assert len(transport.revoked(limit=1)) == 1


def test_revocations_are_forgotten_when_their_time_is_up(transport: Transport) -> None:
    transport.revoke([Revocation("brief")], 0.2)
    transport.revoke([Revocation("forever")], None)
    assert {r.task_id for r in transport.revoked()} == {"brief", "forever"}
    time.sleep(0.3)
    transport.expire_results()
    assert [r.task_id for r in transport.revoked()] == ["forever"]
    assert transport.revoked(["brief"]) == []
    transport.publish([envelope("brief")])
    assert [d.revoked for d in transport.claim(["celery"], 1, "w", 30)] == [False]


def test_in_flight_lists_what_each_holder_runs(transport: Transport) -> None:
    transport.publish([envelope("a"), envelope("b"), envelope("c", queue="q2"), envelope("d")])
    a, _ = transport.claim(["celery"], 2, "w1/0", 30)
    transport.claim(["q2"], 1, "w2", 30)
    assert sorted(transport.in_flight(), key=lambda f: f.task_id) == [
        InFlight("w1/0", "a", "t.add", "celery"), InFlight("w1/0", "b", "t.add", "celery"),
        InFlight("w2", "c", "t.add", "q2")]
    assert len(transport.in_flight(limit=2)) == 2
    transport.settle([Settlement(a)])
    assert {f.task_id for f in transport.in_flight()} == {"b", "c"}


# -- rate limits -----------------------------------------------------------------------


def test_a_token_bucket_is_shared_and_refills_at_its_rate(transport: Transport,
                                                         monkeypatch) -> None:
    base = lease_now(transport)
    set_lease_clock(monkeypatch, transport, base)
    assert [transport.take_token("t.add", rate=2.0, capacity=2) for _ in range(2)] == [0, 0]
    assert transport.take_token("t.add", rate=2.0, capacity=2) == pytest.approx(0.5)
    assert transport.take_token("other", rate=2.0) == 0  # buckets are per key
    set_lease_clock(monkeypatch, transport, base + 0.25)
    assert transport.take_token("t.add", rate=2.0, capacity=2) == pytest.approx(0.25)
    set_lease_clock(monkeypatch, transport, base + 0.5)
    assert transport.take_token("t.add", rate=2.0, capacity=2) == 0
    set_lease_clock(monkeypatch, transport, base + 100)  # a long idle refills to capacity
    assert [transport.take_token("t.add", rate=2.0, capacity=2) for _ in range(3)] == [
        0, 0, pytest.approx(0.5)]


# -- chords --------------------------------------------------------------------------


def test_a_chord_completes_once_for_the_member_that_finished_it(transport: Transport) -> None:
    # members finish out of order, and some are told twice (a redelivered unlock)
    assert transport.chord_part_done("c1", "m2", 2, 3, 3600) is None
    assert transport.chord_part_done("c1", "m0", 0, 3, 3600) is None
    assert transport.chord_part_done("c1", "m0", 0, 3, 3600) is None
    assert transport.chord_part_done("c1", "m1", 1, 3, 3600) == ["m0", "m1", "m2"]
    # the completing member gets the list again when asked again; the others never do
    assert transport.chord_part_done("c1", "m1", 1, 3, 3600) == ["m0", "m1", "m2"]
    assert transport.chord_part_done("c1", "m2", 2, 3, 3600) is None
    # chords are counted apart
    assert transport.chord_part_done("c2", "m0", 0, 1, None) == ["m0"]


def test_chord_counts_are_kept_until_their_time_is_up(transport: Transport) -> None:
    assert transport.chord_part_done("gone", "m0", 0, 2, 0.05) is None
    time.sleep(0.1)
    transport.expire_results()
    # a count past its time starts again (it is kept as long as results are)
    assert transport.chord_part_done("gone", "m1", 1, 2, 0.05) is None


def test_find_results_by_state_and_task_oldest_first(transport: Transport) -> None:
    now = time.time()
    transport.store_results([
        ResultRecord("f2", "FAILURE", task_name="t.b", date_done=now - 1),
        ResultRecord("f1", "FAILURE", task_name="t.a", date_done=now - 2),
        ResultRecord("f3", "FAILURE", task_name="t.a", date_done=now),
        ResultRecord("ok", "SUCCESS", task_name="t.a", date_done=now),
    ])
    assert [r.task_id for r in transport.find_results("FAILURE")] == ["f1", "f2", "f3"]
    assert [r.task_id for r in transport.find_results("FAILURE", "t.a")] == ["f1", "f3"]
    assert [r.task_id for r in transport.find_results("FAILURE", limit=1)] == ["f1"]
    assert [r.task_id for r in transport.find_results("SUCCESS")] == ["ok"]
    assert transport.find_results("REVOKED") == []


def test_children_are_stored_with_a_result_and_settled_with_it(transport: Transport) -> None:
    children = b'[[["c1", null], null]]'
    transport.store_results([ResultRecord("p", "SUCCESS", children=children)])
    assert transport.get_result("p").children == children
    transport.store_results([ResultRecord("p", "SUCCESS")])  # a later run sent nothing
    assert transport.get_result("p").children is None
    transport.publish([envelope("q")])
    (delivery,) = transport.claim(["celery"], 1, "w", 30)
    record = ResultRecord("q", "SUCCESS", children=children, date_done=time.time())
    assert transport.settle([Settlement(delivery, record)]) == [True]
    assert transport.get_result("q") == record


def test_groups_are_saved_restored_and_deleted(transport: Transport) -> None:
    members = b'[["g", null], [[["a", null], null]]]'
    assert transport.get_group("g") is None
    transport.save_group("g", members, 3600)
    assert transport.get_group("g") == members
    transport.save_group("g", b"[]", None)  # saved again: replaced
    assert transport.get_group("g") == b"[]"
    transport.forget_group("g")
    transport.forget_group("never-saved")
    assert transport.get_group("g") is None


def test_saved_groups_expire(transport: Transport) -> None:
    transport.save_group("short", b"[]", 0.05)
    transport.save_group("kept", b"[]", None)
    deadline = time.monotonic() + 5
    while transport.get_group("short") is not None:
        assert time.monotonic() < deadline
        transport.expire_results()
        time.sleep(0.02)
    assert transport.get_group("kept") == b"[]"


# -- health (liteq doctor) -------------------------------------------------------------


def test_health_describes_the_storage_without_changing_it(transport: Transport) -> None:
    transport.publish([envelope("h1")])
    before = transport.depth()
    facts = transport.health()
    assert transport.depth() == before
    if isinstance(transport, SQLiteTransport):
        assert facts["kind"] == "sqlite"
        assert facts["journal_mode"] == "wal"
        assert facts["synchronous"] == "NORMAL"
        assert facts["schema_version"] == facts["expected_schema_version"]
        assert facts["network_filesystem"] is False
        assert facts["file_modes"][transport.location] == 0o600
        assert facts["wal_bytes"] >= 0 and facts["wal_frames"] >= 0
    else:
        assert facts["kind"] == "redis"
        assert facts["version"][0].isdigit()
        assert isinstance(facts["aof_enabled"], bool)
        assert facts["maxmemory_policy"] == "noeviction"


# -- task counters and the timeline ----------------------------------------------------


def _counts(rows: list[TaskCount]) -> dict[tuple[str, str, int], tuple[int, float]]:
    found: dict[tuple[str, str, int], tuple[int, float]] = {}
    for row in rows:
        count, runtime = found.get((row.task_name, row.state, row.bucket), (0, 0.0))
        found[(row.task_name, row.state, row.bucket)] = (count + row.count,
                                                         runtime + row.runtime)
    return {key: (count, round(runtime, 6)) for key, (count, runtime) in found.items()}


def test_settling_counts_tasks_per_minute_with_or_without_a_result(
        transport: Transport) -> None:
    start = time.time()
    transport.publish([envelope(f"m{i}") for i in range(4)])
    deliveries = transport.claim(["celery"], 4, "w", 30)
    ok = [Settlement(d, ResultRecord(d.task_id, "SUCCESS"), tally=Tally("t.add", "SUCCESS", 0.02))
          for d in deliveries[:2]]
    ignored = Settlement(deliveries[2], tally=Tally("t.add", "SUCCESS", 0.03))  # ignore_result
    failed = Settlement(deliveries[3], ResultRecord("m3", "FAILURE"),
                        tally=Tally("t.add", "FAILURE", 7.0))
    stale = replace(deliveries[0], token=forged(deliveries[0].token))
    assert transport.settle([*ok, ignored, failed]) == [True] * 4
    assert transport.settle([Settlement(stale, tally=Tally("t.add", "SUCCESS", 0.02))]) == [False]
    expected = {("t.add", "SUCCESS", runtime_bucket(0.02)): (2, 0.04),
                ("t.add", "SUCCESS", runtime_bucket(0.03)): (1, 0.03),
                ("t.add", "FAILURE", runtime_bucket(7.0)): (1, 7.0)}
    rows = transport.task_counts(start - 60)
    assert _counts(rows) == expected  # a refused settlement counts nothing
    assert all(row.minute % 60 == 0 and start - 60 <= row.minute <= time.time() for row in rows)
    assert _counts(transport.task_counts()) == expected
    assert transport.task_counts(time.time() + 120) == []


def test_a_release_is_not_counted_and_a_lost_lease_is(transport: Transport) -> None:
    transport.publish([envelope("a", acks_late=True), envelope("b")])
    a, b = transport.claim(["celery"], 2, "w", 30)
    assert transport.settle([Settlement(a, release=True)]) == [True]
    transport.lose([b], POLICY)
    assert _counts(transport.task_counts()) == {("t.add", "LOST", -1): (1, 0.0),
                                                ("t.add", "FAILURE", -1): (1, 0.0)}


def test_results_keep_when_a_task_was_received_and_started(transport: Transport) -> None:
    transport.publish([envelope("x")])
    (delivery,) = transport.claim(["celery"], 1, "w", 30)
    started = ResultRecord("x", "STARTED", date_received=100.0, date_started=101.0)
    assert transport.store_result(started, fence=delivery)
    final = ResultRecord("x", "SUCCESS", payload=b"1")  # knows neither: both are kept
    assert transport.settle([Settlement(delivery, final)]) == [True]
    stored = transport.get_result("x")
    assert (stored.state, stored.date_received, stored.date_started) == ("SUCCESS", 100.0, 101.0)


def test_messages_lists_each_message_once_while_workers_claim(transport: Transport) -> None:
    transport.publish([envelope(f"m{i:03d}") for i in range(150)])
    done = threading.Event()

    def claim_one_by_one() -> None:
        while not done.is_set():
            _, claimed = transport.settle_and_claim([], ["celery"], 1, "w1", 60.0)
            if not claimed:
                return

    claimer = threading.Thread(target=claim_one_by_one)
    claimer.start()
    try:
        while claimer.is_alive():
            listed = [m.envelope.task_id
                      for m in transport.messages(states=["ready", "leased"])]
            assert len(listed) == len(set(listed)), "a message listed twice"
    finally:
        done.set()
        claimer.join(10)
    assert len(transport.messages(states=["leased"])) == 150
