"""The SQLite transport's message role: publish, claim, settle, leases, reaping."""

from __future__ import annotations

import itertools
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import peewee as pw

from liteq import _clock
from liteq.messages import Envelope
from liteq.platforms import WakePipe
from liteq.transports.base import (
    LOST,
    Delivery,
    LeaseRef,
    Listener,
    LostTaskPolicy,
    QueueDepth,
    ReapReport,
    ResultRecord,
    Settlement,
    Tally,
    runtime_bucket,
)
from liteq.transports.sqlite import flow, queries
from liteq.transports.sqlite.rows import (
    ClaimedRow,
    LostRow,
    ResultRow,
    delivery,
    lease_group,
    lost_envelope,
    message_row,
    result_row,
)
from liteq.transports.sqlite.schema import BLOCKED, READY, SCHEDULED, STATE_NAMES
from liteq.transports.sqlite.state import SQLiteRole

logger = logging.getLogger("liteq.transports.sqlite")

class _NullListener(WakePipe):
    """A listener that never fires (workers then rely on their housekeeping timeout)."""


class MessagesRole(SQLiteRole):
    """Messages: the queue, its leases, and what happens when a lease is lost."""

    #: blocked messages a lost lease's freed slot admitted (wake workers after commit)
    _admitted = 0

    def publish(self, envelopes: Sequence[Envelope]) -> list[str] | None:
        self._ensure_open()
        now = _clock.wall()
        if any(envelope.flow is not None for envelope in envelopes):
            ids = self._db.write(lambda conn: flow.publish(conn, envelopes, now))
            if not self._db.conn.in_transaction:
                self._wake.workers.notify()
            return ids
        rows = [message_row(envelope, now) for envelope in envelopes]
        if len(rows) == 1:
            self._db.write_one(queries.PUBLISH, rows[0])
        else:
            self._db.write(lambda conn: _insert_many(conn, rows))
        if not self._db.conn.in_transaction:  # else transaction() wakes workers at commit
            self._wake.workers.notify()
        return None

    def publish_on(self, connection: Any, envelopes: Sequence[Envelope]) -> list[str] | None:
        """Publish through the caller's own open connection to this file, uncommitted.

        The messages exist if and only if the caller's transaction commits. Workers are
        woken now and look again shortly after finding nothing, since liteq cannot see
        the caller's commit.
        """
        self._ensure_open()
        conn = getattr(connection, "connection", None)
        conn = conn() if callable(conn) else connection  # a peewee database
        now = _clock.wall()
        ids = None
        if any(envelope.flow is not None for envelope in envelopes):
            ids = flow.publish(conn, envelopes, now)
        else:
            conn.executemany(queries.PUBLISH, [message_row(envelope, now)
                                               for envelope in envelopes])
        self._wake.workers.notify()
        return ids

    def notify_workers(self) -> None:
        """Wake idle workers (after a transaction liteq did not commit itself)."""
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
        now = _clock.wall()
        named = {f"q{n}": queue for n, queue in enumerate(queues)}
        if not settlements and not self._claimable(queues, named, now):
            return [], []  # an idle wake-up costs a read, never the write lock
        claim = promote = None
        if limit > 0 and queues:
            params: dict[str, Any] = {
                "limit": limit,
                "lease_until": _clock.lease_clock() + lease_seconds,
                "worker": worker_id,
                **named,
            }
            claim = (queries.claim(len(queues)), params)
            promote = (queries.promote(len(queues)), {"now": now, **named})

        def exchange(conn: sqlite3.Connection) -> tuple[_Settled, list[ClaimedRow], set[str]]:
            settled = _settle_in(conn, settlements, now)
            rows: list[ClaimedRow] = []
            revoked: set[str] = set()
            if claim is not None and promote is not None:
                rows = _claim_in(conn, claim, promote, queues, now, settled, hold_lease)
                if rows and conn.execute(queries.ANY_REVOKED).fetchone():
                    ids = json.dumps([str(row.task_id) for row in rows])
                    revoked = {r[0] for r in conn.execute(queries.REVOKED_AMONG, (ids,))}
            return settled, rows, revoked

        hold_lease = claim is not None and self._lease_due(worker_id, lease_seconds)
        settled, rows, revoked = self._db.write(exchange)
        if rows and hold_lease:
            self._leases_held[worker_id] = _clock.lease_clock()
        if settled.results:
            self._wake.waiters.notify(row.task_id for row in settled.results)
        if settled.published or settled.released:
            self._wake.workers.notify()
        claimed = [delivery(row, str(row.task_id) in revoked, now) for row in rows]
        claimed.sort(key=lambda held: (-held.envelope.priority, held.envelope.eta or 0.0,
                                       held.key))
        return settled.accepted, claimed

    def _lease_due(self, holder: str, lease_seconds: float) -> bool:
        """Whether this claim must (re)write the holder's lease row.

        A holder that wrote its lease less than a quarter lease ago still has it (only a
        lease that ran out is reaped), so most claims skip the write. The lease clock
        keeps running while a process is stopped, so one stopped longer than that writes
        it again when it resumes.
        """
        last = self._leases_held.get(holder)
        return last is None or _clock.lease_clock() - last >= lease_seconds / 4

    def _claimable(self, queues: Sequence[str], named: dict[str, str], now: float) -> bool:
        def flow_due(conn: sqlite3.Connection) -> bool:  # a rate token came for a key
            due = conn.execute(queries.FLOW_DUE).fetchone()[0]
            return due is not None and due <= now

        if len(queues) == 1:  # the common case: two point look-ups, most often one
            queue = queues[0]

            def probe(conn: sqlite3.Connection) -> bool:
                return bool(conn.execute(queries.READY_EXISTS, (queue,)).fetchone()
                            or conn.execute(queries.DUE_EXISTS, (queue, now)).fetchone()
                            or flow_due(conn))

            return self._db.read(probe)
        sql, params = queries.claimable(len(queues)), {"now": now, **named}
        return bool(self._db.read(
            lambda conn: conn.execute(sql, params).fetchone()[0] or flow_due(conn)))

    def extend_leases(self, worker_id: str, lease_seconds: float) -> int:
        self._ensure_open()
        params = lease_group(worker_id, lease_seconds)
        return int(self._db.write(
            lambda conn: conn.execute(queries.EXTEND_LEASES, params).rowcount
        ))

    def reap_expired(self, policy: LostTaskPolicy) -> ReapReport:
        self._ensure_open()
        now = {"now": _clock.lease_clock()}
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
        now = _clock.wall()
        results = []
        for row in map(LostRow._make, rows):
            acks_late = bool(row.acks_late)
            if acks_late and row.deliveries < policy.max_deliveries:
                conn.execute(queries.REQUEUE, (row.id,))  # keeps its concurrency slot
                report.requeued.append(row.task_id)
                continue
            template = policy.exhausted if acks_late else policy.lost
            conn.execute(queries.DROP, (row.id,))
            envelope = lost_envelope(row)
            if envelope.flow is not None:  # its slot comes back, its unique key is free
                self._admitted += flow.release(conn, envelope.flow, row.task_id, now)
            record = replace(template, task_id=row.task_id, task_name=row.task_name,
                             date_done=now)
            if policy.finish is not None:  # the call kept, a chord's part counted
                record, publish = policy.finish(envelope, record)
                if publish:
                    self.publish_on(conn, publish)
            results.append(result_row(record, now))
            report.failed.append(row.task_id)
        if results:
            conn.executemany(queries.STORE_RESULT, results)
        # Counted: every lease taken over (LOST), and the tasks that failed for it.
        tallies = [Tally(str(LostRow._make(row).task_name or "unknown"), LOST) for row in rows]
        tallies += [Tally(row.task_name or "unknown", row.state) for row in results]
        if tallies:
            count_tasks(conn, tallies, now)
        return report

    def fail_unreachable(self, failure: Callable[[Envelope, str], ResultRecord],
                         limit: int = 1000) -> list[str]:
        self._ensure_open()
        params = {"limit": limit}
        if not self._db.read(lambda conn: conn.execute(queries.UNREACHABLE, params).fetchone()):
            return []

        def fail(conn: sqlite3.Connection) -> list[str]:
            now = _clock.wall()
            failed, results = [], []
            for *columns, reason in conn.execute(queries.UNREACHABLE, params).fetchall():
                row = LostRow._make(columns)
                conn.execute(queries.DROP, (row.id,))
                record = failure(lost_envelope(row), reason)
                results.append(result_row(record, now))
                failed.append(record.task_id)
            conn.executemany(queries.STORE_RESULT, results)
            return failed

        failed = self._db.write(fail)
        if failed:
            self._wake.waiters.notify(failed)
        return failed

    def _after_lost(self, report: ReapReport) -> None:
        if report.failed:
            self._wake.waiters.notify(report.failed)
        admitted, self._admitted = self._admitted, 0
        if report.requeued or admitted:
            self._wake.workers.notify()

    def next_eta(self, queues: Sequence[str]) -> float | None:
        self._ensure_open()

        def earliest(conn: sqlite3.Connection) -> float | None:
            etas = [conn.execute(queries.NEXT_ETA, (queue,)).fetchone()[0] for queue in queues]
            etas.append(conn.execute(queries.FLOW_DUE).fetchone()[0])  # blocked: a token
            # numbers sort before text in SQLite: a text eta (another program's row,
            # failed as unreachable) is the minimum only when no real one is there
            found = [eta for eta in etas if type(eta) in (int, float)]
            return min(found) if found else None

        return self._db.read(earliest)

    def purge(self, queues: Sequence[str] | None = None) -> int:
        self._ensure_open()
        message = self._models.Message
        query = message.delete().where(message.state.in_([READY, SCHEDULED, BLOCKED]))
        if queues:
            query = query.where(message.queue.in_(list(queues)))

        def purge(conn: sqlite3.Connection) -> int:
            count = int(query.execute())
            if conn.execute(flow.ANY_FLOW).fetchone():
                flow.recount(conn)  # slots and waiting counts of the messages left
            return count

        return int(self._db.write(purge))

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
            counts.setdefault(queue, {})[STATE_NAMES[state]] = n
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


