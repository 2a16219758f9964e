"""Flow control in the transport contract (both transports): what the claim, publish
and settle decide for messages with a ``Flow``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from liteq.messages import Envelope, Flow, Message
from liteq.testing import wait_for
from liteq.transports.base import Settlement, Transport
from tests.transports.support import KINDS, ids, make_transport


@pytest.fixture(params=KINDS)
def transport(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Transport]:
    t = make_transport(request.param, request, tmp_path)
    if hasattr(t, "_conn"):
        t._conn.client.flushdb()
    yield t
    t.close()


def flowing(task_id: str, flow: Flow, eta: float | None = None) -> Envelope:
    return Message(id=task_id, task="t.add", args=(1, 2), eta=eta, flow=flow).encode()


def test_unique_until_started_frees_the_key_when_claimed(transport: Transport) -> None:
    flow = Flow(unique_key="u:k", unique_until="started")
    assert transport.publish([flowing("a", flow)]) == ["a"]
    assert transport.publish([flowing("b", flow), flowing("c", flow)]) == ["a", "a"]
    assert ids(transport.claim(["celery"], 10, "w", 30)) == ["a"]
    assert transport.publish([flowing("d", flow)]) == ["d"]


def test_a_unique_key_expires_after_unique_for(transport: Transport) -> None:
    flow = Flow(unique_key="u:k", unique_expires=time.time() + 0.5)
    assert transport.publish([flowing("a", flow)]) == ["a"]
    assert transport.publish([flowing("b", flow)]) == ["a"]
    later = Flow(unique_key="u:k")
    wait_for(lambda: transport.publish([flowing(f"n{time.monotonic_ns()}", later)]) != ["a"],
             timeout=10, message="the unique key to expire")


def test_a_retry_keeps_the_unique_key_and_a_finish_frees_it(transport: Transport) -> None:
    flow = Flow(unique_key="u:k")
    transport.publish([flowing("a", flow)])
    [first] = transport.claim(["celery"], 10, "w", 30)
    retry = flowing("a", flow, eta=time.time() + 60)
    assert transport.settle([Settlement(first, publish=(retry,))]) == [True]
    assert transport.publish([flowing("b", flow)]) == ["a"]  # still queued (its retry)
    assert transport.depth(["celery"])["celery"].scheduled == 1


def test_a_rate_bucket_allows_its_burst_then_blocks(transport: Transport) -> None:
    flow = Flow(rate_key="rate:t.add", rate=0.001, burst=3)
    transport.publish([flowing(f"t{i}", flow) for i in range(5)])
    depth = transport.depth(["celery"])["celery"]
    assert (depth.ready, depth.blocked) == (3, 2)
    assert len(transport.claim(["celery"], 10, "w", 30)) == 3
    transport.set_rate_limit("t.add", None)  # app.control.rate_limit(..., 0): no limit
    assert ids(transport.claim(["celery"], 10, "w", 30)) == ["t3", "t4"]


def test_a_limited_message_released_until_later_gives_its_slot_back(
        transport: Transport) -> None:
    flow = Flow(concurrency_key="c:t.add", concurrency_limit=1)
    transport.publish([flowing("a", flow), flowing("b", flow)])
    [first] = transport.claim(["celery"], 10, "w", 30)
    assert first.task_id == "a" and first.envelope.flow == flow
    later = Settlement(first, release=True, release_at=time.time() + 60)
    assert transport.settle([later]) == [True]
    assert ids(transport.claim(["celery"], 10, "w", 30)) == ["b"]
    assert transport.depth(["celery"])["celery"].blocked == 1  # "a", until its time
