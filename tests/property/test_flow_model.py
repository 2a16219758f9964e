"""The queue's state machine (``test_queue_model``) with flow control: concurrency
limits per key, unique keys and paused queues, on each transport.

Invariant, on top of the queue's: a limited key never has more ready or leased
messages than its limit; its waiting ones are *blocked* and the oldest is admitted as
soon as a slot is free (settle, lost lease); a unique key stores one message while its
task waits or runs; a paused queue gives nothing to a claim.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule, run_state_machine_as_test

from liteq.messages import Flow, Message
from tests.property.test_queue_model import SETTINGS, WORKERS, Model, QueueMachine
from tests.transports.support import KINDS, states

LIMIT = 2
KEYS = ("a", "b")


class FlowMachine(QueueMachine):
    def __init__(self) -> None:
        super().__init__()
        self.limited: dict[str, str] = {}  # task id -> concurrency key
        self.unique: dict[str, str] = {}  # task id -> unique key
        self.paused = False

    @rule(key=st.sampled_from(KEYS), acks_late=st.booleans())
    def publish_limited(self, key: str, acks_late: bool) -> None:
        self.counter += 1
        task_id = f"t{self.counter}"
        flow = Flow(concurrency_key=f"c:{key}", concurrency_limit=LIMIT)
        self.transport.publish([Message(id=task_id, task="t", acks_late=acks_late,
                                        flow=flow).encode()])
        self.model[task_id] = Model(state="blocked", acks_late=acks_late)
        self.limited[task_id] = key
        self._admit()

    @rule(key=st.sampled_from(("u1", "u2")))
    def publish_unique(self, key: str) -> None:
        self.counter += 1
        task_id = f"t{self.counter}"
        flow = Flow(unique_key=f"u:{key}")
        ids = self.transport.publish([Message(id=task_id, task="t", flow=flow).encode()])
        holder = [t for t, k in self.unique.items()
                  if k == key and self.model[t].state in ("ready", "leased")]
        assert ids == (holder or [task_id]), (ids, holder)
        if not holder:
            self.model[task_id] = Model()
            self.unique[task_id] = key

    @rule()
    def pause(self) -> None:
        assert self.transport.pause_queue("celery") == (not self.paused)
        self.paused = True

    @rule()
    def resume(self) -> None:
        assert self.transport.resume_queue("celery") == self.paused
        self.paused = False

    @rule(target=QueueMachine.held, worker=st.sampled_from(WORKERS), limit=st.integers(1, 3))
    def claim(self, worker: str, limit: int) -> Any:
        self._admit()  # slots freed by the rule before (a takeover's reap)
        if self.paused:
            assert self.transport.claim(["celery"], limit, worker, 10.0) == []
            return []
        return super().claim(worker, limit)

    def _admit(self) -> None:
        """What the transport does when a slot frees: the oldest blocked goes ready."""
        for key in KEYS:
            mine = sorted((int(t[1:]), t) for t, k in self.limited.items() if k == key)
            used = sum(self.model[t].state in ("ready", "leased") for _, t in mine)
            for _, task_id in mine:
                if self.model[task_id].state == "blocked" and used < LIMIT:
                    self.model[task_id].state = "ready"
                    used += 1

    @invariant()
    def every_message_is_in_exactly_the_modelled_state(self) -> None:
        self._admit()  # the rules of the queue machine end leases; slots free up
        where = states(self.transport)
        assert set(where) <= set(self.model)
        for task_id, entry in self.model.items():
            stored = where.get(task_id)
            if entry.state in ("ready", "leased", "blocked"):
                assert stored == entry.state, (task_id, stored, entry.state)
            else:
                assert stored is None, task_id
        depth = self.transport.depth(["celery"])["celery"]
        for state in ("ready", "leased", "blocked"):
            count = sum(m.state == state for m in self.model.values())
            assert getattr(depth, state) == count, (state, depth)
        for key in KEYS:
            running = [t for t, k in self.limited.items()
                       if k == key and self.model[t].state in ("ready", "leased")]
            assert len(running) <= LIMIT


@pytest.mark.parametrize("kind", KINDS)
def test_flow_model(kind: str, request: pytest.FixtureRequest) -> None:
    target = "sqlite" if kind == "sqlite" else request.getfixturevalue("redis_url")

    class Machine(FlowMachine):
        pass

    Machine.target = target
    run_state_machine_as_test(Machine, settings=SETTINGS)
