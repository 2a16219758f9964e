"""The consumer loop driven step by step: a scripted pool, injected clocks, a real store.

No worker process and no sleep: each test calls ``Consumer.step(now, wait=False)`` with
its own monotonic time, finishes tasks in the scripted pool when it chooses, and reads
what the loop stored through the app, as a user would (``AsyncResult``, ``depth()``).
Behaviour tests (tests/behaviour/) keep real worker processes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from liteq import LiteQ
from liteq.exceptions import WorkerLostError
from liteq.execute import DEFERRED, Outcome
from liteq.records import build_record, error_record
from liteq.states import FAILURE, SUCCESS
from liteq.transports.base import Delivery, LostTaskPolicy
from liteq.worker.consumer import IDLE_WAIT, SETTLE_AFTER, Consumer
from liteq.worker.pool import Finished, Pool

QUEUE = "celery"


class ScriptedPool(Pool):
    """A pool whose tasks finish when the test says, with the outcome it gives."""

    name = "scripted"

    def __init__(self, app: LiteQ, concurrency: int) -> None:
        # No AppSpec, no task finder: nothing runs here.
        self.generation = 0
        self.app = app
        self.concurrency = concurrency
        self._running: list[Delivery] = []
        self._done: list[Finished] = []

    def free(self) -> int:
        return self.concurrency - len(self._running) - len(self._done)

    def dispatch(self, delivery: Delivery) -> None:
        self._running.append(delivery)

    def collect(self) -> list[Finished]:
        done, self._done = self._done, []
        return done

    def running(self) -> list[Delivery]:
        return list(self._running)

    def has_results(self) -> bool:
        return bool(self._done)

    def stop(self, cold: bool) -> list[Finished]:
        return []

    def finish(self, count: int = 1, outcome: Any = "ok") -> list[Delivery]:
        """End the ``count`` oldest running tasks: SUCCESS with ``outcome`` as the value,
        or the given :class:`Outcome`, or None (the process was lost)."""
        ended, self._running = self._running[:count], self._running[count:]
        for delivery in ended:
            if outcome is None or isinstance(outcome, Outcome):
                result = outcome
            else:
                record = build_record(self.app, delivery.task_id, SUCCESS, outcome,
                                      task_name=delivery.task_name)
                result = Outcome(SUCCESS, record, runtime=0.001, summary=repr(outcome))
            self._done.append(Finished(delivery, result))
        return ended


class Wall:
    """An epoch clock the test sets."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def app(tmp_path: Path) -> Iterator[LiteQ]:
    app = LiteQ("unit", broker=f"sqlite:///{tmp_path / 'queue.db'}", set_as_current=False)
    yield app
    app.close()


def _policy(app: LiteQ) -> LostTaskPolicy:
    lost = error_record(app, "", FAILURE, WorkerLostError("lost"))
    return LostTaskPolicy(max_deliveries=5, lost=lost, exhausted=lost)


def _consumer(app: LiteQ, pool: ScriptedPool, *, capacity: int = 4,
              wall: Wall | None = None) -> Consumer:
    return Consumer(app, pool, [QUEUE], "unit@host:1", capacity=capacity, lease=60.0,
                    policy=_policy(app), clock=lambda: pytest.fail("step(now) was given"),
                    wall=wall or Wall())


def _send(app: LiteQ, count: int, **options: Any) -> list[str]:
    return [app.send_task("unit.add", (n, n), **options).id for n in range(count)]


def _state(app: LiteQ, task_id: str) -> str:
    return str(app.AsyncResult(task_id).state)


def test_claims_no_more_than_the_pool_can_start_then_settles_with_the_ack(app: LiteQ) -> None:
    ids = _send(app, 3)
    pool = ScriptedPool(app, concurrency=2)
    consumer = _consumer(app, pool)

    consumer.step(0.0, wait=False)
    assert [d.task_id for d in pool.running()] == ids[:2]  # first runtime unknown: 2
    assert app.broker.depth([QUEUE])[QUEUE].leased == 2

    pool.finish(2, outcome=8)
    consumer.step(0.001, wait=False)  # idle pool: settle at once, and claim the third
    assert [_state(app, i) for i in ids[:2]] == [SUCCESS, SUCCESS]
    assert app.AsyncResult(ids[0]).result == 8
    assert [d.task_id for d in pool.running()] == ids[2:]
    assert app.broker.depth([QUEUE])[QUEUE].total == 1  # two acked, one leased
    consumer.close()


def test_a_finished_task_waits_settle_after_to_share_a_transaction(app: LiteQ) -> None:
    first, _second = _send(app, 2)
    pool = ScriptedPool(app, concurrency=2)
    consumer = _consumer(app, pool)
    consumer.step(10.0, wait=False)
    assert len(pool.running()) == 2

    pool.finish(1)
    consumer.step(10.0, wait=False)
    assert _state(app, first) == "RECEIVED"  # still leased: the other task runs, not due
    assert consumer.timeout(10.0) == pytest.approx(SETTLE_AFTER)

    consumer.step(10.0 + SETTLE_AFTER, wait=False)
    assert _state(app, first) == SUCCESS
    consumer.close()


