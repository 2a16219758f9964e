"""Flow control in the SQLite transport: concurrency slots, rate tokens, unique keys.

Decided inside the publish, claim and settle transactions, so every worker and
producer of the file agrees (``liteq.flow`` computes the keys at send time).

* A message under a concurrency or rate limit (``Flow.gated``) is stored READY only
  when it gets a slot (``liteq_flow.used`` below its limit) and a token (its rate
  bucket in ``liteq_ratelimits``); otherwise it is stored BLOCKED, waiting on one key
  (``gate``). READY and LEASED messages of a concurrency key hold its slots: the plain
  claim statement stays as it was and never sees a message over its limit.
* The settle that removes a message frees its slot and admits the next BLOCKED
  messages of that key (:func:`release`), in order (priority, eta, arrival).
* A key whose next token (or a blocked eta) is due has ``liteq_flow.due`` set; a
  claim wakes due keys first (:func:`wake_due`), found through a partial index, so a
  store without flow-controlled messages pays one indexed read per claim.
* A unique key (``liteq_unique``) names the task that holds it; a publish finding it
  held stores nothing and reports the holder's id. It is freed when the task ends
  (``unique_until="finished"``; a retry keeps it) or is claimed (``"started"``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from liteq import _clock
from liteq.messages import Envelope, Flow
from liteq.transports.sqlite import queries
from liteq.transports.sqlite.rows import message_row
from liteq.transports.sqlite.schema import BLOCKED, LEASED, READY

#: Per claim: the earliest due flow key (partial index) and the paused queues.
FLOW_STATE = (
    "SELECT (SELECT min(due) FROM liteq_flow WHERE due IS NOT NULL), "
    "(SELECT json_group_array(queue) FROM liteq_paused)"
)
#: Is any flow key in use? (a purge recounts only then)
ANY_FLOW = "SELECT 1 FROM liteq_flow UNION ALL SELECT 1 FROM liteq_unique LIMIT 1"
#: Flow keys whose next token or blocked eta has come.
DUE_KEYS = "SELECT key FROM liteq_flow WHERE due IS NOT NULL AND due <= ? ORDER BY due"
FLOW_ROW = "SELECT used, waiting FROM liteq_flow WHERE key = ?"
ADD_USED = (
    "INSERT INTO liteq_flow (key, used) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET used = max(used + excluded.used, 0)"
)
ADD_WAITING = (
    "INSERT INTO liteq_flow (key, waiting) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET waiting = max(waiting + excluded.waiting, 0)"
)
#: Re-examine a key no later than :due (NULL leaves it as it is).
SET_DUE = (
    "INSERT INTO liteq_flow (key, due) VALUES (:key, :due) ON CONFLICT (key) DO UPDATE SET "
    "due = CASE WHEN due IS NULL OR :due < due THEN :due ELSE due END"
)
CLEAR_DUE = "UPDATE liteq_flow SET due = NULL WHERE key = ?"
FORGET_KEY = "DELETE FROM liteq_flow WHERE key = ? AND used <= 0 AND waiting <= 0 AND due IS NULL"
#: The next blocked message of a key whose time has come (one waiting for its eta, a
#: retry's countdown, is passed over).
HEAD = (
    f"SELECT id, flow, task_name FROM liteq_messages WHERE state = {BLOCKED} AND gate = ? "
    "AND run_at <= ? ORDER BY priority DESC, run_at, id LIMIT 1"
)
#: When the first blocked message of a key that waits for its eta is due.
NEXT_BLOCKED = f"SELECT min(run_at) FROM liteq_messages WHERE state = {BLOCKED} AND gate = ?"
ADMIT = f"UPDATE liteq_messages SET state = {READY}, gate = NULL WHERE id = ?"
REGATE = "UPDATE liteq_messages SET gate = ? WHERE id = ?"
BLOCK = (
    f"UPDATE liteq_messages SET state = {BLOCKED}, gate = :gate, run_at = :run_at, "
    "worker_id = NULL, token = NULL, deliveries = max(deliveries - 1, 0) "
    f"WHERE id = :id AND token = :token AND state = {LEASED}"
)
PUBLISH_FLOW = (
    f"INSERT INTO liteq_messages ({queries.MESSAGE_COLUMNS_FLOW}) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
UNIQUE_HOLDER = (
    "SELECT task_id FROM liteq_unique WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)"
)
UNIQUE_TAKE = "INSERT OR REPLACE INTO liteq_unique (key, task_id, expires_at) VALUES (?, ?, ?)"
UNIQUE_FREE = "DELETE FROM liteq_unique WHERE key = ? AND task_id = ?"
#: A task's rate set at run time (app.control.rate_limit): wins over the message's.
RATE_OVERRIDE = "SELECT rate FROM liteq_rate_overrides WHERE task = ?"
SET_RATE = "INSERT OR REPLACE INTO liteq_rate_overrides (task, rate) VALUES (?, ?)"
#: Look again at once at a task's rate keys ("rate:<task>" and "rate:<task>:<key>").
RATE_KEYS_DUE = (
    "UPDATE liteq_flow SET due = 0 WHERE waiting > 0 AND "
    "(key = :base OR (key >= :base || ':' AND key < :base || ';'))"
)
PAUSE = "INSERT OR IGNORE INTO liteq_paused (queue, since) VALUES (?, ?)"
RESUME = "DELETE FROM liteq_paused WHERE queue = ?"
PAUSED = "SELECT queue FROM liteq_paused ORDER BY queue"
#: After a purge: recount every key from the messages left (rare; json_extract scans).
RECOUNT = (
    "DELETE FROM liteq_flow",
    "INSERT INTO liteq_flow (key, used) SELECT json_extract(flow, '$.ck'), count(*) "
    f"FROM liteq_messages WHERE flow IS NOT NULL AND state IN ({READY}, {LEASED}) "
    "AND json_extract(flow, '$.ck') IS NOT NULL GROUP BY 1",
    "INSERT INTO liteq_flow (key, waiting, due) SELECT gate, count(*), 0 FROM liteq_messages "
    f"WHERE state = {BLOCKED} GROUP BY gate "
    "ON CONFLICT (key) DO UPDATE SET waiting = excluded.waiting, due = 0",
    "DELETE FROM liteq_unique WHERE task_id NOT IN (SELECT task_id FROM liteq_messages)",
)


def publish(conn: sqlite3.Connection, envelopes: Sequence[Envelope], now: float) -> list[str]:
    """Store messages, deciding flow control for those that have one; returns the task
    id each stands for (another's, for a unique message whose key is held)."""
    ids: list[str] = []
    plain: list[Any] = []
    for envelope in envelopes:
        flow = envelope.flow
        if flow is None:
            plain.append(message_row(envelope, now))
            ids.append(envelope.task_id)
            continue
        if flow.unique_key is not None:
            held = conn.execute(UNIQUE_HOLDER, (flow.unique_key, now)).fetchone()
            if held is not None and held[0] != envelope.task_id:
                ids.append(held[0])  # a waiting or running task has the key: send nothing
                continue
            conn.execute(UNIQUE_TAKE, (flow.unique_key, envelope.task_id, flow.unique_expires))
        ids.append(envelope.task_id)
        _publish_one(conn, envelope, flow, now)
    if plain:
        conn.executemany(queries.PUBLISH, plain)
    return ids


def _publish_one(conn: sqlite3.Connection, envelope: Envelope, flow: Flow, now: float) -> None:
    row = message_row(envelope, now)
    state, gate = row.state, None
    if flow.gated and state == READY:
        gate, due = _entry_gate(conn, flow, now, envelope.task_name)
        if gate is not None:
            state = BLOCKED
            if due is not None:
                conn.execute(SET_DUE, {"key": gate, "due": due})
    elif flow.gated:  # an eta: blocked until then, on its first key
        state, gate = BLOCKED, flow.concurrency_key or flow.rate_key
        conn.execute(SET_DUE, {"key": gate, "due": row.run_at})
    if gate is not None:
        conn.execute(ADD_WAITING, (gate, 1))
    conn.execute(PUBLISH_FLOW, (*row._replace(state=state), flow.dumps(), gate))


def _entry_gate(conn: sqlite3.Connection, flow: Flow, now: float,
                task_name: str) -> tuple[str | None, float | None]:
    """The key a new ready message must wait on (None: admitted, slot and token
    taken). It never overtakes messages of its keys that wait already."""
    for key in (flow.concurrency_key, flow.rate_key):
        if key is not None:
            row = conn.execute(FLOW_ROW, (key,)).fetchone()
            if row is not None and row[1] > 0:
                return key, None
    return _admit(conn, flow, now, task_name)


def _admit(conn: sqlite3.Connection, flow: Flow, now: float,
           task_name: str) -> tuple[str | None, float | None]:
    """Take a slot and a token for ``flow`` if both are there: (None, None); else the
    key it waits on and when to look again (None: when a slot is freed)."""
    ckey, rkey = flow.concurrency_key, flow.rate_key
    if ckey is not None:
        row = conn.execute(FLOW_ROW, (ckey,)).fetchone()
        if row is not None and row[0] >= (flow.concurrency_limit or 1):
            return ckey, None
    rate = flow.rate
    if rkey is not None:
        override = conn.execute(RATE_OVERRIDE, (task_name,)).fetchone()
        rate = override[0] if override is not None else rate
    if rkey is not None and rate:
        wait = take_token(conn, rkey, rate, float(flow.burst))
        if wait > 0:
            return rkey, now + wait
    if ckey is not None:
        conn.execute(ADD_USED, (ckey, 1))
    return None, None


def take_token(conn: sqlite3.Connection, key: str, rate: float, capacity: float) -> float:
    """TAKE_TOKEN in the caller's transaction: 0.0 when taken, else seconds to wait."""
    params = {"key": key, "rate": rate, "capacity": capacity, "now": _clock.lease_clock()}
    if conn.execute(queries.TAKE_TOKEN, params).fetchone() is not None:
        return 0.0
    row = conn.execute(queries.BUCKET, params).fetchone()
    tokens = row[0] if row else 0.0
    return max(1e-3, (1.0 - tokens) / rate)


def wake(conn: sqlite3.Connection, key: str, now: float) -> int:
    """Admit the blocked messages of ``key`` that can go now, in order; returns how
    many became ready. A head that waits on its other key moves there."""
    admitted = 0
    conn.execute(CLEAR_DUE, (key,))
    while True:
        head = conn.execute(HEAD, (key, now)).fetchone()
        if head is None:
            eta = conn.execute(NEXT_BLOCKED, (key,)).fetchone()[0]
            if eta is not None:  # only etas to come: look again at the first
                conn.execute(SET_DUE, {"key": key, "due": eta})
            break
        message_id, text, task_name = head
        flow = Flow.loads(text)
        assert flow is not None
        gate, due = _admit(conn, flow, now, task_name)
        if gate is None:
            conn.execute(ADMIT, (message_id,))
            conn.execute(ADD_WAITING, (key, -1))
            admitted += 1
            continue
        if due is not None:
            conn.execute(SET_DUE, {"key": gate, "due": due})
        if gate == key:
            break
        conn.execute(REGATE, (gate, message_id))
        conn.execute(ADD_WAITING, (key, -1))
        conn.execute(ADD_WAITING, (gate, 1))
    conn.execute(FORGET_KEY, (key,))
    return admitted


def wake_due(conn: sqlite3.Connection, now: float) -> int:
    """Wake every key whose time has come (a claim does, before it selects)."""
    return sum(wake(conn, key, now) for (key,) in conn.execute(DUE_KEYS, (now,)).fetchall())


def release(conn: sqlite3.Connection, flow: Flow, task_id: str, now: float, *,
            finished: bool = True) -> int:
    """A message that held a slot is gone (settled or dropped): free its slot, admit
    the next of its key, and free its unique key when the task ``finished``."""
    admitted = 0
    if flow.concurrency_key is not None:
        conn.execute(ADD_USED, (flow.concurrency_key, -1))
        admitted = wake(conn, flow.concurrency_key, now)
    if finished and flow.unique_key is not None and flow.unique_until == "finished":
        conn.execute(UNIQUE_FREE, (flow.unique_key, task_id))
    return admitted


def block_again(conn: sqlite3.Connection, flow: Flow, key: Any, token: Any,
                run_at: float, now: float) -> bool:
    """A leased message of a concurrency key waits again until ``run_at`` (released
    with a delay): it gives its slot back and waits BLOCKED, not SCHEDULED."""
    gate = flow.concurrency_key or flow.rate_key
    ok = conn.execute(BLOCK, {"gate": gate, "run_at": run_at, "id": key, "token": token}
                      ).rowcount == 1
    if ok:
        conn.execute(ADD_WAITING, (gate, 1))
        conn.execute(SET_DUE, {"key": gate, "due": run_at})
        if flow.concurrency_key is not None:
            conn.execute(ADD_USED, (flow.concurrency_key, -1))
            wake(conn, flow.concurrency_key, now)
    return ok


def claimed(conn: sqlite3.Connection, rows: Sequence[Any]) -> None:
    """Free the unique keys held until ``started`` by messages just claimed."""
    for row in rows:
        if row.flow is not None:
            flow = Flow.loads(row.flow)
            if flow is not None and flow.unique_key and flow.unique_until == "started":
                conn.execute(UNIQUE_FREE, (flow.unique_key, row.task_id))


def set_rate(conn: sqlite3.Connection, task_name: str, rate: float | None) -> None:
    """A task's rate from now on (None: none); its blocked messages are looked at again."""
    conn.execute(SET_RATE, (task_name, rate))
    conn.execute(RATE_KEYS_DUE, {"base": f"rate:{task_name}"})


def recount(conn: sqlite3.Connection) -> None:
    """Rebuild the flow keys from the messages left (after a purge)."""
    for statement in RECOUNT:
        conn.execute(statement)


__all__ = [
    "ANY_FLOW", "FLOW_STATE", "PAUSE", "PAUSED", "RESUME", "block_again", "claimed",
    "publish", "recount", "release", "set_rate", "take_token", "wake", "wake_due",
]
