"""The SQLite transport: messages, results and workers in one local file (WAL mode).

Producers and workers on one host share the file. Claims lease rows inside
``BEGIN IMMEDIATE`` transactions; acks, results and retries are fenced by the lease
token; idle workers and waiting callers sleep on wake-up pipes beside the file.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import peewee as pw

from liteq._clock import boot_id, lease_clock, wall
from liteq.exceptions import ImproperlyConfigured
from liteq.messages import Envelope
from liteq.transports.base import (
    BeatEntry,
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
    Transport,
    Waiter,
    WorkerInfo,
)
from liteq.transports.sqlite import queries
from liteq.transports.sqlite.connection import (
    MIN_SQLITE_VERSION,
    Database,
    check_local_filesystem,
    create_private_file,
    sqlite_version_ok,
)
from liteq.transports.sqlite.schema import LEASED, READY, SCHEDULED, ensure_schema, make_models
from liteq.transports.sqlite.wakeup import WakeDir

logger = logging.getLogger(__name__)

_STATE_NAMES = {READY: "ready", LEASED: "leased", SCHEDULED: "scheduled"}
#: Worker rows silent for this many leases are removed.
_STALE_WORKER_LEASES = 10
#: While tasks flow, a worker's housekeeping checkpoints the WAL this often (seconds),
#: off the task path; committing connections of workers never checkpoint themselves.
CHECKPOINT_EVERY = 0.1
#: Seconds between looks at an idle WAL.
MAINTAIN_IDLE = 1.0


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


class _PipeWaiter:
    """Waits on a wake-up pipe for results."""

    def __init__(self, transport: SQLiteTransport, task_ids: Sequence[str]) -> None:
        self._listener = None
        try:
            self._listener = transport._wake.result_listener(list(task_ids))
        except OSError as exc:  # read-only directory and the like: fall back to polling
            logger.debug("no result wake-up pipe beside %s: %s", transport.path, exc)

    def wait(self, timeout: float) -> bool:
        if self._listener is None:
            time.sleep(max(0.0, min(timeout, 0.05)))
            return False
        return self._listener.wait(timeout)

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()


class _NullListener:
    """A listener that never fires (workers then rely on their housekeeping timeout)."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()

    def fileno(self) -> int:
        return self._read

    def drain(self) -> None:
        pass

    def close(self) -> None:
        os.close(self._read)
        os.close(self._write)


