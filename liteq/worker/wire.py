"""What travels between the worker's main process and its children: plain tuples.

``marshal`` turns tuples of str, bytes, numbers and None into bytes several times
faster than pickling dataclasses, and both ends are the same liteq, so its format is
stable for the pair.
"""

from __future__ import annotations

import marshal
from typing import Any

from liteq.execute import Outcome
from liteq.messages import Envelope
from liteq.transports.base import Delivery, ResultRecord


def _envelope_tuple(e: Envelope) -> tuple[Any, ...]:
    return (e.task_id, e.task_name, e.queue, e.priority, e.eta, e.expires, e.acks_late,
            e.content_type, e.header, e.body)


def _record_tuple(r: ResultRecord) -> tuple[Any, ...]:
    return (r.task_id, str(r.state), r.content_type, r.payload, r.traceback, r.date_done,
            r.task_name, r.worker, r.retries, r.extended, r.expires_in)


def dump_delivery(d: Delivery) -> bytes:
    return marshal.dumps((d.key, d.token, d.deliveries, _envelope_tuple(d.envelope)))


def load_delivery(data: bytes) -> Delivery:
    key, token, deliveries, env = marshal.loads(data)
    return Delivery(key, token, deliveries, Envelope(*env))


def dump_outcome(key: Any, outcome: Outcome) -> bytes:
    record = _record_tuple(outcome.record) if outcome.record is not None else None
    publish = tuple(_envelope_tuple(e) for e in outcome.publish)
    return marshal.dumps((key, str(outcome.state), record, publish, outcome.runtime,
                          outcome.requeue, outcome.summary, outcome.defer_until))


def load_outcome(data: bytes) -> tuple[Any, Outcome]:
    key, state, record, publish, runtime, requeue, summary, defer_until = marshal.loads(data)
    return key, Outcome(
        state=state,
        record=ResultRecord(*record) if record is not None else None,
        publish=tuple(Envelope(*e) for e in publish),
        runtime=runtime,
        requeue=requeue,
        summary=summary,
        defer_until=defer_until,
    )


__all__ = ["dump_delivery", "dump_outcome", "load_delivery", "load_outcome"]
