"""The SQLite transport's monitoring and remote-control roles.

*Monitoring* reads what the file holds for ``inspect`` and the event monitor
(``liteq events``): messages by state, and results changed since a time. Nothing is
written on the task path for it.

*Remote control* is a small table of commands (``liteq_control``) that workers read
after a cursor (its AUTOINCREMENT id, never reused), woken by a FIFO in
``<db>-liteq/control/``; replies go to ``liteq_control_replies``. Both are kept for a
minute or so: a command is for the workers alive when it is sent, as in Celery.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Sequence
from typing import Any

from liteq import _clock
from liteq.transports.base import (
    COUNTS_KEPT,
    ControlCommand,
    ResultRecord,
    StoredMessage,
    TaskCount,
)
from liteq.transports.sqlite import queries
from liteq.transports.sqlite.rows import (
    RESULT_COLUMNS,
    STORED_COLUMNS,
    ResultRow,
    StoredRow,
    result_record,
    stored_message,
)
from liteq.transports.sqlite.schema import STATE_NAMES
from liteq.transports.sqlite.state import SQLiteRole
from liteq.transports.sqlite.wakeup import Listener, Notifier

_STATE_CODES = {name: code for code, name in STATE_NAMES.items()}

#: Stored messages, newest first, filtered (json arrays; NULL: no filter).
MESSAGES = (
    f"SELECT {STORED_COLUMNS} FROM liteq_messages "
    "WHERE (:states IS NULL OR state IN (SELECT value FROM json_each(:states))) "
    "AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues))) "
    "AND (:ids IS NULL OR task_id IN (SELECT value FROM json_each(:ids))) "
    "ORDER BY id DESC LIMIT :limit"
)
#: Results changed at or after a time, oldest first (a scan: monitors only).
RESULTS_SINCE = (
    f"SELECT {RESULT_COLUMNS} FROM liteq_results WHERE date_done >= ? "
    "ORDER BY date_done LIMIT ?"
)
CONTROL_SEND = (
    "INSERT INTO liteq_control (ticket, name, arguments, destination, reply, sent_at, "
    "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
CONTROL_EXPIRE = "DELETE FROM liteq_control WHERE expires_at < ?"
CONTROL_REPLIES_EXPIRE = "DELETE FROM liteq_control_replies WHERE expires_at < ?"
CONTROL_CURSOR = "SELECT coalesce(max(id), 0) FROM liteq_control"
CONTROL_READ = (
    "SELECT id, ticket, name, arguments, destination, reply, sent_at FROM liteq_control "
    "WHERE id > ? AND expires_at >= ? ORDER BY id LIMIT 100"
)
CONTROL_REPLY = (
    "INSERT OR REPLACE INTO liteq_control_replies (ticket, hostname, reply, expires_at) "
    "VALUES (?, ?, ?, ?)"
)
CONTROL_REPLIES = "SELECT hostname, reply FROM liteq_control_replies WHERE ticket = ?"
CONTROL_DIR = "control"


def _json_list(values: Sequence[Any] | None) -> str | None:
    return None if values is None else json.dumps(list(values))


class MonitorRole(SQLiteRole):
    """Messages and results for monitors; the control-command table for workers."""

    _control_notifier: Notifier | None = None

    # -- monitoring ------------------------------------------------------------------

    def messages(self, *, states: Sequence[str] | None = None,
                 queues: Sequence[str] | None = None,
                 task_ids: Sequence[str] | None = None,
                 limit: int = 1000) -> list[StoredMessage]:
        self._ensure_open()
        params = {
            "states": _json_list(None if states is None else
                                 [_STATE_CODES[state] for state in states]),
            "queues": _json_list(queues), "ids": _json_list(task_ids), "limit": limit,
        }
        rows = self._db.read(lambda conn: conn.execute(MESSAGES, params).fetchall())
        return [stored_message(StoredRow._make(row)) for row in rows]

    def results_since(self, since: float, limit: int = 1000) -> list[ResultRecord]:
        self._ensure_open()
        rows = self._db.read(
            lambda conn: conn.execute(RESULTS_SINCE, (since, limit)).fetchall())
        return [result_record(ResultRow._make(row)) for row in rows]

    def task_counts(self, since: float | None = None) -> list[TaskCount]:
        self._ensure_open()
        if since is None:
            rows = self._db.read(lambda conn: conn.execute(queries.COUNT_TOTALS).fetchall())
        else:
            rows = self._db.read(
                lambda conn: conn.execute(queries.COUNTS_SINCE, (since,)).fetchall())
        return [TaskCount(*row) for row in rows]

    def prune_counts(self, kept: float = COUNTS_KEPT) -> None:
        """Sum the per-minute counters older than ``kept`` seconds into minute 0."""
        self._ensure_open()
        params = {"before": _clock.wall() - kept}

        def prune(conn: sqlite3.Connection) -> None:
            conn.execute(queries.FOLD_COUNTS, params)
            conn.execute(queries.DROP_COUNTS, params)

        self._db.write(prune)

    # -- remote control --------------------------------------------------------------

    def _control_wake(self) -> Notifier:
        if self._control_notifier is None:
            self._control_notifier = Notifier(f"{self._wake.root}/{CONTROL_DIR}")
        return self._control_notifier

    def send_control(self, command: ControlCommand, expires_in: float) -> None:
        self._ensure_open()
        now = _clock.wall()
        destination = _json_list(command.destination)
        row = (command.ticket, command.name, json.dumps(command.arguments), destination,
               int(command.reply), now, now + expires_in)

        def send(conn: sqlite3.Connection) -> None:
            conn.execute(CONTROL_EXPIRE, (now,))
            conn.execute(CONTROL_REPLIES_EXPIRE, (now,))
            conn.execute(CONTROL_SEND, row)

        self._db.write(send)
        self._control_wake().notify()

    def control_cursor(self) -> str:
        self._ensure_open()
        return str(self._db.read(lambda conn: conn.execute(CONTROL_CURSOR).fetchone()[0]))

    def listen_control(self) -> Listener:
        self._ensure_open()
        self._wake._ensure_root()
        return Listener(f"{self._wake.root}/{CONTROL_DIR}", f"{os.getpid()}")

    def read_control(self, cursor: str) -> tuple[list[ControlCommand], str]:
        self._ensure_open()
        rows = self._db.read(
            lambda conn: conn.execute(CONTROL_READ, (int(cursor), _clock.wall())).fetchall())
        commands = []
        for _id, ticket, name, arguments, destination, reply, sent_at in rows:
            cursor = str(_id)
            commands.append(ControlCommand(
                ticket=ticket, name=name, arguments=json.loads(arguments),
                destination=None if destination is None else tuple(json.loads(destination)),
                reply=bool(reply), sent_at=sent_at,
            ))
        return commands, cursor

    def reply_control(self, ticket: str, hostname: str, reply: Any,
                      expires_in: float) -> None:
        self._ensure_open()
        row = (ticket, hostname, json.dumps(reply, default=str), _clock.wall() + expires_in)
        self._db.write(lambda conn: conn.execute(CONTROL_REPLY, row))
        self._wake.waiters.notify([ticket])

    def control_replies(self, ticket: str) -> dict[str, Any]:
        self._ensure_open()
        rows = self._db.read(lambda conn: conn.execute(CONTROL_REPLIES, (ticket,)).fetchall())
        return {hostname: json.loads(reply) for hostname, reply in rows}

    def close_control(self) -> None:
        """Close the pipes this process wakes workers with."""
        notifier, self._control_notifier = self._control_notifier, None
        if notifier is not None:
            notifier.close()


__all__ = ["MonitorRole"]
