"""Write messages straight into a store, as an attacker or a broken producer would.

Each message is a dict of the stored columns (``task_id``, ``task_name``, ``queue``,
``priority``, ``run_at``, ``expires``, ``acks_late``, ``content_type``, ``header``,
``body``); any value may be of the wrong type. The SQLite writer inserts the row with
the stdlib ``sqlite3`` module; the Redis writer sets the message hash and its place in
the ready queue with ``redis``, bypassing liteq's encoding and scripts.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

DEFAULT_PREFIX = "liteq:"
READY = 0


def good_columns(task_id: str, task_name: str, args: list[Any] | None = None) -> dict[str, Any]:
    """The columns of a well-formed message calling ``task_name(*args)``."""
    return {
        "task_id": task_id, "task_name": task_name, "queue": "celery", "priority": 0,
        "run_at": time.time(), "expires": None, "acks_late": 0,
        "content_type": "application/json", "header": b'{"v":1}',
        "body": json.dumps([args or [], {}]).encode(),
    }


def write_sqlite(path: str, messages: list[dict[str, Any]]) -> None:
    """Insert ``messages`` into ``liteq_messages`` of the file at ``path`` (ready, or in
    the ``state`` a message gives: 1 leased, 2 scheduled, or one no claim serves)."""
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for columns in messages:
            conn.execute(
                "INSERT INTO liteq_messages (task_id, task_name, queue, priority, run_at, "
                "expires, state, acks_late, content_type, header, body) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (columns["task_id"], columns["task_name"], columns["queue"],
                 columns["priority"], columns["run_at"], columns["expires"],
                 columns.get("state", READY),
                 columns["acks_late"], columns["content_type"], columns["header"],
                 columns["body"]),
            )
        conn.execute("COMMIT")
    finally:
        conn.close()


def _field(value: Any) -> bytes | str | int | float:
    if value is None:
        return b""
    if isinstance(value, (bytes, str, int, float)):
        return value
    return json.dumps(value)


def write_redis(url: str, messages: list[dict[str, Any]], prefix: str = DEFAULT_PREFIX) -> None:
    """Store ``messages`` as hashes and put them in their queue's ready ZSET."""
    import redis  # the optional transport's client: imported only when writing to it

    client = redis.Redis.from_url(url)
    try:
        for columns in messages:
            seq = client.incr(f"{prefix}seq")
            message_id = f"{int(time.time() * 1_000_000):014x}{seq:012x}"
            client.hset(f"{prefix}m:{message_id}", mapping={
                "t": _field(columns["task_id"]), "n": _field(columns["task_name"]),
                "q": _field(columns["queue"]), "p": _field(columns["priority"]),
                "r": _field(columns["run_at"]), "x": _field(columns["expires"]),
                "a": _field(columns["acks_late"]), "c": _field(columns["content_type"]),
                "h": _field(columns["header"]), "b": _field(columns["body"]), "d": 0,
            })
            queue = columns["queue"] if isinstance(columns["queue"], str) else "celery"
            client.zadd(f"{prefix}q:{queue}", {message_id: 0})
            client.sadd(f"{prefix}queues", queue)
            client.publish(f"{prefix}wake:{queue}", "1")
    finally:
        client.close()


def write(location: str, messages: list[dict[str, Any]]) -> None:
    """Write to the SQLite file at ``location`` or the Redis URL ``location``."""
    if location.startswith(("redis://", "rediss://", "unix://")):
        write_redis(location, messages)
    else:
        write_sqlite(location, messages)
