"""Task events, read from the store: what ``liteq events`` prints.

Celery's workers *send* events over the broker; liteq's keep everything in the store
already, so events are *derived* by reading it, and the task path pays nothing for
them. An :class:`EventMonitor` compares what it reads with what it read before:

* a message it has not seen is ``task-sent`` (with its name, arguments, queue, eta);
* a message it saw waiting that a worker now holds is ``task-received``;
* a result it has not seen is ``task-started``, ``task-succeeded``, ``task-failed``,
  ``task-retried`` or ``task-revoked``, by its state.

A task that was sent and finished between two reads shows only its result; the read
interval (``liteq events --interval``) bounds that. Events are Celery-shaped dicts
(``type``, ``uuid``, ``hostname``, ``timestamp``, and the fields of that type), so a web
console or a metrics exporter can use the same monitor.

Example:
    >>> monitor = EventMonitor(app)  # doctest: +SKIP
    >>> monitor.poll()  # the events since the monitor was made  # doctest: +SKIP
    [{'type': 'task-sent', 'uuid': '...', 'name': 'tasks.add', ...}]
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from liteq import serialization
from liteq.messages import Message, iso
from liteq.states import FAILURE, RETRY, REVOKED, STARTED, SUCCESS
from liteq.transports.base import ResultRecord, StoredMessage

if TYPE_CHECKING:
    import threading

    from liteq.app import LiteQ

#: The event type of each result state.
RESULT_EVENTS: dict[str, str] = {
    STARTED: "task-started",
    SUCCESS: "task-succeeded",
    FAILURE: "task-failed",
    RETRY: "task-retried",
    REVOKED: "task-revoked",
}
#: Every event type a monitor gives.
EVENT_TYPES = ("task-sent", "task-received", *RESULT_EVENTS.values())
#: Results are read again this far back (seconds): a worker stamps a result before
#: its transaction commits, so one may become visible after a later one.
OVERLAP = 5.0
#: Messages read per poll at most (the newest).
MESSAGE_LIMIT = 10000


def request_info(message: StoredMessage, accept: frozenset[str],
                 hostname: str | None = None) -> dict[str, Any]:
    """A stored message as Celery's ``inspect`` shows a request.

    Example:
        >>> request_info(stored, app.accept)["name"]  # doctest: +SKIP
        'tasks.add'
    """
    envelope = message.envelope
    try:
        decoded = Message.decode(envelope, accept)
        args: Any = list(decoded.args)
        kwargs: Any = dict(decoded.kwargs)
        eta = decoded.eta
    except Exception as exc:  # still show what the columns say
        args, kwargs, eta = f"<cannot decode: {exc}>", {}, None
    return {
        "id": envelope.task_id,
        "name": envelope.task_name,
        "args": args,
        "kwargs": kwargs,
        "type": envelope.task_name,
        "hostname": hostname,
        "time_start": None,
        "acknowledged": False,
        "delivery_info": {"exchange": "", "routing_key": envelope.queue,
                          "priority": envelope.priority, "redelivered": False},
        "eta": eta if isinstance(eta, str) else iso(envelope.eta) if eta else None,
        "expires": iso(envelope.expires),
        "worker_pid": None,
    }


def holder_hostnames(app: LiteQ) -> dict[str, str]:
    """Worker id -> node name, for naming who holds a message."""
    return {info.id: info.hostname for info in app.broker.workers()}


def holder_node(holder: str | None, hostnames: dict[str, str]) -> str | None:
    """The node name of a lease holder (a worker id, or ``<worker id>/<process>``)."""
    if not holder:
        return None
    worker_id = holder.partition("/")[0]
    return hostnames.get(worker_id) or worker_id.split(":")[0]


class EventMonitor:
    """Derives task events from the store, one :meth:`poll` at a time.

    Args:
        app: the app whose broker and result backend are read.
        replay: start from nothing, so the first poll gives an event for everything
            stored now (``liteq events --dump``); otherwise the first poll gives only
            what changed since the monitor was made.
    """

    def __init__(self, app: LiteQ, *, replay: bool = False) -> None:
        self.app = app
        self._messages: dict[tuple[Any, str], str] = {}
        self._results: dict[tuple[str, str, float], float] = {}
        self._since = 0.0
        self._hostnames: dict[str, str] = {}
        if not replay:  # what is stored now is the baseline: no events for it
            self._since = time.time()
            self.poll()

    def poll(self) -> list[dict[str, Any]]:
        """The events since the last poll, oldest first."""
        now = time.time()
        events = self._message_events(now) + self._result_events()
        events.sort(key=lambda event: event["timestamp"])
        return events

    def _message_events(self, now: float) -> list[dict[str, Any]]:
        app = self.app
        stored = app.broker.messages(limit=MESSAGE_LIMIT)
        events: list[dict[str, Any]] = []
        current: dict[tuple[Any, str], str] = {}
        for message in reversed(stored):  # oldest first
            key = (message.key, message.envelope.task_id)
            current[key] = message.state
            before = self._messages.get(key)
            if before is None:
                events.append(self._sent(message, now))
            if message.state == "leased" and before != "leased":
                if message.holder and message.holder.partition("/")[0] not in self._hostnames:
                    self._hostnames = holder_hostnames(app)
                events.append({
                    "type": "task-received", "uuid": message.envelope.task_id,
                    "name": message.envelope.task_name,
                    "hostname": holder_node(message.holder, self._hostnames),
                    "timestamp": now,
                })
        self._messages = current
        return events

    def _sent(self, message: StoredMessage, now: float) -> dict[str, Any]:
        info = request_info(message, self.app.accept)
        envelope = message.envelope
        published = envelope.eta if message.state == "ready" and envelope.eta else now
        return {
            "type": "task-sent", "uuid": envelope.task_id, "name": envelope.task_name,
            "args": info["args"], "kwargs": info["kwargs"], "queue": envelope.queue,
            "routing_key": envelope.queue, "priority": envelope.priority,
            "eta": info["eta"] if message.state == "scheduled" else None,
            "expires": info["expires"], "hostname": None,
            "timestamp": min(published, now),
        }

    def _result_events(self) -> list[dict[str, Any]]:
        records = self.app.backend.results_since(self._since - OVERLAP, limit=MESSAGE_LIMIT)
        events = []
        for record in records:
            key = (record.task_id, record.state, record.date_done)
            if key in self._results:
                continue
            self._results[key] = record.date_done
            self._since = max(self._since, record.date_done)
            event_type = RESULT_EVENTS.get(record.state)
            if event_type is not None:
                events.append(self._result_event(event_type, record))
        horizon = self._since - 2 * OVERLAP
        self._results = {k: done for k, done in self._results.items() if done >= horizon}
        return events

    def _result_event(self, event_type: str, record: ResultRecord) -> dict[str, Any]:
        event: dict[str, Any] = {
            "type": event_type, "uuid": record.task_id, "name": record.task_name,
            "hostname": record.worker, "timestamp": record.date_done,
            "retries": record.retries,
        }
        value = self._value(record)
        if record.state == SUCCESS:
            event["result"] = repr(value)
        elif record.state in (FAILURE, RETRY, REVOKED):
            event["exception"] = _exception_text(value)
            if record.state != REVOKED:
                event["traceback"] = record.traceback
        return event

    def _value(self, record: ResultRecord) -> Any:
        try:
            return serialization.loads(record.payload, record.content_type,
                                       self.app.result_accept)
        except Exception as exc:
            return f"<cannot decode: {exc}>"

    def follow(self, stop: threading.Event, interval: float = 0.5
               ) -> Iterator[dict[str, Any]]:
        """Events as they happen, until ``stop`` is set."""
        while not stop.is_set():
            yield from self.poll()
            stop.wait(interval)


def _exception_text(value: Any) -> str:
    """``ValueError('boom')`` from a stored exception (a dict with its type and args)."""
    if isinstance(value, dict) and "exc_type" in value:
        message = value.get("exc_message") or []
        args = ", ".join(repr(arg) for arg in message) if isinstance(message, list) \
            else repr(message)
        return f"{value['exc_type']}({args})"
    return repr(value)


__all__ = ["EVENT_TYPES", "EventMonitor", "holder_hostnames", "holder_node", "request_info"]
