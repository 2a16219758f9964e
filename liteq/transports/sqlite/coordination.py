"""The SQLite transport's coordination roles: beat, control, rate limits, workers."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from liteq import _clock
from liteq.messages import Envelope
from liteq.transports.base import BeatEntry, InFlight, Revocation, WorkerInfo
from liteq.transports.sqlite import flow, queries
from liteq.transports.sqlite.rows import lease_group, message_row
from liteq.transports.sqlite.state import SQLiteRole

#: Worker rows silent for this many leases are removed.
_STALE_WORKER_LEASES = 10


class CoordinationRole(SQLiteRole):
    """The beat's schedule, revocations, rate limit buckets and the worker registry."""

    # -- beat ------------------------------------------------------------------------

    def beat_sync(self, entries: Sequence[BeatEntry]) -> list[BeatEntry]:
        self._ensure_open()
        model = self._models.BeatEntry

        def sync(_conn: sqlite3.Connection) -> None:
            stored = {row.name: row for row in model.select()}
            for entry in entries:
                row = stored.pop(entry.name, None)
                if row is not None and bytes(row.definition) == entry.definition \
                        and row.schedule == entry.schedule:
                    continue
                model.replace(name=entry.name, definition=entry.definition,
                              schedule=entry.schedule, next_run_at=entry.next_run_at,
                              last_run_at=row.last_run_at if row else None,
                              total_run_count=row.total_run_count if row else 0).execute()
            if stored:
                model.delete().where(model.name.in_(list(stored))).execute()

        self._db.write(sync)
        return self.beat_entries()

    def beat_entries(self) -> list[BeatEntry]:
        self._ensure_open()
        model = self._models.BeatEntry
        rows = self._db.read(lambda _conn: list(model.select().order_by(model.next_run_at)))
        return [BeatEntry(row.name, bytes(row.definition), row.schedule, row.next_run_at,
                          row.last_run_at, row.total_run_count) for row in rows]

    def beat_fire(self, name: str, expected_next: float, next_run_at: float,
                  fired_at: float, envelope: Envelope | None) -> bool:
        self._ensure_open()
        params = {"name": name, "expected": expected_next, "next": next_run_at,
                  "fired": fired_at if envelope is not None else None,
                  "count": 1 if envelope is not None else 0}

        def fire(conn: sqlite3.Connection) -> bool:
            if conn.execute(queries.BEAT_ADVANCE, params).rowcount != 1:
                return False  # another beat fired this tick
            if envelope is not None and envelope.flow is not None:  # limits, uniqueness
                flow.publish(conn, [envelope], _clock.wall())
            elif envelope is not None:
                conn.execute(queries.PUBLISH, message_row(envelope, _clock.wall()))
            return True

        fired = self._db.write(fire)
        if fired and envelope is not None:
            self._wake.workers.notify()
        return fired

    # -- control ---------------------------------------------------------------------

    def revoke(self, revocations: Sequence[Revocation], expires_in: float | None) -> None:
        self._ensure_open()
        model = self._models.Revoked
        expires_at = None if expires_in is None else _clock.wall() + expires_in
        rows = [{"task_id": r.task_id, "terminate": r.terminate, "signal": r.signal,
                 "expires_at": expires_at} for r in revocations]
        self._db.write(lambda _conn: model.replace_many(rows).execute())
        self._wake.workers.notify()

    def revoked(self, task_ids: Sequence[str] | None = None,
                limit: int = 1000) -> list[Revocation]:
        self._ensure_open()
        if task_ids is not None:
            ids = json.dumps(list(task_ids))
            rows = self._db.read(
                lambda conn: conn.execute(queries.REVOKED_AMONG, (ids,)).fetchall())
        else:
            model = self._models.Revoked
            query = model.select(model.task_id, model.terminate, model.signal).limit(limit)
            rows = self._db.read(lambda _conn: list(query.tuples()))
        return [Revocation(task_id, bool(terminate), signal)
                for task_id, terminate, signal in rows]

    def in_flight(self, limit: int = 1000) -> list[InFlight]:
        self._ensure_open()
        rows = self._db.read(lambda conn: conn.execute(queries.IN_FLIGHT, (limit,)).fetchall())
        return [InFlight(*row) for row in rows]

    # -- rate limits -----------------------------------------------------------------

    def take_token(self, key: str, rate: float, capacity: float = 1.0) -> float:
        self._ensure_open()
        params = {"key": key, "rate": rate, "capacity": capacity, "now": _clock.lease_clock()}

        def take(conn: sqlite3.Connection) -> float:
            if conn.execute(queries.TAKE_TOKEN, params).fetchone() is not None:
                return 0.0
            row = conn.execute(queries.BUCKET, params).fetchone()
            tokens = row[0] if row else 0.0
            return max(0.0, (1.0 - tokens) / rate)

        return self._db.write(take)

    def set_rate_limit(self, task_name: str, rate: float | None) -> None:
        self._ensure_open()
        self._db.write(lambda conn: flow.set_rate(conn, task_name, rate))
        self._wake.workers.notify()

    # -- paused queues ---------------------------------------------------------------

    def pause_queue(self, queue: str) -> bool:
        self._ensure_open()
        return bool(self._db.write(
            lambda conn: conn.execute(flow.PAUSE, (queue, _clock.wall())).rowcount))

    def resume_queue(self, queue: str) -> bool:
        self._ensure_open()
        resumed = bool(self._db.write(lambda conn: conn.execute(flow.RESUME, (queue,)).rowcount))
        if resumed:
            self._wake.workers.notify()
        return resumed

    def paused_queues(self) -> list[str]:
        self._ensure_open()
        return [row[0] for row in self._db.read(
            lambda conn: conn.execute(flow.PAUSED).fetchall())]

    # -- workers ---------------------------------------------------------------------

    def register_worker(self, info: WorkerInfo) -> None:
        self._ensure_open()
        worker = self._models.Worker
        query = worker.replace(
            id=info.id, hostname=info.hostname, pid=info.pid, queues=json.dumps(info.queues),
            concurrency=info.concurrency, pool=info.pool, started_at=info.started_at,
            heartbeat_at=_clock.wall(), info=json.dumps(info.info),
        )
        self._db.write(lambda _conn: query.execute())

    def heartbeat(self, worker_id: str, lease_seconds: float, info: dict[str, Any]) -> int:
        self._ensure_open()
        worker = self._models.Worker
        now = _clock.wall()
        params = lease_group(worker_id, lease_seconds)
        stale_before = now - max(lease_seconds * _STALE_WORKER_LEASES, 60.0)

        def beat(conn: sqlite3.Connection) -> int:
            worker.update(heartbeat_at=now, info=json.dumps(info)).where(
                worker.id == worker_id
            ).execute()
            worker.delete().where(worker.heartbeat_at < stale_before).execute()
            return int(conn.execute(queries.EXTEND_LEASES, params).rowcount)

        return self._db.write(beat)

    def unregister_worker(self, worker_id: str) -> None:
        self._ensure_open()
        worker = self._models.Worker
        self._db.write(lambda _conn: worker.delete().where(worker.id == worker_id).execute())

    def workers(self) -> list[WorkerInfo]:
        self._ensure_open()
        worker = self._models.Worker
        rows = self._db.read(
            lambda _conn: list(worker.select().order_by(worker.heartbeat_at.desc()))
        )
        return [
            WorkerInfo(
                id=row.id, hostname=row.hostname, pid=row.pid,
                queues=tuple(json.loads(row.queues)), concurrency=row.concurrency,
                pool=row.pool, started_at=row.started_at, heartbeat_at=row.heartbeat_at,
                info=json.loads(row.info or "{}"),
            )
            for row in rows
        ]


__all__ = ["CoordinationRole"]
