"""What the console shows, read from the store: queues, tasks, workers, the schedule.

Everything comes from the broker and the result backend through the transport
contract (``depth``, ``messages``, ``results_since``, ``get_result``, ``workers``,
``beat_entries``, ``task_counts``), so the history the console shows is the store's: it
survives restarts of the console and of the workers. The only thing written on the task
path for it is the per-minute counters the charts read, in the settle transaction (one
statement per settled batch). A task is the merge of its stored message (waiting or
running) and its stored result (started or finished, with when it was received and
started).
"""

from __future__ import annotations

import fnmatch
import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from liteq import serialization
from liteq.events import _exception_text, holder_hostnames, holder_node
from liteq.messages import Message
from liteq.states import FAILURE, READY_STATES, RETRY, REVOKED, STARTED, SUCCESS
from liteq.transports.base import QueueDepth, ResultRecord, StoredMessage

if TYPE_CHECKING:
    from liteq.app import LiteQ

#: Messages read per request at most (the newest).
MESSAGE_LIMIT = 5000
#: Results read per request at most.
RESULT_LIMIT = 50000
#: How a stored message's state is shown.
MESSAGE_STATES = {"ready": "PENDING", "scheduled": "SCHEDULED", "leased": "RECEIVED"}
#: Every state the task list filters by.
STATES = ("PENDING", "SCHEDULED", "RECEIVED", STARTED, RETRY, SUCCESS, FAILURE, REVOKED)
#: A worker whose heartbeat is older than this many seconds is not counted alive.
ALIVE_SECONDS = 90.0
HIDDEN = "<hidden>"


def sent_at(task_id: str) -> float | None:
    """When a task was sent, from its id (liteq's ids are UUIDv7); None for other ids."""
    if len(task_id) == 36 and task_id[14] == "7":
        try:
            return int(task_id[:8] + task_id[9:13], 16) / 1000.0
        except ValueError:
            return None
    return None


@dataclass
class Task:
    """One task as the console shows it."""

    id: str
    name: str | None
    state: str
    queue: str | None = None
    args: Any = None
    kwargs: Any = None
    worker: str | None = None
    retries: int = 0
    sent: float | None = None
    eta: float | None = None
    finished: float | None = None
    started: float | None = None
    received: float | None = None  #: when a worker claimed it
    result: Any = None
    exception: str | None = None
    traceback: str | None = None
    parent_id: str | None = None
    root_id: str | None = None
    group: str | None = None
    children: list[str] = field(default_factory=list)
    retried_as: str | None = None
    retried_from: str | None = None
    hidden: bool = False

    @property
    def updated(self) -> float:
        return self.finished or self.started or self.sent or 0.0

    @property
    def args_text(self) -> str:
        if self.hidden:
            return HIDDEN
        parts = [json.dumps(a, default=repr) for a in self.args or ()] if isinstance(
            self.args, list) else ([str(self.args)] if self.args else [])
        parts += [f"{k}={json.dumps(v, default=repr)}" for k, v in (self.kwargs or {}).items()]
        return ", ".join(parts)

    @property
    def can_retry(self) -> bool:
        return self.state in (FAILURE, REVOKED) and not self.retried_as

    @property
    def can_revoke(self) -> bool:
        return self.state not in READY_STATES

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "state": self.state, "queue": self.queue,
                "args": self.args_text, "worker": self.worker, "retries": self.retries,
                "sent": self.sent, "finished": self.finished, "updated": self.updated}


@dataclass(frozen=True)
class TaskFilter:
    """The task list's filter: all fields optional."""

    state: str | None = None
    name: str | None = None
    queue: str | None = None
    since: float | None = None  #: epoch seconds
    search: str | None = None  #: an id (or its start) or a substring of the arguments

    def matches(self, task: Task) -> bool:
        if self.state and task.state != self.state:
            return False
        if self.name and task.name != self.name:
            return False
        if self.queue and task.queue != self.queue:
            return False
        if self.since and task.updated < self.since:
            return False
        if self.search:
            needle = self.search.strip()
            if not (task.id.startswith(needle) or
                    (not task.hidden and needle in task.args_text)):
                return False
        return True


