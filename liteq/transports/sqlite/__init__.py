"""The SQLite transport: messages, results and workers in one local file (WAL mode).

Producers and workers on one host share the file. Claims lease rows inside
``BEGIN IMMEDIATE`` transactions; acks, results and retries are fenced by the lease
token; idle workers and waiting callers sleep on wake-up pipes beside the file.

The transport is composed of its roles, one object and one module each, as the
contract groups them: ``messages.py`` (the queue and its leases), ``results.py``,
``coordination.py`` (beat, revocations, rate limits, workers), ``monitor.py`` (stored
messages for monitors, remote-control commands). Each is handed the one
:class:`~liteq.transports.sqlite.state.SQLiteStore` (the file, its ``Database``, its
wake-up pipes) and the transport forwards each contract method to its role, so every
name is defined once. ``connection.py`` owns transactions, ``queries.py`` names the
hot SQL, ``rows.py`` names the rows, ``schema.py`` holds the tables.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from liteq.exceptions import ImproperlyConfigured
from liteq.messages import Envelope
from liteq.transports.base import (
    BeatEntry,
    ControlCommand,
    Delivery,
    InFlight,
    LeaseRef,
    Listener,
    LostTaskPolicy,
    QueueDepth,
    ReapReport,
    ResultRecord,
    Revocation,
    Settlement,
    StoredMessage,
    TaskCount,
    Transport,
    Waiter,
    WorkerInfo,
)
from liteq.transports.sqlite.connection import Database, busy_retries
from liteq.transports.sqlite.coordination import CoordinationRole
from liteq.transports.sqlite.health import sqlite_health
from liteq.transports.sqlite.messages import MessagesRole
from liteq.transports.sqlite.monitor import MonitorRole
from liteq.transports.sqlite.results import ResultsRole
from liteq.transports.sqlite.schema import probe_store
from liteq.transports.sqlite.state import SQLiteStore

logger = logging.getLogger(__name__)

#: While tasks flow, a worker's housekeeping checkpoints the WAL this often (seconds),
#: off the task path; committing connections of workers never checkpoint themselves.
CHECKPOINT_EVERY = 0.1
#: Seconds between looks at an idle WAL.
MAINTAIN_IDLE = 1.0
#: Seconds between prunes of the per-minute task counters (by worker housekeeping).
PRUNE_EVERY = 600.0


def path_from_url(url: str) -> tuple[str, dict[str, str]]:
    """The file path and query options of ``sqlite:///rel.db``, ``sqlite:////abs.db``
    or a plain path.

    Example:
        >>> path_from_url("sqlite:///tasks.db?synchronous=full")
        ('tasks.db', {'synchronous': 'full'})
    """
    if "://" not in url:
        path, _, query = url.partition("?")
        return path, dict(parse_qsl(query))
    parts = urlsplit(url)
    if parts.scheme not in ("sqlite", "sqlite3", "file"):
        raise ImproperlyConfigured(f"not a SQLite URL: {url!r}")
    if parts.netloc not in ("", "localhost"):
        raise ImproperlyConfigured(
            f"{url!r}: a SQLite URL has no host; write sqlite:///relative.db or "
            "sqlite:////absolute/path.db"
        )
    path = unquote(parts.path)
    # sqlite:///tasks.db -> "/tasks.db" -> relative "tasks.db"; sqlite:////abs.db -> "//abs.db"
    path = path[1:] if parts.scheme != "file" else path
    if not path or path == ":memory:":
        raise ImproperlyConfigured(
            f"{url!r}: liteq needs a database file that workers can share, not an "
            "in-memory database"
        )
    return path, dict(parse_qsl(parts.query))


class SQLiteTransport(Transport):
    """The default transport: one SQLite file in WAL mode on a local filesystem.

    Example:
        >>> transport = SQLiteTransport("sqlite:///tasks.db", {})  # doctest: +SKIP
        >>> transport.depth()  # doctest: +SKIP
        {}
    """

    schemes = ("sqlite", "sqlite3", "file", "")
    supports_app_transactions = True

    @classmethod
    def check_store(cls, url: str) -> None:
        probe_store(os.path.abspath(path_from_url(url)[0]))

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        super().__init__(url, options)
        path, query = path_from_url(url)
        self.path = os.path.abspath(path)
        settings = {**options, **query}
        try:
            busy_timeout = float(settings.get("busy_timeout", 10.0))
        except ValueError:
            raise ImproperlyConfigured(
                f"busy_timeout must be a number of seconds, not {settings['busy_timeout']!r}"
            ) from None
        self._db = Database(
            self.path,
            synchronous=str(settings.get("synchronous", "NORMAL")),
            busy_timeout=busy_timeout,
        )
        self._store = SQLiteStore(self.path, self._db)
        self._messages = MessagesRole(self._store)
        self._results = ResultsRole(self._store)
        self._coordination = CoordinationRole(self._store)
        self._monitor = MonitorRole(self._store)
        self._wal_changed = -1
        self._checkpointed = 0.0
        self._pruned = -PRUNE_EVERY

    # -- lifecycle -------------------------------------------------------------------

    @property
    def location(self) -> str:
        return self.path

    @property
    def database(self) -> Database:
        """The file's connection manager (for ``app.transaction()`` and tools)."""
        self._store.ensure_open()
        return self._db

    def open(self) -> None:
        self._store.open()

    def busy_retries(self) -> int:
        return busy_retries()

    def health(self) -> dict[str, Any]:
        return sqlite_health(self.path, self._db.synchronous)

    def close(self) -> None:
        self._monitor.close_control()
        self._store.close()

    def after_fork(self) -> None:
        self._db.forget_connections()

    def worker_mode(self) -> None:
        # A commit that crosses the WAL's size threshold would otherwise checkpoint
        # (copy pages, fsync) in the middle of a task's round trip.
        self._db.defer_checkpoints()

    def maintain(self) -> float:
        self._store.ensure_open()
        now = time.monotonic()
        if now - self._pruned >= PRUNE_EVERY:  # the first call too: a worker's start
            self._pruned = now
            self._monitor.prune_counts()
        try:
            changed = os.stat(self.path + "-wal").st_mtime_ns
        except FileNotFoundError:
            return MAINTAIN_IDLE
        if changed == self._wal_changed:
            return MAINTAIN_IDLE
        now = time.monotonic()
        if now - self._checkpointed >= CHECKPOINT_EVERY:
            self._db.checkpoint()
            self._checkpointed = now
            # a commit during the checkpoint changes the WAL again: look once more
            self._wal_changed = os.stat(self.path + "-wal").st_mtime_ns
        return CHECKPOINT_EVERY

    # -- messages: the queue, its leases, lost tasks (MessagesRole) ------------

    def publish(self, envelopes: Sequence[Envelope]) -> list[str] | None:
        return self._messages.publish(envelopes)

    def publish_on(self, connection: Any, envelopes: Sequence[Envelope]) -> list[str] | None:
        return self._messages.publish_on(connection, envelopes)

    def notify_workers(self) -> None:
        self._messages.notify_workers()

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._messages.transaction()

    def claim(
        self, queues: Sequence[str], limit: int, worker_id: str, lease_seconds: float
    ) -> list[Delivery]:
        return self._messages.claim(queues, limit, worker_id, lease_seconds)

    def settle(self, settlements: Sequence[Settlement]) -> list[bool]:
        return self._messages.settle(settlements)

    def settle_and_claim(
        self, settlements: Sequence[Settlement], queues: Sequence[str], limit: int,
        worker_id: str, lease_seconds: float,
    ) -> tuple[list[bool], list[Delivery]]:
        return self._messages.settle_and_claim(settlements, queues, limit, worker_id, lease_seconds)

    def extend_leases(self, worker_id: str, lease_seconds: float) -> int:
        return self._messages.extend_leases(worker_id, lease_seconds)

    def reap_expired(self, policy: LostTaskPolicy) -> ReapReport:
        return self._messages.reap_expired(policy)

    def lose(self, leases: Sequence[LeaseRef | Delivery], policy: LostTaskPolicy) -> ReapReport:
        return self._messages.lose(leases, policy)

    def fail_unreachable(self, failure: Callable[[Envelope, str], ResultRecord],
                         limit: int = 1000) -> list[str]:
        return self._messages.fail_unreachable(failure, limit)

    def release_worker(self, worker_id: str) -> int:
        return self._messages.release_worker(worker_id)

    def next_eta(self, queues: Sequence[str]) -> float | None:
        return self._messages.next_eta(queues)

    def purge(self, queues: Sequence[str] | None = None) -> int:
        return self._messages.purge(queues)

    def depth(self, queues: Sequence[str] | None = None) -> dict[str, QueueDepth]:
        return self._messages.depth(queues)

    def is_leased(self, task_id: str) -> bool:
        return self._messages.is_leased(task_id)

    def listen(self, queues: Sequence[str]) -> Listener:
        return self._messages.listen(queues)

    # -- results, groups and chords (ResultsRole) ------------------------------

    def store_result(self, record: ResultRecord, fence: Delivery | None = None) -> bool:
        return self._results.store_result(record, fence)

    def store_result_on(self, connection: Any, record: ResultRecord) -> None:
        self._results.store_result_on(connection, record)

    def store_results(self, records: Sequence[ResultRecord]) -> None:
        self._results.store_results(records)

    def get_result(self, task_id: str) -> ResultRecord | None:
        return self._results.get_result(task_id)

    def find_results(self, state: str, task_name: str | None = None,
                     limit: int = 1000) -> list[ResultRecord]:
        return self._results.find_results(state, task_name, limit)

    def forget(self, task_ids: Sequence[str]) -> None:
        self._results.forget(task_ids)

    def result_waiter(self, task_ids: Sequence[str]) -> Waiter:
        return self._results.result_waiter(task_ids)

    def results_listener(self) -> Listener:
        return self._results.results_listener()

    def expire_results(self, limit: int = 1000) -> int:
        return self._results.expire_results(limit)

    def save_group(self, group_id: str, payload: bytes, expires_in: float | None) -> None:
        self._results.save_group(group_id, payload, expires_in)

    def get_group(self, group_id: str) -> bytes | None:
        return self._results.get_group(group_id)

    def forget_group(self, group_id: str) -> None:
        self._results.forget_group(group_id)

    def chord_part_done(self, chord_id: str, member_id: str, index: int, size: int,
                        expires_in: float | None) -> list[str] | None:
        return self._results.chord_part_done(chord_id, member_id, index, size, expires_in)

    # -- beat, revocations, rate limits, workers (CoordinationRole) ------------

    def beat_sync(self, entries: Sequence[BeatEntry]) -> list[BeatEntry]:
        return self._coordination.beat_sync(entries)

    def beat_entries(self) -> list[BeatEntry]:
        return self._coordination.beat_entries()

    def beat_fire(self, name: str, expected_next: float, next_run_at: float,
                  fired_at: float, envelope: Envelope | None) -> bool:
        return self._coordination.beat_fire(name, expected_next, next_run_at, fired_at, envelope)

    def revoke(self, revocations: Sequence[Revocation], expires_in: float | None) -> None:
        self._coordination.revoke(revocations, expires_in)

    def revoked(self, task_ids: Sequence[str] | None = None,
                limit: int = 1000) -> list[Revocation]:
        return self._coordination.revoked(task_ids, limit)

    def in_flight(self, limit: int = 1000) -> list[InFlight]:
        return self._coordination.in_flight(limit)

    def take_token(self, key: str, rate: float, capacity: float = 1.0) -> float:
        return self._coordination.take_token(key, rate, capacity)

    def set_rate_limit(self, task_name: str, rate: float | None) -> None:
        self._coordination.set_rate_limit(task_name, rate)

    def pause_queue(self, queue: str) -> bool:
        return self._coordination.pause_queue(queue)

    def resume_queue(self, queue: str) -> bool:
        return self._coordination.resume_queue(queue)

    def paused_queues(self) -> list[str]:
        return self._coordination.paused_queues()

    def register_worker(self, info: WorkerInfo) -> None:
        self._coordination.register_worker(info)

    def heartbeat(self, worker_id: str, lease_seconds: float, info: dict[str, Any]) -> int:
        return self._coordination.heartbeat(worker_id, lease_seconds, info)

    def unregister_worker(self, worker_id: str) -> None:
        self._coordination.unregister_worker(worker_id)

    def workers(self) -> list[WorkerInfo]:
        return self._coordination.workers()


    # -- monitoring and remote control (MonitorRole) -----------------------------------

    def messages(self, *, states: Sequence[str] | None = None,
                 queues: Sequence[str] | None = None,
                 task_ids: Sequence[str] | None = None,
                 limit: int = 1000) -> list[StoredMessage]:
        return self._monitor.messages(states=states, queues=queues, task_ids=task_ids,
                                      limit=limit)

    def results_since(self, since: float, limit: int = 1000) -> list[ResultRecord]:
        return self._monitor.results_since(since, limit)

    def task_counts(self, since: float | None = None) -> list[TaskCount]:
        return self._monitor.task_counts(since)

    def send_control(self, command: ControlCommand, expires_in: float) -> None:
        self._monitor.send_control(command, expires_in)

    def control_cursor(self) -> str:
        return self._monitor.control_cursor()

    def listen_control(self) -> Listener:
        return self._monitor.listen_control()

    def read_control(self, cursor: str) -> tuple[list[ControlCommand], str]:
        return self._monitor.read_control(cursor)

    def reply_control(self, ticket: str, hostname: str, reply: Any,
                      expires_in: float) -> None:
        self._monitor.reply_control(ticket, hostname, reply, expires_in)

    def control_replies(self, ticket: str) -> dict[str, Any]:
        return self._monitor.control_replies(ticket)

    def close_control(self) -> None:
        self._monitor.close_control()


__all__ = ["SQLiteTransport", "path_from_url"]
