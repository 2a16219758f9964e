"""Rows as the SQLite transport stores and reads them."""

from __future__ import annotations

from typing import Any

from liteq import _clock
from liteq.messages import Envelope
from liteq.transports.base import Delivery, ResultRecord
from liteq.transports.sqlite.schema import READY, SCHEDULED


def delivery(r: Any, revoked: bool = False) -> Delivery:
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


def message_row(envelope: Envelope, now: float) -> tuple[Any, ...]:
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


def result_row(record: ResultRecord, now: float) -> tuple[Any, ...]:
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


def lease_group(worker_id: str, lease_seconds: float) -> dict[str, Any]:
    """EXTEND_LEASES parameters for a worker and its pool processes."""
    until = _clock.lease_clock() + lease_seconds
    return {"lease_until": until, "lo": worker_id, "hi": worker_id + "0"}


__all__ = ["delivery", "lease_group", "message_row", "result_row"]