class ConsoleData:
    """Reads the store for the console's pages.

    Args:
        app: the app whose broker and backend are read.
        hidden: glob patterns of task names whose arguments and results are not shown.
    """

    def __init__(self, app: LiteQ, hidden: tuple[str, ...] = ()) -> None:
        self.app = app
        self.hidden = hidden

    def is_hidden(self, name: str | None) -> bool:
        return bool(name) and any(fnmatch.fnmatchcase(str(name), p) for p in self.hidden)

    # -- overview ----------------------------------------------------------------------

    def queues(self) -> list[dict[str, Any]]:
        """Per queue: ready, scheduled and running counts, and the oldest ready's age."""
        now = time.time()
        depths = self.app.broker.depth()
        oldest: dict[str, float] = {}
        for message in self.app.broker.messages(states=["ready"], limit=MESSAGE_LIMIT):
            queue = message.envelope.queue
            since = message.envelope.eta or sent_at(message.envelope.task_id) or now
            oldest[queue] = min(oldest.get(queue, now), since)
        consumers = Counter(q for w in self.workers() if w["alive"] for q in w["queues"])
        paused = set(self.app.broker.paused_queues())
        empty = QueueDepth()
        return [{"name": name, "ready": depths.get(name, empty).ready,
                 "paused": name in paused, "blocked": depths.get(name, empty).blocked,
                 "scheduled": depths.get(name, empty).scheduled,
                 "running": depths.get(name, empty).leased,
                 "oldest_age": now - oldest[name] if name in oldest else None,
                 "consumers": consumers.get(name, 0)}
                for name in sorted(set(depths) | set(consumers) | paused)]

    def throughput(self, windows: dict[str, tuple[float, float]]) -> dict[str, Any]:
        """Finished tasks per bucket over each window (name -> (window, bucket) seconds),
        from the per-minute counters the broker writes with each settlement (so tasks
        whose results are ignored or expired count too), read once for all windows."""
        now = time.time()
        first = min(math.floor((now - window) / bucket) * bucket
                    for window, bucket in windows.values())
        rows = self.app.broker.task_counts(first)
        series = {}
        for name, (window, bucket) in windows.items():
            start = math.floor((now - window) / bucket) * bucket
            count = math.ceil((now - start) / bucket)
            done, failed = [0] * count, [0] * count
            for row in rows:
                index = int((row.minute - start) // bucket)
                if 0 <= index < count:
                    if row.state == SUCCESS:
                        done[index] += row.count
                    elif row.state == FAILURE:
                        failed[index] += row.count
            series[name] = {"start": start, "bucket": bucket, "succeeded": done,
                            "failed": failed, "total_succeeded": sum(done),
                            "total_failed": sum(failed)}
        return series

    # -- tasks -------------------------------------------------------------------------

    def tasks(self, where: TaskFilter, offset: int = 0, limit: int = 50
              ) -> tuple[list[Task], int]:
        """Tasks matching ``where``, most recently changed first; and how many match."""
        since = where.since if where.since else time.time() - 86400 * 7
        found = [task for task in self._all_tasks(since) if where.matches(task)]
        found.sort(key=lambda task: (task.updated, task.id), reverse=True)
        return found[offset:offset + limit], len(found)

    def task_names(self) -> list[str]:
        return sorted({t.name for t in self._all_tasks(time.time() - 86400) if t.name})

    def _all_tasks(self, since: float) -> list[Task]:
        tasks: dict[str, Task] = {}
        hostnames: dict[str, str] | None = None
        for record in self.app.backend.results_since(since, limit=RESULT_LIMIT):
            tasks[record.task_id] = self._from_result(record)
        for message in self.app.broker.messages(limit=MESSAGE_LIMIT):
            if message.holder and hostnames is None:
                hostnames = holder_hostnames(self.app)
            task = self._merge_message(tasks.get(message.envelope.task_id), message,
                                       hostnames or {})
            tasks[task.id] = task
        return list(tasks.values())

    def task(self, task_id: str) -> Task | None:
        """One task with everything the store knows of it, or None."""
        record = self.app.backend.get_result(task_id)
        task = self._from_result(record) if record is not None else None
        stored = self.app.broker.messages(task_ids=[task_id], limit=1)
        if stored:
            hostnames = holder_hostnames(self.app) if stored[0].holder else {}
            task = self._merge_message(task, stored[0], hostnames)
        elif record is None:  # settled between the two reads: its result is there now
            record = self.app.backend.get_result(task_id)
            task = self._from_result(record) if record is not None else None
        if task is not None and record is not None and record.children:
            task.children = _child_ids(serialization.json_loads(record.children))
        return task

    def _from_result(self, record: ResultRecord) -> Task:
        extended = _json(record.extended)
        task = Task(id=record.task_id, name=record.task_name, state=record.state,
                    worker=record.worker, retries=record.retries,
                    sent=sent_at(record.task_id), queue=extended.get("queue"),
                    args=extended.get("args"), kwargs=extended.get("kwargs"),
                    parent_id=extended.get("parent_id"), root_id=extended.get("root_id"),
                    group=extended.get("group"), retried_as=extended.get("retried_as"),
                    hidden=self.is_hidden(record.task_name))
        call = extended.get("call")
        if isinstance(call, dict):
            task.retried_from = (call.get("headers") or {}).get("retried_from")
        # The timeline: the worker stores when it claimed and started the task with
        # its result (no STARTED write needed); a STARTED record's time is the start.
        task.received = record.date_received
        task.started = record.date_started
        if record.state == STARTED:
            task.started = task.started or record.date_done
        else:
            task.finished = record.date_done
        if not task.hidden:
            value = self._value(record)
            if record.state == SUCCESS:
                task.result = value
            elif record.state in (FAILURE, RETRY, REVOKED):
                task.exception = _exception_text(value)
                task.traceback = record.traceback
        return task

    def _merge_message(self, task: Task | None, message: StoredMessage,
                       hostnames: dict[str, str]) -> Task:
        envelope = message.envelope
        state = MESSAGE_STATES.get(message.state, "PENDING")
        if task is None:
            task = Task(id=envelope.task_id, name=envelope.task_name, state=state,
                        sent=sent_at(envelope.task_id), hidden=self.is_hidden(
                            envelope.task_name))
        elif task.state in (RETRY, STARTED) and message.state != "leased":
            task.finished = None
        elif task.state not in (STARTED, RETRY, *READY_STATES):
            task.state = state  # (a revoked message waits until a worker drops it)
        task.queue = envelope.queue
        task.name = task.name or envelope.task_name
        if message.state == "scheduled":
            task.eta = envelope.eta
        if message.holder:
            task.worker = holder_node(message.holder, hostnames)
        try:
            decoded = Message.decode(envelope, self.app.accept)
        except Exception as exc:
            task.args = f"<cannot decode: {exc}>"
            return task
        task.args, task.kwargs = list(decoded.args), dict(decoded.kwargs)
        task.parent_id = decoded.parent_id or task.parent_id
        task.root_id = decoded.root_id or task.root_id
        task.group = decoded.group or task.group
        task.retries = max(task.retries, decoded.retries)
        task.retried_from = decoded.headers.get("retried_from") or task.retried_from
        return task

    def _value(self, record: ResultRecord) -> Any:
        try:
            return serialization.loads(record.payload, record.content_type,
                                       self.app.result_accept)
        except Exception as exc:
            return f"<cannot decode: {exc}>"

    # -- workers and beat --------------------------------------------------------------

    def workers(self) -> list[dict[str, Any]]:
        now = time.time()
        running = Counter(flight.holder.partition("/")[0]
                          for flight in self.app.broker.in_flight(limit=MESSAGE_LIMIT))
        rows = []
        for info in self.app.broker.workers():
            age = now - (info.heartbeat_at or info.started_at)
            rows.append({"id": info.id, "hostname": info.hostname, "pid": info.pid,
                         "pool": info.pool, "concurrency": info.concurrency,
                         "queues": list(info.queues), "running": running.get(info.id, 0),
                         "heartbeat_age": age, "alive": age < ALIVE_SECONDS,
                         "done": _done(info.info), "started_at": info.started_at,
                         "busy_retries": info.info.get("sqlite_busy_retries")})
        return rows

    def beat(self) -> list[dict[str, Any]]:
        rows = []
        for entry in self.app.backend.beat_entries():
            definition = _json(entry.definition)
            rows.append({"name": entry.name, "task": definition.get("task"),
                         "schedule": _schedule_text(entry.schedule),
                         "last_run_at": entry.last_run_at, "next_run_at": entry.next_run_at,
                         "total_run_count": entry.total_run_count})
        return rows


def _done(info: dict[str, Any]) -> int | None:
    processed = info.get("processed")
    return int(processed) if isinstance(processed, int | float) else None


def _schedule_text(schedule: str) -> str:
    data = _json(schedule.encode()) if schedule.startswith("{") else {}
    if not data:
        return schedule
    kind = data.get("type") or data.get("kind")
    rest = ", ".join(f"{k}={v}" for k, v in data.items() if k not in ("type", "kind"))
    return f"{kind}({rest})" if kind else rest


def _json(data: bytes | None) -> dict[str, Any]:
    if not data:
        return {}
    try:
        value = serialization.json_loads(data)
    except Exception:
        return {}
    return value if isinstance(value, dict) else {}


def _child_ids(nodes: Any) -> list[str]:
    """Task ids in a stored children list (result tuples, groups nested)."""
    found: list[str] = []
    for node in nodes or ():
        try:
            (task_id, _parent), members = node
        except (TypeError, ValueError):
            continue
        if members:
            found += _child_ids(members)
        else:
            found.append(task_id)
    return found


__all__ = ["STATES", "ConsoleData", "Task", "TaskFilter", "sent_at"]
