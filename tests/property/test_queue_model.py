"""A state machine drives each transport against a model of the queue.

Invariant: every published message is in exactly one of ready, leased, done or failed,
as the model says; no settlement with a stale token is ever accepted. The lease clock
is the model's (SQLite: ``lease_clock``; Redis: the clock its scripts are given instead
of the server's ``TIME``).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

import liteq.transports.redis as redis_transport
from liteq import _clock
from liteq.messages import Message
from liteq.transports.base import LostTaskPolicy, ResultRecord, Settlement, Transport
from liteq.transports.redis import RedisTransport
from liteq.transports.sqlite import SQLiteTransport
from tests.transports.support import KINDS, states

LEASE = 10.0
POLICY = LostTaskPolicy(
    max_deliveries=3,
    lost=ResultRecord("", "FAILURE", payload=b'"lost"'),
    exhausted=ResultRecord("", "FAILURE", payload=b'"exhausted"'),
)
WORKERS = ("w1", "w2", "w3")


@dataclass
class Model:
    state: str = "ready"  # ready | leased | done | failed
    acks_late: bool = False
    deliveries: int = 0
    worker: str | None = None
    tokens: list[Any] = field(default_factory=list)


class QueueMachine(RuleBasedStateMachine):
    held = Bundle("held")
    #: "sqlite", or the URL of a Redis database the machine may flush
    target = "sqlite"

    def __init__(self) -> None:
        super().__init__()
        self.clock = 1000.0
        self.dir = tempfile.TemporaryDirectory()
        self.transport: Transport
        if self.target == "sqlite":
            self.module: Any = _clock
            self.transport = SQLiteTransport(f"{self.dir.name}/q.db", {})
        else:
            self.module = redis_transport
            self.transport = RedisTransport(self.target, {})
        self._saved_clock = self.module.lease_clock
        self.module.lease_clock = lambda: self.clock
        self.transport.open()
        if isinstance(self.transport, RedisTransport):
            self.transport._conn.client.flushdb()
        self.model: dict[str, Model] = {}
        #: lease deadline per holder: one lease covers everything a holder claimed
        self.holders: dict[str, float] = {}
        self.counter = 0

    def teardown(self) -> None:
        self.module.lease_clock = self._saved_clock
        self.transport.close()
        self.dir.cleanup()

    @rule(acks_late=st.booleans(), priority=st.integers(0, 3))
    def publish(self, acks_late: bool, priority: int) -> None:
        self.counter += 1
        task_id = f"t{self.counter}"
        self.transport.publish([Message(id=task_id, task="t", priority=priority,
                                        acks_late=acks_late).encode()])
        self.model[task_id] = Model(acks_late=acks_late)

    @rule(target=held, worker=st.sampled_from(WORKERS), limit=st.integers(1, 3))
    def claim(self, worker: str, limit: int) -> Any:
        claimed = self.transport.claim(["celery"], limit, worker, LEASE)
        ready = [k for k, m in self.model.items() if m.state == "ready"]
        assert len(claimed) == min(limit, len(ready))
        for delivery in claimed:
            entry = self.model[delivery.task_id]
            assert entry.state == "ready"
            entry.state, entry.worker = "leased", worker
            entry.deliveries += 1
            entry.tokens.append(delivery.token)
            assert delivery.deliveries == entry.deliveries
        if claimed:
            self.holders[worker] = max(self.holders.get(worker, 0.0), self.clock + LEASE)
        return claimed

    @rule(batch=held, succeed=st.booleans())
    def settle(self, batch: list[Any], succeed: bool) -> None:
        for delivery in batch:
            entry = self.model[delivery.task_id]
            current = entry.state == "leased" and entry.tokens[-1] == delivery.token
            result = ResultRecord(delivery.task_id, "SUCCESS" if succeed else "FAILURE")
            (accepted,) = self.transport.settle([Settlement(delivery, result)])
            assert accepted == current, "a stale token was accepted" if accepted else "refused"
            if accepted:
                entry.state = "done" if succeed else "failed"

    @rule(batch=held)
    def release(self, batch: list[Any]) -> None:
        for delivery in batch:
            entry = self.model[delivery.task_id]
            current = entry.state == "leased" and entry.tokens[-1] == delivery.token
            (accepted,) = self.transport.settle([Settlement(delivery, release=True)])
            assert accepted == current
            if accepted:
                entry.state, entry.worker = "ready", None
                entry.deliveries -= 1

    @rule(seconds=st.floats(0, 2 * LEASE))
    def advance_clock(self, seconds: float) -> None:
        self.clock += seconds

    @rule(target=held, worker=st.sampled_from(WORKERS))
    def takeover(self, worker: str) -> Any:
        """Leases run out, the reaper requeues, and another worker claims."""
        self.advance_clock(LEASE + 1)
        self.reap()
        return self.claim(worker, 3)

    @rule(worker=st.sampled_from(WORKERS))
    def renew(self, worker: str) -> None:
        renewed = self.transport.extend_leases(worker, LEASE)
        assert renewed == (1 if worker in self.holders else 0)
        if worker in self.holders:
            self.holders[worker] = self.clock + LEASE

    @rule()
    def reap(self) -> None:
        report = self.transport.reap_expired(POLICY)
        expired = {w for w, until in self.holders.items() if until < self.clock}
        for worker in expired:
            del self.holders[worker]
        expected_requeued, expected_failed = set(), set()
        for task_id, entry in self.model.items():
            if entry.state == "leased" and entry.worker in expired:
                if entry.acks_late and entry.deliveries < POLICY.max_deliveries:
                    expected_requeued.add(task_id)
                    entry.state, entry.worker = "ready", None
                else:
                    expected_failed.add(task_id)
                    entry.state = "failed"
        assert set(report.requeued) == expected_requeued
        assert set(report.failed) == expected_failed

    @rule(batch=held)
    def worker_died(self, batch: list[Any]) -> None:
        report = self.transport.lose(batch, POLICY)
        for delivery in batch:
            entry = self.model[delivery.task_id]
            if entry.state != "leased" or entry.tokens[-1] != delivery.token:
                assert delivery.task_id not in report.requeued + report.failed
                continue
            if entry.acks_late and entry.deliveries < POLICY.max_deliveries:
                entry.state, entry.worker = "ready", None
                assert delivery.task_id in report.requeued
            else:
                entry.state = "failed"
                assert delivery.task_id in report.failed

    @invariant()
    def every_message_is_in_exactly_the_modelled_state(self) -> None:
        where = states(self.transport)
        assert set(where) <= set(self.model)
        for task_id, entry in self.model.items():
            stored = where.get(task_id)
            assert self.transport.is_leased(task_id) == (stored == "leased")
            result = self.transport.get_result(task_id)
            if entry.state == "ready":
                assert stored == "ready" and result is None, task_id
            elif entry.state == "leased":
                assert stored == "leased" and result is None, task_id
            else:
                assert stored is None, task_id
                assert result is not None
                assert result.state == ("SUCCESS" if entry.state == "done" else "FAILURE")
        depth = self.transport.depth(["celery"])["celery"]
        assert depth.ready == sum(m.state == "ready" for m in self.model.values())
        assert depth.leased == sum(m.state == "leased" for m in self.model.values())


SETTINGS = settings(max_examples=100, stateful_step_count=30, deadline=None)


@pytest.mark.parametrize("kind", KINDS)
def test_queue_model(kind: str, request: pytest.FixtureRequest) -> None:
    target = "sqlite" if kind == "sqlite" else request.getfixturevalue("redis_url")

    class Machine(QueueMachine):
        pass

    Machine.target = target
    run_state_machine_as_test(Machine, settings=SETTINGS)
