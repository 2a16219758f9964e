"""The SQLite transport's result role."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from liteq import _clock
from liteq.transports.base import Delivery, Listener, ResultRecord, Waiter
from liteq.transports.sqlite import queries
from liteq.transports.sqlite.rows import ResultRow, result_record, result_row
from liteq.transports.sqlite.state import SQLiteRole
from liteq.transports.sqlite.wakeup import ANY_TASK

if TYPE_CHECKING:
    from liteq.transports.sqlite.wakeup import WakeDir

logger = logging.getLogger("liteq.transports.sqlite")


class _PipeWaiter:
    """Waits on a wake-up pipe for results."""

    def __init__(self, wake: WakeDir, path: str, task_ids: Sequence[str]) -> None:
        self._listener = None
        try:
            self._listener = wake.result_listener(list(task_ids))
        except OSError as exc:  # read-only directory and the like: fall back to polling
            logger.debug("no result wake-up pipe beside %s: %s", path, exc)

    def wait(self, timeout: float) -> bool:
        if self._listener is None:
            time.sleep(max(0.0, min(timeout, 0.05)))
            return False
        return self._listener.wait(timeout)

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()


class ResultsRole(SQLiteRole):
    """Results: stored in the same file, in the same transactions as the acks."""

    def store_result(self, record: ResultRecord, fence: Delivery | None = None) -> bool:
        self._ensure_open()
        row = result_row(record, _clock.wall())

        def store(conn: sqlite3.Connection) -> bool:
            if fence is not None and not conn.execute(
                queries.LEASE_HELD, (fence.key, fence.token)
            ).fetchone():
                return False
            conn.execute(queries.STORE_STATE, row)
            return True

        stored = self._db.write(store)
        if stored:
            self._wake.waiters.notify([record.task_id])
        return stored

    def store_result_on(self, connection: Any, record: ResultRecord) -> None:
        """Store a (not yet finished) state through the caller's own open connection
        to this file, uncommitted, as ``publish_on`` does for messages."""
        self._ensure_open()
        connection.execute(queries.STORE_STATE, result_row(record, _clock.wall()))

    def store_results(self, records: Sequence[ResultRecord]) -> None:
        self._ensure_open()
        now = _clock.wall()
        rows = [result_row(record, now) for record in records]
        self._db.write(lambda conn: conn.executemany(queries.STORE_RESULT, rows))
        self._wake.waiters.notify(record.task_id for record in records)

    def get_result(self, task_id: str) -> ResultRecord | None:
        self._ensure_open()
        row = self._db.read(lambda conn: conn.execute(queries.GET_RESULT, (task_id,)).fetchone())
        return None if row is None else result_record(ResultRow._make(row))

    def find_results(self, state: str, task_name: str | None = None,
                     limit: int = 1000) -> list[ResultRecord]:
        self._ensure_open()
        params = {"state": state, "name": task_name, "limit": limit}
        rows = self._db.read(lambda conn: conn.execute(queries.FIND_RESULTS, params).fetchall())
        return [result_record(ResultRow._make(row)) for row in rows]

    def forget(self, task_ids: Sequence[str]) -> None:
        self._ensure_open()
        result = self._models.Result
        ids = list(task_ids)
        self._db.write(lambda _conn: result.delete().where(result.task_id.in_(ids)).execute())

    def results_listener(self) -> Listener:
        self._ensure_open()
        return self._wake.result_listener([ANY_TASK])

    def result_waiter(self, task_ids: Sequence[str]) -> Waiter:
        self._ensure_open()
        return _PipeWaiter(self._wake, self.path, task_ids)

    def expire_results(self, limit: int = 1000) -> int:
        self._ensure_open()
        params = {"now": _clock.wall(), "limit": limit}

        def expire(conn: sqlite3.Connection) -> int:
            conn.execute(queries.EXPIRE_REVOKED, (params["now"],))
            conn.execute(queries.EXPIRE_CHORDS, (params["now"],))
            conn.execute(queries.EXPIRE_GROUPS, (params["now"],))
            return int(conn.execute(queries.EXPIRE_RESULTS, params).rowcount)

        return self._db.write(expire)

    def save_group(self, group_id: str, payload: bytes, expires_in: float | None) -> None:
        self._ensure_open()
        expires_at = None if expires_in is None else _clock.wall() + expires_in
        row = (group_id, payload, expires_at)
        self._db.write(lambda conn: conn.execute(queries.SAVE_GROUP, row))

    def get_group(self, group_id: str) -> bytes | None:
        self._ensure_open()
        params = (group_id, _clock.wall())
        row = self._db.read(lambda conn: conn.execute(queries.GET_GROUP, params).fetchone())
        return None if row is None else bytes(row[0])

    def forget_group(self, group_id: str) -> None:
        self._ensure_open()
        self._db.write(lambda conn: conn.execute(queries.FORGET_GROUP, (group_id,)))

    def chord_part_done(self, chord_id: str, member_id: str, index: int, size: int,
                        expires_in: float | None) -> list[str] | None:
        self._ensure_open()
        expires_at = None if expires_in is None else _clock.wall() + expires_in
        key = (chord_id, member_id)

        def count(conn: sqlite3.Connection) -> list[str] | None:
            if conn.execute(queries.CHORD_PART_ADD, (*key, index, expires_at)).rowcount and \
                    conn.execute(queries.CHORD_PART_COUNT, (chord_id,)).fetchone()[0] == size:
                conn.execute(queries.CHORD_PART_COMPLETES, key)
            if not conn.execute(queries.CHORD_PART_GET, key).fetchone()[0]:
                return None
            return [row[0] for row in conn.execute(queries.CHORD_MEMBERS, (chord_id,))]

        return self._db.write(count)


__all__ = ["ResultsRole"]