class _Settled:
    """What one settlement pass wrote."""

    __slots__ = ("accepted", "published", "released", "results")

    def __init__(self) -> None:
        self.accepted: list[bool] = []
        self.results: list[ResultRow] = []
        self.published = 0
        self.released = 0


def _claim_in(conn: sqlite3.Connection, claim: tuple[str, dict[str, Any]],
              promote: tuple[str, dict[str, Any]], queues: Sequence[str], now: float,
              settled: _Settled, hold_lease: bool) -> list[ClaimedRow]:
    """CLAIM inside the exchange: due scheduled messages promoted, then the lease.

    Flow control costs one indexed read (FLOW_STATE); more only when a flow key is
    due (blocked messages admitted first) or a queue is paused (left out).
    """
    sql, params = claim
    promote_sql, promote_params = promote
    due, paused = conn.execute(flow.FLOW_STATE).fetchone()
    if due is not None and due <= now:
        settled.released += flow.wake_due(conn, now)
    if paused != "[]":
        stopped = set(json.loads(paused))
        queues = [queue for queue in queues if queue not in stopped]
        if not queues:
            return []
        named = {f"q{n}": queue for n, queue in enumerate(queues)}
        params = {"limit": params["limit"], "lease_until": params["lease_until"],
                  "worker": params["worker"], **named}
        sql = queries.claim(len(queues))
        promote_sql, promote_params = queries.promote(len(queues)), {"now": now, **named}
    conn.execute(promote_sql, promote_params)
    rows = list(map(ClaimedRow._make, conn.execute(sql, params)))
    if rows and hold_lease:
        conn.execute(queries.HOLD_LEASE, params)
    if any(row.flow is not None for row in rows):
        flow.claimed(conn, rows)
    return rows


