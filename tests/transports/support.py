"""What the contract tests need to know about each transport: how to make one, where a
message is, and how to move its lease clock (a test-only look under the hood)."""

from __future__ import annotations

import time
from typing import Any

import pytest

import liteq.transports.redis as redis_transport
from liteq import _clock
from liteq.messages import Envelope, Message
from liteq.transports.base import Transport
from liteq.transports.redis import RedisTransport
from liteq.transports.sqlite import SQLiteTransport
from tests.redis_fixtures import fresh_prefix, fresh_sentinel_database

KINDS = ["sqlite", pytest.param("redis", marks=pytest.mark.redis),
         pytest.param("redis-sentinel", marks=pytest.mark.redis),
         pytest.param("redis-cluster", marks=pytest.mark.redis)]


def make_transport(kind: str, request: pytest.FixtureRequest, tmp_path: Any,
                   **options: Any) -> Transport:
    if kind == "sqlite":
        transport: Transport = SQLiteTransport(str(tmp_path / "t.db"),
                                               {"busy_timeout": 2, **options})
    elif kind == "redis-sentinel":
        servers = request.getfixturevalue("sentinel_set")
        transport = RedisTransport(fresh_sentinel_database(servers),
                                   {**servers.options(), **options})
    elif kind == "redis-cluster":
        cluster = request.getfixturevalue("cluster_set")
        transport = RedisTransport(cluster.url(), {"global_keyprefix": fresh_prefix(),
                                                   **options})
    else:
        transport = RedisTransport(request.getfixturevalue("redis_url"), options)
    transport.open()
    return transport


def envelope(task_id: str, priority: int = 0, eta: float | None = None, queue: str = "celery",
             acks_late: bool = False) -> Envelope:
    return Message(id=task_id, task="t.add", args=(1, 2), queue=queue, priority=priority,
                   eta=eta, acks_late=acks_late).encode()


def ids(deliveries: Any) -> list[str]:
    return [d.task_id for d in deliveries]


def forged(token: Any) -> Any:
    """Another token than ``token``, as a stale or forged one would be."""
    return token + 1 if isinstance(token, int) else f"{token}x"


def states(transport: Transport) -> dict[str, str]:
    """Where every message is, by task id (one look at the whole store)."""
    if isinstance(transport, SQLiteTransport):
        rows = transport.database.conn.execute(
            "SELECT task_id, state FROM liteq_messages").fetchall()
        return {task_id: {0: "ready", 1: "leased", 2: "scheduled", 3: "blocked"}[state]
                for task_id, state in rows}
    assert isinstance(transport, RedisTransport)
    keys = transport.keys
    client = transport._conn.client
    names = list(client.scan_iter(match=f"{keys.message_prefix}*", count=1000))
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hmget(name, "t", "q", "k", "g")
    found = {}
    for name, (task, queue, token, gate) in zip(names, pipe.execute(), strict=True):
        message_id = name.decode()[len(keys.message_prefix):]
        if token is not None:
            found[task.decode()] = "leased"
        elif gate is not None:  # flow control: waiting for a slot or a token
            assert client.zscore(f"{keys.gate_prefix}{gate.decode()}", message_id) is not None
            found[task.decode()] = "blocked"
        elif client.zscore(keys.scheduled(queue.decode()), message_id) is not None:
            found[task.decode()] = "scheduled"
        else:
            assert client.zscore(keys.ready(queue.decode()), message_id) is not None
            found[task.decode()] = "ready"
    return found


def state_of(transport: Transport, task_id: str) -> str | None:
    """Where a message is: ready, leased, scheduled, or None (gone)."""
    return states(transport).get(task_id)


def lease_now(transport: Transport) -> float:
    """The current time on the clock the transport measures leases on."""
    if isinstance(transport, SQLiteTransport):
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    assert isinstance(transport, RedisTransport)
    seconds, micros = transport._conn.client.time()
    return float(seconds) + micros / 1_000_000


def set_lease_clock(monkeypatch: pytest.MonkeyPatch, transport: Transport, value: float) -> None:
    """Freeze the transport's lease clock at ``value``."""
    module: Any = _clock if isinstance(transport, SQLiteTransport) else redis_transport
    monkeypatch.setattr(module, "lease_clock", lambda: value)


__all__ = ["KINDS", "envelope", "forged", "ids", "lease_now", "make_transport",
           "set_lease_clock", "state_of", "states"]