class SQLiteTransport(Transport):
    """The default transport: one SQLite file in WAL mode on a local filesystem.

    Example:
        >>> transport = SQLiteTransport("sqlite:///tasks.db", {})  # doctest: +SKIP
        >>> transport.depth()  # doctest: +SKIP
        {}
    """

    schemes = ("sqlite", "sqlite3", "file", "")
    supports_app_transactions = True

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
        self._models = make_models(self._db.peewee)
        self._wake = WakeDir(self.path)
        self._opened = False
        self._open_lock = threading.Lock()
        #: holder -> lease-clock time this process last wrote its lease row
        self._leases_held: dict[str, float] = {}
        self._wal_changed = -1
        self._checkpointed = 0.0

    # -- lifecycle -------------------------------------------------------------------

    @property
    def location(self) -> str:
        return self.path

    @property
    def database(self) -> Database:
        """The file's connection manager (for ``app.transaction()`` and tools)."""
        self._ensure_open()
        return self._db

    def open(self) -> None:
        with self._open_lock:
            if self._opened:
                return
            if not sqlite_version_ok():
                raise ImproperlyConfigured(
                    f"liteq needs SQLite {'.'.join(map(str, MIN_SQLITE_VERSION))} or newer; "
                    f"Python here links SQLite {sqlite3.sqlite_version}"
                )
            check_local_filesystem(self.path)
            create_private_file(self.path)
            ensure_schema(self._db, self._models)
            self._check_boot()
            self._opened = True

    def _ensure_open(self) -> None:
        if not self._opened:
            self.open()

    def _check_boot(self) -> None:
        """Expire every lease taken before the machine last booted."""
        current = boot_id()
        meta = self._models.Meta
        stored = self._db.read(lambda _c: meta.get_or_none(meta.key == "boot_id"))
        if stored is not None and stored.value == current:
            return

        def record(conn: sqlite3.Connection) -> None:
            row = meta.get_or_none(meta.key == "boot_id")
            if row is not None and row.value != current:
                conn.execute(queries.EXPIRE_ALL_LEASES)
            meta.replace(key="boot_id", value=current).execute()

        self._db.write(record)

    def close(self) -> None:
        self._db.close()
        self._wake.close()

    def after_fork(self) -> None:
        self._db.forget_connections()

    def worker_mode(self) -> None:
        # A commit that crosses the WAL's size threshold would otherwise checkpoint
        # (copy pages, fsync) in the middle of a task's round trip.
        self._db.defer_checkpoints()

    def maintain(self) -> float:
        self._ensure_open()
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

    # -- messages --------------------------------------------------------------------

    def publish(self, envelopes: Sequence[Envelope]) -> None:
        self._ensure_open()
        now = wall()
        rows = [_message_row(envelope, now) for envelope in envelopes]
        if len(rows) == 1:
            self._db.write(lambda conn: conn.execute(queries.PUBLISH, rows[0]))
        else:
            self._db.write(lambda conn: conn.executemany(queries.PUBLISH, rows))
        if not self._db.conn.in_transaction:  # else transaction() wakes workers at commit
            self._wake.workers.notify()

    def publish_on(self, connection: Any, envelopes: Sequence[Envelope]) -> None:
        """Publish through the caller's own open connection to this file, uncommitted.

        The messages exist if and only if the caller's transaction commits. Workers are
        woken now and look again shortly after finding nothing, since liteq cannot see
        the caller's commit.
        """
        self._ensure_open()
        conn = getattr(connection, "connection", None)
        conn = conn() if callable(conn) else connection  # a peewee database
        now = wall()
        conn.executemany(queries.PUBLISH, [_message_row(envelope, now) for envelope in envelopes])
        self._wake.workers.notify()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``app.transaction()``: a write transaction that ``publish()`` joins."""
        self._ensure_open()
        with self._db.transaction() as conn:
            yield conn
        self._wake.workers.notify()

    def claim(
        self, queues: Sequence[str], limit: int, worker_id: str, lease_seconds: float
    ) -> list[Delivery]:
        return self.settle_and_claim((), queues, limit, worker_id, lease_seconds)[1]

    def settle(self, settlements: Sequence[Settlement]) -> list[bool]:
        return self.settle_and_claim(settlements, (), 0, "", 0.0)[0]

    def settle_and_claim(
        self, settlements: Sequence[Settlement], queues: Sequence[str], limit: int,
        worker_id: str, lease_seconds: float,
    ) -> tuple[list[bool], list[Delivery]]:
        self._ensure_open()
        if not settlements and (limit <= 0 or not queues):
            return [], []
        now = wall()
        if not settlements and not self._claimable(queues, now):
            return [], []  # an idle wake-up costs a read, never the write lock
        claim = None
        if limit > 0 and queues:
            params: dict[str, Any] = {
                "limit": limit,
                "lease_until": lease_clock() + lease_seconds,
                "worker": worker_id,
            }
            params.update((f"q{n}", queue) for n, queue in enumerate(queues))
            claim = (queries.claim(len(queues)), params)

        def exchange(conn: sqlite3.Connection) -> tuple[_Settled, list[Any], set[str]]:
            settled = _settle_in(conn, settlements, now)
            rows: list[Any] = []
            revoked: set[str] = set()
            if claim is not None:
                for queue in queues:
                    conn.execute(queries.PROMOTE, {"queue": queue, "now": now})
                rows = conn.execute(*claim).fetchall()
                if rows and hold_lease:
                    conn.execute(queries.HOLD_LEASE, claim[1])
                if rows and conn.execute(queries.ANY_REVOKED).fetchone():
                    ids = json.dumps([row[3] for row in rows])
                    revoked = {r[0] for r in conn.execute(queries.REVOKED_AMONG, (ids,))}
            return settled, rows, revoked

        hold_lease = claim is not None and self._lease_due(worker_id, lease_seconds)
        settled, rows, revoked = self._db.write(exchange)
        if rows and hold_lease:
            self._leases_held[worker_id] = lease_clock()
        if settled.results:
            self._wake.waiters.notify(row[0] for row in settled.results)
        if settled.published or settled.released:
            self._wake.workers.notify()
        rows.sort(key=lambda r: (-r[6], r[7], r[0]))
        return settled.accepted, [_delivery(row, row[3] in revoked) for row in rows]

    def _lease_due(self, holder: str, lease_seconds: float) -> bool:
        """Whether this claim must (re)write the holder's lease row.

        A holder that wrote its lease less than a quarter lease ago still has it (only a
        lease that ran out is reaped), so most claims skip the write. The lease clock
        keeps running while a process is stopped, so one stopped longer than that writes
        it again when it resumes.
        """
        last = self._leases_held.get(holder)
        return last is None or lease_clock() - last >= lease_seconds / 4

    def _claimable(self, queues: Sequence[str], now: float) -> bool:
        def probe(conn: sqlite3.Connection) -> bool:
            for queue in queues:
                if conn.execute(queries.READY_EXISTS, (queue,)).fetchone():
                    return True
                if conn.execute(queries.DUE_EXISTS, (queue, now)).fetchone():
                    return True
            return False

        return self._db.read(probe)

    def extend_leases(self, worker_id: str, lease_seconds: float) -> int:
        self._ensure_open()
        params = _group(worker_id, lease_seconds)
        return int(self._db.write(
            lambda conn: conn.execute(queries.EXTEND_LEASES, params).rowcount
        ))

    def reap_expired(self, policy: LostTaskPolicy) -> ReapReport:
        self._ensure_open()
        now = {"now": lease_clock()}
        # Cheap read first: reaping is a write only when a holder's lease ran out.
        if not self._db.read(lambda conn: conn.execute(queries.EXPIRED_HOLDERS, now).fetchone()
                             or conn.execute(queries.ORPHANED).fetchone()):
            return ReapReport()

        def reap(conn: sqlite3.Connection) -> ReapReport:
            rows = conn.execute(queries.EXPIRED, now).fetchall()
            rows += conn.execute(queries.ORPHANED).fetchall()
            report = self._apply_lost(conn, rows, policy)
            for (holder,) in conn.execute(queries.EXPIRED_HOLDERS, now).fetchall():
                conn.execute(queries.DROP_LEASE, (holder,))
            return report

        report = self._db.write(reap)
        self._after_lost(report)
        return report

    def lose(self, leases: Sequence[LeaseRef | Delivery], policy: LostTaskPolicy) -> ReapReport:
        self._ensure_open()
        if not leases:
            return ReapReport()

        def lose(conn: sqlite3.Connection) -> ReapReport:
            rows = []
            for lease in leases:
                row = conn.execute(queries.LEASE_INFO, (lease.key, lease.token)).fetchone()
                if row is not None:
                    rows.append(row)
            return self._apply_lost(conn, rows, policy)

        report = self._db.write(lose)
        self._after_lost(report)
        return report

    def release_worker(self, worker_id: str) -> int:
        self._ensure_open()
        def release(conn: sqlite3.Connection) -> int:
            count = conn.execute(queries.RELEASE_WORKER, (worker_id,)).rowcount
            conn.execute(queries.DROP_LEASE, (worker_id,))
            return int(count)

        released = self._db.write(release)
        if released:
            self._wake.workers.notify()
        return released

    def _apply_lost(
        self, conn: sqlite3.Connection, rows: Sequence[Any], policy: LostTaskPolicy
    ) -> ReapReport:
        report = ReapReport()
        now = wall()
        results = []
        for key, task_id, task_name, acks_late, deliveries in rows:
            if acks_late and deliveries < policy.max_deliveries:
                conn.execute(queries.REQUEUE, (key,))
                report.requeued.append(task_id)
                continue
            template = policy.exhausted if acks_late else policy.lost
            conn.execute(queries.DROP, (key,))
            record = replace(template, task_id=task_id, task_name=task_name, date_done=now)
            results.append(_result_row(record, now))
            report.failed.append(task_id)
        if results:
            conn.executemany(queries.STORE_RESULT, results)
        return report

    def _after_lost(self, report: ReapReport) -> None:
        if report.failed:
            self._wake.waiters.notify(report.failed)
        if report.requeued:
            self._wake.workers.notify()

    def next_eta(self, queues: Sequence[str]) -> float | None:
        self._ensure_open()

        def earliest(conn: sqlite3.Connection) -> float | None:
            etas = [conn.execute(queries.NEXT_ETA, (queue,)).fetchone()[0] for queue in queues]
            found = [eta for eta in etas if eta is not None]
            return min(found) if found else None

        return self._db.read(earliest)

    def purge(self, queues: Sequence[str] | None = None) -> int:
        self._ensure_open()
        message = self._models.Message
        query = message.delete().where(message.state.in_([READY, SCHEDULED]))
        if queues:
            query = query.where(message.queue.in_(list(queues)))
        return int(self._db.write(lambda _conn: query.execute()))

    def depth(self, queues: Sequence[str] | None = None) -> dict[str, QueueDepth]:
        self._ensure_open()
        message = self._models.Message
        query = message.select(
            message.queue, message.state, pw.fn.COUNT(message.id).alias("n")
        ).group_by(message.queue, message.state)
        if queues:
            query = query.where(message.queue.in_(list(queues)))
        counts: dict[str, dict[str, int]] = {}
        for row in self._db.read(lambda _conn: list(query.tuples())):
            queue, state, n = row
            counts.setdefault(queue, {})[_STATE_NAMES[state]] = n
        for queue in queues or ():
            counts.setdefault(queue, {})
        return {queue: QueueDepth(**by_state) for queue, by_state in sorted(counts.items())}

    def is_leased(self, task_id: str) -> bool:
        self._ensure_open()
        return bool(self._db.read(lambda conn: conn.execute(queries.IS_LEASED, (task_id,))
                                  .fetchone()))

    def listen(self, queues: Sequence[str]) -> Listener:
        self._ensure_open()
        try:
            return self._wake.worker_listener(f"{os.getpid()}")
        except OSError as exc:
            logger.warning(
                "cannot create a wake-up pipe beside %s (%s); new tasks will be noticed "
                "only at the next housekeeping tick", self.path, exc,
            )
            return _NullListener()

    # -- results ---------------------------------------------------------------------

    def store_result(self, record: ResultRecord, fence: Delivery | None = None) -> bool:
        self._ensure_open()
        row = _result_row(record, wall())

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

    def store_results(self, records: Sequence[ResultRecord]) -> None:
        self._ensure_open()
        now = wall()
        rows = [_result_row(record, now) for record in records]
        self._db.write(lambda conn: conn.executemany(queries.STORE_RESULT, rows))
        self._wake.waiters.notify(record.task_id for record in records)

    def get_result(self, task_id: str) -> ResultRecord | None:
        self._ensure_open()
        row = self._db.read(lambda conn: conn.execute(queries.GET_RESULT, (task_id,)).fetchone())
        if row is None:
            return None
        expires_at, date_done = row[9], row[8]
        return ResultRecord(
            task_id=row[0], state=row[1], content_type=row[2], payload=row[3] or b"null",
            traceback=row[4], task_name=row[5], worker=row[6], retries=row[7],
            date_done=date_done, extended=row[10],
            expires_in=None if expires_at is None else expires_at - date_done,
        )

    def forget(self, task_ids: Sequence[str]) -> None:
        self._ensure_open()
        result = self._models.Result
        ids = list(task_ids)
        self._db.write(lambda _conn: result.delete().where(result.task_id.in_(ids)).execute())

    def result_waiter(self, task_ids: Sequence[str]) -> Waiter:
        self._ensure_open()
        return _PipeWaiter(self, task_ids)

    def expire_results(self, limit: int = 1000) -> int:
        self._ensure_open()
        params = {"now": wall(), "limit": limit}

        def expire(conn: sqlite3.Connection) -> int:
            conn.execute(queries.EXPIRE_REVOKED, (params["now"],))
            return int(conn.execute(queries.EXPIRE_RESULTS, params).rowcount)

        return self._db.write(expire)

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
            if envelope is not None:
                conn.execute(queries.PUBLISH, _message_row(envelope, wall()))
            return True

        fired = self._db.write(fire)
        if fired and envelope is not None:
            self._wake.workers.notify()
        return fired

    # -- control ---------------------------------------------------------------------

    def revoke(self, revocations: Sequence[Revocation], expires_in: float | None) -> None:
        self._ensure_open()
        model = self._models.Revoked
        expires_at = None if expires_in is None else wall() + expires_in
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
        params = {"key": key, "rate": rate, "capacity": capacity, "now": lease_clock()}

        def take(conn: sqlite3.Connection) -> float:
            if conn.execute(queries.TAKE_TOKEN, params).fetchone() is not None:
                return 0.0
            row = conn.execute(queries.BUCKET, params).fetchone()
            tokens = row[0] if row else 0.0
            return max(0.0, (1.0 - tokens) / rate)

        return self._db.write(take)

    # -- workers ---------------------------------------------------------------------

    def register_worker(self, info: WorkerInfo) -> None:
        self._ensure_open()
        worker = self._models.Worker
        query = worker.replace(
            id=info.id, hostname=info.hostname, pid=info.pid, queues=json.dumps(info.queues),
            concurrency=info.concurrency, pool=info.pool, started_at=info.started_at,
            heartbeat_at=wall(), info=json.dumps(info.info),
        )
        self._db.write(lambda _conn: query.execute())

    def heartbeat(self, worker_id: str, lease_seconds: float, info: dict[str, Any]) -> int:
        self._ensure_open()
        worker = self._models.Worker
        now = wall()
        params = _group(worker_id, lease_seconds)
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


def _group(worker_id: str, lease_seconds: float) -> dict[str, Any]:
    """EXTEND_LEASES parameters for a worker and its pool processes."""
    return {"lease_until": lease_clock() + lease_seconds, "lo": worker_id, "hi": worker_id + "0"}


class _Settled:
    """What one settlement pass wrote."""

    __slots__ = ("accepted", "published", "released", "results")

    def __init__(self) -> None:
        self.accepted: list[bool] = []
        self.results: list[tuple[Any, ...]] = []
        self.published = 0
        self.released = 0


def _settle_in(conn: sqlite3.Connection, settlements: Sequence[Settlement], now: float) -> _Settled:
    """SETTLE: remove (or release) each message whose token still matches; store its
    result and publish its follow-ups in the same transaction."""
    settled = _Settled()
    published: list[tuple[Any, ...]] = []
    for settlement in settlements:
        delivery = settlement.delivery
        if settlement.release and settlement.release_at is not None:
            ok = conn.execute(queries.RELEASE_UNTIL, (settlement.release_at, delivery.key,
                                                      delivery.token)).rowcount == 1
        else:
            sql = queries.RELEASE if settlement.release else queries.ACK
            ok = conn.execute(sql, (delivery.key, delivery.token)).rowcount == 1
        settled.accepted.append(ok)
        if not ok:
            continue
        if settlement.release:
            settled.released += 1
            continue
        if settlement.result is not None:
            settled.results.append(_result_row(settlement.result, now))
        published.extend(_message_row(envelope, now) for envelope in settlement.publish)
    if settled.results:
        conn.executemany(queries.STORE_RESULT, settled.results)
    if published:
        conn.executemany(queries.PUBLISH, published)
        settled.published = len(published)
    return settled


def _delivery(r: Any, revoked: bool = False) -> Delivery:
    return Delivery(
        key=r[0],
        token=r[1],
        deliveries=r[2],
        envelope=Envelope(
            task_id=r[3], task_name=r[4], queue=r[5], priority=r[6], eta=r[7], expires=r[8],
            acks_late=bool(r[9]), content_type=r[10], header=r[11], body=r[12],
        ),
        revoked=revoked,
    )


def _message_row(envelope: Envelope, now: float) -> tuple[Any, ...]:
    eta = envelope.eta
    scheduled = eta is not None and eta > now
    return (
        envelope.task_id,
        envelope.task_name,
        envelope.queue,
        envelope.priority,
        eta if eta is not None else now,
        envelope.expires,
        SCHEDULED if scheduled else READY,
        envelope.acks_late,
        envelope.content_type,
        envelope.header,
        envelope.body,
    )


def _result_row(record: ResultRecord, now: float) -> tuple[Any, ...]:
    done = record.date_done or now
    return (
        record.task_id,
        record.state,
        record.content_type,
        record.payload,
        record.traceback,
        record.task_name,
        record.worker,
        record.retries,
        done,
        None if record.expires_in is None else done + record.expires_in,
        record.extended,
    )


__all__ = ["SQLiteTransport", "path_from_url"]