def _insert_many(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """PUBLISH_MANY: many rows per statement (a third cheaper per row than executemany)."""
    size = queries.PUBLISH_CHUNK
    whole = len(rows) - len(rows) % size
    sql = queries.publish_many(size)
    for start in range(0, whole, size):
        conn.execute(sql, list(itertools.chain.from_iterable(rows[start:start + size])))
    if whole < len(rows):
        conn.executemany(queries.PUBLISH, rows[whole:])


def _ack(conn: sqlite3.Connection, leases: Sequence[Delivery | LeaseRef]) -> set[Any]:
    """Remove the messages whose lease still holds; returns their keys."""
    if not leases:
        return set()
    if len(leases) == 1:
        lease = leases[0]
        removed = conn.execute(queries.ACK, (lease.key, lease.token)).rowcount
        return {lease.key} if removed == 1 else set()
    params: list[Any] = [lease.key for lease in leases]
    for lease in leases:
        params += (lease.key, lease.token)
    return {row[0] for row in conn.execute(queries.ack_many(len(leases)), params)}


def _release(conn: sqlite3.Connection, settlement: Settlement, now: float) -> bool:
    """Put a leased message back (RELEASE, REDELIVER, RELEASE_UNTIL) if its token
    matches; one under a concurrency or rate limit released until later waits blocked."""
    delivery = settlement.delivery
    lease = (delivery.key, delivery.token)
    held = getattr(getattr(delivery, "envelope", None), "flow", None)
    if held is not None and held.gated and settlement.release_at is not None:
        return flow.block_again(conn, held, *lease, settlement.release_at, now)
    if settlement.release_at is not None:
        return bool(conn.execute(queries.RELEASE_UNTIL, (settlement.release_at, *lease)
                                 ).rowcount == 1)
    if settlement.redeliver:
        return bool(conn.execute(queries.REDELIVER, lease).rowcount == 1)
    return bool(conn.execute(queries.RELEASE, lease).rowcount == 1)


def _settle_in(conn: sqlite3.Connection, settlements: Sequence[Settlement], now: float) -> _Settled:
    """SETTLE: remove (or release) each message whose token still matches; store its
    result and publish its follow-ups in the same transaction."""
    settled = _Settled()
    published: list[Envelope] = []
    tallies: list[Tally] = []
    acked = _ack(conn, [s.delivery for s in settlements if not s.release])
    for settlement in settlements:
        delivery = settlement.delivery
        if settlement.release:
            ok = _release(conn, settlement, now)
            settled.accepted.append(ok)
            settled.released += ok
            continue
        ok = delivery.key in acked
        settled.accepted.append(ok)
        if not ok:
            continue
        if settlement.tally is not None:
            tallies.append(settlement.tally)
        if settlement.result is not None:
            settled.results.append(result_row(settlement.result, now))
        published.extend(settlement.publish)
        envelope = getattr(delivery, "envelope", None)
        if envelope is not None and envelope.flow is not None:
            # A slot is free (the next of its key is admitted); the unique key too,
            # unless the task goes on (a retry: the same task id published again).
            again = any(e.task_id == envelope.task_id for e in settlement.publish)
            settled.released += flow.release(conn, envelope.flow, envelope.task_id, now,
                                             finished=not again)
    if settled.results:
        conn.executemany(queries.STORE_RESULT, settled.results)
    if published:
        if any(envelope.flow is not None for envelope in published):
            flow.publish(conn, published, now)
        else:
            conn.executemany(queries.PUBLISH, [message_row(e, now) for e in published])
        settled.published = len(published)
    if tallies:
        count_tasks(conn, tallies, now)
    return settled


def count_tasks(conn: sqlite3.Connection, tallies: Sequence[Tally], now: float) -> None:
    """COUNT_TASKS: add finished tasks to the per-minute counters, grouped here first so a
    settle batch costs one statement (of a row or two: a batch is mostly one task name,
    one state and one run-time bucket)."""
    minute = float(int(now // 60) * 60)
    groups: dict[tuple[str, str, int], list[float]] = {}
    for tally in tallies:
        key = (tally.task_name, tally.state, runtime_bucket(tally.runtime))
        group = groups.get(key)
        if group is None:
            groups[key] = [1, tally.runtime or 0.0]
        else:
            group[0] += 1
            group[1] += tally.runtime or 0.0
    params: list[Any] = []
    for (name, state, bucket), (count, runtime) in groups.items():
        params += (minute, name, state, bucket, int(count), runtime)
    conn.execute(queries.count_tasks(len(groups)), params)


__all__ = ["MessagesRole"]