def test_results_in_another_store_are_stored_before_the_ack(app: LiteQ, tmp_path: Path) -> None:
    app.conf.result_backend = f"sqlite:///{tmp_path / 'results.db'}"
    [task_id] = _send(app, 1)
    pool = ScriptedPool(app, concurrency=1)
    consumer = _consumer(app, pool)
    consumer.step(0.0, wait=False)
    pool.finish(outcome="done")
    consumer.step(0.1, wait=False)

    assert app.backend is not app.broker
    assert app.backend.get_result(task_id) is not None
    assert app.broker.get_result(task_id) is None  # nothing written beside the queue
    assert app.AsyncResult(task_id).get(timeout=5) == "done"
    assert app.broker.depth([QUEUE])[QUEUE].total == 0
    consumer.close()


def test_a_rate_limited_task_goes_back_to_wait_in_the_queue(app: LiteQ) -> None:
    [task_id] = _send(app, 1)
    pool = ScriptedPool(app, concurrency=1)
    consumer = _consumer(app, pool)
    consumer.step(0.0, wait=False)
    pool.finish(outcome=Outcome(DEFERRED, summary="rate limited",
                                defer_until=time.time() + 60))
    consumer.step(0.1, wait=False)

    depth = app.broker.depth([QUEUE])[QUEUE]
    assert (depth.ready, depth.scheduled, depth.leased) == (0, 1, 0)
    assert _state(app, task_id) == "PENDING"
    assert pool.running() == []
    consumer.close()


def test_a_lost_task_is_recorded_through_the_lost_task_policy(app: LiteQ) -> None:
    [task_id] = _send(app, 1)
    pool = ScriptedPool(app, concurrency=1)
    consumer = _consumer(app, pool)
    consumer.step(0.0, wait=False)
    pool.finish(outcome=None)  # its process died
    consumer.step(0.1, wait=False)

    result = app.AsyncResult(task_id)
    assert result.state == FAILURE
    assert isinstance(result.result, WorkerLostError)
    consumer.close()


def test_the_wait_for_a_scheduled_message_follows_the_injected_wall_clock(
    app: LiteQ,
) -> None:
    wall = Wall()
    _send(app, 1, countdown=30)
    pool = ScriptedPool(app, concurrency=1)
    consumer = _consumer(app, pool, wall=wall)
    consumer.step(0.0, wait=False)  # nothing ready: learns when the next eta is due
    assert pool.running() == []

    eta = app.broker.next_eta([QUEUE])
    assert eta is not None
    wall.now = eta - 0.25
    assert consumer.timeout(0.0) == pytest.approx(0.25)
    wall.now = eta - 100
    assert consumer.timeout(0.0) == IDLE_WAIT
    consumer.close()


def test_a_warm_stop_claims_nothing_more_and_ends_once_running_tasks_settle(
    app: LiteQ,
) -> None:
    ids = _send(app, 3)
    pool = ScriptedPool(app, concurrency=1)
    consumer = _consumer(app, pool)
    consumer.step(0.0, wait=False)
    consumer.stop("warm")

    pool.finish()
    consumer.step(0.1, wait=False)
    assert _state(app, ids[0]) == SUCCESS
    assert pool.running() == []
    consumer.run()  # returns: stopping warm, nothing running, nothing to settle
    assert app.broker.depth([QUEUE])[QUEUE].ready == 2
    consumer.close()


def test_max_tasks_stops_the_consumer_warm_after_that_many(app: LiteQ) -> None:
    _send(app, 3)
    pool = ScriptedPool(app, concurrency=1)
    consumer = _consumer(app, pool, capacity=1)  # nothing prefetched: one at a time
    consumer.max_tasks = 2
    for now in (0.0, 0.1, 0.2):
        pool.finish()
        consumer.step(now, wait=False)
    assert consumer.processed == 2
    assert consumer.stopping == "warm"
    assert pool.running() == []  # the third, claimed with the second's ack, never starts
    consumer.return_prefetched()  # ... and goes back at shutdown, its delivery uncounted
    assert app.broker.depth([QUEUE])[QUEUE].ready == 1
    consumer.close()


def test_a_store_that_refuses_writes_keeps_outcomes_and_resumes(tmp_path: Path) -> None:
    import sqlite3

    app = LiteQ("unit", broker=f"sqlite:///{tmp_path / 'queue.db'}", set_as_current=False,
                sqlite_busy_timeout=0.2)
    ids = _send(app, 3)
    pool = ScriptedPool(app, concurrency=2)
    consumer = _consumer(app, pool)
    consumer.step(0.0, wait=False)
    holder = sqlite3.connect(str(tmp_path / "queue.db"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another program holds the write lock
    pool.finish(2)
    consumer.step(1.0, wait=False)  # the settle is refused: no exception, kept
    assert len(consumer.unsettled) == 2
    assert consumer.timeout(1.0) > 0.0  # waits to retry, no busy loop
    consumer.step(1.01, wait=False)  # before the retry is due: nothing is attempted
    holder.execute("ROLLBACK")
    holder.close()
    consumer.step(20.0, wait=False)
    assert consumer.unsettled == []
    assert [_state(app, task_id) for task_id in ids[:2]] == [SUCCESS, SUCCESS]
    assert consumer.processed == 2  # counted once, however often the write was tried
    pool.finish(1)
    consumer.step(21.0, wait=False)
    consumer.step(22.0, wait=False)
    assert _state(app, ids[2]) == SUCCESS
    consumer.close()
    app.close()
