"""Rows as the SQLite transport stores and reads them, named.

Each row type is a NamedTuple whose fields are the table's columns, in the order the
statements of ``queries.py`` list them (they build their column lists from these), so
a row is read by name (``row.task_id``), never by position.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from liteq import _clock
from liteq.messages import Envelope, stored_envelope
from liteq.transports.base import Delivery, ResultRecord, StoredMessage
from liteq.transports.sqlite.schema import READY, SCHEDULED, STATE_NAMES


class MessageRow(NamedTuple):
    """A message as PUBLISH inserts it into ``liteq_messages``."""

    task_id: str
    task_name: str
    queue: str
    priority: int
    run_at: float
    expires: float | None
    state: int
    acks_late: bool
    content_type: str
    header: bytes
    body: bytes


class ClaimedRow(NamedTuple):
    """A message as CLAIM returns it: the lease (id, token, deliveries), then the
    envelope's columns."""

    id: int
    token: int
    deliveries: int
    task_id: str
    task_name: str
    queue: str
    priority: int
    run_at: float
    expires: float | None
    acks_late: int
    content_type: str
    header: bytes
    body: bytes
    flow: str | None  #: flow control json (messages.Flow), NULL for most messages


class ResultRow(NamedTuple):
    """A row of ``liteq_results`` (STORE_RESULT, GET_RESULT, FIND_RESULTS)."""

    task_id: str
    state: str
    content_type: str
    payload: bytes | None
    traceback: str | None
    task_name: str | None
    worker: str | None
    retries: int
    date_done: float
    expires_at: float | None
    extended: bytes | None
    children: bytes | None
    date_received: float | None
    date_started: float | None


class LostRow(NamedTuple):
    """A leased message as reaping reads it (LEASE_INFO, EXPIRED, ORPHANED): its key and
    deliveries, then the envelope's columns (what a lost-task record is built from)."""

    id: int
    deliveries: int
    task_id: str
    task_name: str
    queue: str
    priority: int
    run_at: float
    expires: float | None
    acks_late: int
    content_type: str
    header: bytes
    body: bytes
    flow: str | None


class StoredRow(NamedTuple):
    """A stored message as monitors read it (``Transport.messages()``): its key, state
    and holder, then the envelope's columns."""

    id: int
    state: int
    worker_id: str | None
    task_id: str
    task_name: str
    queue: str
    priority: int
    run_at: float
    expires: float | None
    acks_late: int
    content_type: str
    header: bytes
    body: bytes


MESSAGE_COLUMNS = ", ".join(MessageRow._fields)
#: A message with flow control: its flow json and the key it waits on, if blocked.
MESSAGE_COLUMNS_FLOW = f"{MESSAGE_COLUMNS}, flow, gate"
STORED_COLUMNS = ", ".join(StoredRow._fields)
CLAIMED_COLUMNS = ", ".join(ClaimedRow._fields)
LOST_COLUMNS = ", ".join(LostRow._fields)
RESULT_COLUMNS = ", ".join(ResultRow._fields)


def delivery(row: ClaimedRow, revoked: bool = False, claimed_at: float | None = None
             ) -> Delivery:
    """A claimed row as the worker receives it."""
    return Delivery(
        key=row.id,
        token=row.token,
        deliveries=row.deliveries,
        envelope=stored_envelope(
            row.task_id, row.task_name, row.queue, row.priority, row.run_at, row.expires,
            row.acks_late, row.content_type, row.header, row.body, row.flow,
        ),
        revoked=revoked,
        claimed_at=claimed_at,
    )


def lost_envelope(row: LostRow) -> Envelope:
    """The envelope of a message reaping fails."""
    return stored_envelope(
        row.task_id, row.task_name, row.queue, row.priority, row.run_at, row.expires,
        row.acks_late, row.content_type, row.header, row.body, row.flow,
    )


def stored_message(row: StoredRow) -> StoredMessage:
    """A stored row as ``inspect`` and the event monitor see it."""
    return StoredMessage(
        key=row.id, state=STATE_NAMES.get(row.state, "ready"), holder=row.worker_id,
        envelope=stored_envelope(
            row.task_id, row.task_name, row.queue, row.priority, row.run_at, row.expires,
            row.acks_late, row.content_type, row.header, row.body,
        ),
    )


def message_row(envelope: Envelope, now: float) -> MessageRow:
    eta = envelope.eta
    scheduled = eta is not None and eta > now
    return MessageRow(
        task_id=envelope.task_id,
        task_name=envelope.task_name,
        queue=envelope.queue,
        priority=envelope.priority,
        run_at=eta if eta is not None else now,
        expires=envelope.expires,
        state=SCHEDULED if scheduled else READY,
        acks_late=envelope.acks_late,
        content_type=envelope.content_type,
        header=envelope.header,
        body=envelope.body,
    )


def result_row(record: ResultRecord, now: float) -> ResultRow:
    done = record.date_done or now
    return ResultRow(
        task_id=record.task_id,
        state=record.state,
        content_type=record.content_type,
        payload=record.payload,
        traceback=record.traceback,
        task_name=record.task_name,
        worker=record.worker,
        retries=record.retries,
        date_done=done,
        expires_at=None if record.expires_in is None else done + record.expires_in,
        extended=record.extended,
        children=record.children,
        date_received=record.date_received,
        date_started=record.date_started,
    )


def result_record(row: ResultRow) -> ResultRecord:
    """A stored result row as the record the contract returns."""
    return ResultRecord(
        task_id=row.task_id, state=row.state, content_type=row.content_type,
        payload=row.payload or b"null", traceback=row.traceback, task_name=row.task_name,
        worker=row.worker, retries=row.retries, date_done=row.date_done,
        extended=row.extended,
        expires_in=None if row.expires_at is None else row.expires_at - row.date_done,
        children=row.children, date_received=row.date_received,
        date_started=row.date_started,
    )


def lease_group(worker_id: str, lease_seconds: float) -> dict[str, Any]:
    """EXTEND_LEASES parameters for a worker and its pool processes."""
    until = _clock.lease_clock() + lease_seconds
    return {"lease_until": until, "lo": worker_id, "hi": worker_id + "0"}


__all__ = [
    "CLAIMED_COLUMNS",
    "MESSAGE_COLUMNS",
    "MESSAGE_COLUMNS_FLOW",
    "RESULT_COLUMNS",
    "STORED_COLUMNS",
    "ClaimedRow",
    "MessageRow",
    "ResultRow",
    "StoredRow",
    "delivery",
    "lease_group",
    "message_row",
    "result_record",
    "result_row",
    "stored_message",
]
