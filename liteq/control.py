"""``app.control``: remote control of live workers, through the store.

There is no broadcast bus: workers and their state live in the store, so control reads
and writes it.

* ``revoke`` and ``purge`` change the store directly. A revoked task that no worker
  holds is recorded REVOKED at once (and skipped by the worker that later claims it); a
  running one is killed by its worker within about a second when ``terminate=True``
  (prefork pool only, as in Celery).
* ``rate_limit``, ``time_limit``, ``add_consumer``, ``cancel_consumer``, ``shutdown``,
  ``ping`` and ``broadcast`` store a *command* (the transport's control role) that
  every live worker, or those named in ``destination``, reads within milliseconds (it
  is woken) and acts on; with ``reply=True`` the call waits up to ``timeout`` seconds
  for the workers' replies and returns them as Celery does:
  ``[{"w1@host": {"ok": "..."}}]``. A command is for the workers alive when it is sent.
* ``inspect()`` answers from what workers record in the store (their heartbeat, the
  messages they hold) and, for ``conf`` and ``active_queues``, by asking them.

Rate limits are global in liteq (one token bucket per task shared by every worker), so
``rate_limit`` changes the rate every worker takes tokens at.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import TYPE_CHECKING, Any

from liteq.events import holder_hostnames, holder_node, request_info
from liteq.exception_info import exception_info
from liteq.exceptions import TaskRevokedError
from liteq.ratelimits import parse_rate
from liteq.records import build_record
from liteq.states import REVOKED
from liteq.transports.base import ControlCommand, Revocation

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from liteq.app import LiteQ

#: How long revocations are remembered when results never expire (seconds).
DEFAULT_REVOKE_TTL = 86400.0
#: How long a command waits for workers to read it, and replies are kept (seconds).
COMMAND_TTL = 60.0
#: Seconds to wait for replies, as Celery's default.
DEFAULT_TIMEOUT = 1.0
#: The commands workers act on (``broadcast`` refuses other names).
COMMANDS = ("ping", "rate_limit", "time_limit", "add_consumer", "cancel_consumer",
            "shutdown", "active_queues", "conf", "enable_events", "disable_events")

_SECRET_NAME = re.compile(r"password|secret|token|key$|signature", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(://[^:/@]*:)[^@/]*@")


def _queue_name(queue: Any) -> str:
    """A queue's name: a string, or a ``Queue`` object's ``name``."""
    name = getattr(queue, "name", queue)
    if not isinstance(name, str) or not name:
        raise ValueError(f"a queue name must be a non-empty string, not {queue!r}")
    return name


class Control:
    """``app.control``.

    Example:
        >>> app.control.revoke(res.id)  # doctest: +SKIP
        >>> app.control.rate_limit("tasks.add", "10/m", reply=True)  # doctest: +SKIP
        [{'w1@host': {'ok': 'new rate limit set successfully'}}]
        >>> app.control.inspect().active()  # doctest: +SKIP
        {'w1@host': [{'id': '...', 'name': 'tasks.add', ...}]}
    """

    def __init__(self, app: LiteQ) -> None:
        self.app = app

    # -- through the store -----------------------------------------------------------

    def revoke(self, task_id: str | Sequence[str], terminate: bool = False,
               signal: str | None = None, **_unused: Any) -> None:
        """Revoke tasks: they will not run; with ``terminate``, a running one is killed."""
        ids = [task_id] if isinstance(task_id, str) else list(task_id)
        app = self.app
        broker = app.broker
        ttl = app.result_expires or DEFAULT_REVOKE_TTL
        broker.revoke([Revocation(i, terminate, signal) for i in ids], ttl)
        error = TaskRevokedError("revoked")
        for one in ids:
            if not broker.is_leased(one):  # not running: it is REVOKED from now on
                record = build_record(app, one, REVOKED, exception_info(error))
                app.outcome_store.interim(record, None)

    def purge(self, queues: Sequence[str] | None = None) -> int:
        """Delete every waiting message; returns how many."""
        return self.app.broker.purge(queues)

    def pause_queue(self, queue: str) -> bool:
        """Stop workers claiming from ``queue``; it keeps taking tasks.

        Pausing is stored (not a command to the workers that run now), so it holds
        across worker restarts until :meth:`resume_queue`. Tasks already claimed run on.
        Returns False when the queue was paused already.

        Example:
            >>> app.control.pause_queue("videos")  # doctest: +SKIP
            True
        """
        return self.app.broker.pause_queue(_queue_name(queue))

    def resume_queue(self, queue: str) -> bool:
        """Let workers claim from a paused queue again (False: it was not paused).

        Example:
            >>> app.control.resume_queue("videos")  # doctest: +SKIP
            True
        """
        return self.app.broker.resume_queue(_queue_name(queue))

    def paused_queues(self) -> list[str]:
        """The paused queues' names."""
        return self.app.broker.paused_queues()

    def inspect(self, destination: Sequence[str] | None = None,
                timeout: float = DEFAULT_TIMEOUT, **_unused: Any) -> Inspect:
        """What workers do: ``active``, ``reserved``, ``scheduled``, ``stats``,
        ``registered``, ``revoked``, ``active_queues``, ``conf``, ``query_task``,
        ``ping``."""
        return Inspect(self.app, destination, timeout)

    # -- commands to live workers ----------------------------------------------------

    def broadcast(self, command: str, arguments: dict[str, Any] | None = None,
                  destination: Sequence[str] | None = None, reply: bool = False,
                  timeout: float = DEFAULT_TIMEOUT, limit: int | None = None,
                  callback: Callable[[dict[str, Any]], Any] | None = None,
                  **_unused: Any) -> list[dict[str, Any]] | None:
        """Send ``command`` to every live worker (or those in ``destination``).

        With ``reply``, wait up to ``timeout`` seconds (less when every live worker
        addressed has replied, or ``limit`` replies came) and return the replies.

        Raises:
            ValueError: a command workers do not know.
        """
        if command not in COMMANDS:
            raise ValueError(f"unknown control command {command!r}; liteq workers know "
                             f"{', '.join(COMMANDS)}")
        if isinstance(destination, str):
            destination = [destination]
        ticket = uuid.uuid4().hex
        broker = self.app.broker
        waiter = broker.result_waiter([ticket]) if reply else None
        try:
            broker.send_control(ControlCommand(
                ticket=ticket, name=command, arguments=dict(arguments or {}),
                destination=None if destination is None else tuple(destination),
                reply=reply, sent_at=time.time(),
            ), COMMAND_TTL)
            if waiter is None:
                return None
            return self._collect(ticket, waiter, destination, timeout, limit, callback)
        finally:
            if waiter is not None:
                waiter.close()

    def _collect(self, ticket: str, waiter: Any, destination: Sequence[str] | None,
                 timeout: float, limit: int | None,
                 callback: Callable[[dict[str, Any]], Any] | None) -> list[dict[str, Any]]:
        expected = {w["hostname"] for w in _live(self.app)}
        if destination is not None:
            expected &= set(destination)
        deadline = time.monotonic() + timeout
        replies: dict[str, Any] = {}
        while True:
            for host, answer in self.app.broker.control_replies(ticket).items():
                if host not in replies:
                    replies[host] = answer
                    if callback is not None:
                        callback({host: answer})
            if (limit is not None and len(replies) >= limit) or \
                    (expected and expected <= set(replies)):
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            waiter.wait(min(remaining, 0.1))
        return [{host: answer} for host, answer in replies.items()]

    def ping(self, destination: Sequence[str] | None = None,
             timeout: float = DEFAULT_TIMEOUT, **kwargs: Any) -> list[dict[str, Any]]:
        """Ask live workers to answer: ``[{"w1@host": {"ok": "pong"}}]``."""
        return self.broadcast("ping", destination=destination, reply=True, timeout=timeout,
                              **kwargs) or []

    def rate_limit(self, task_name: str, rate_limit: str | float | None,
                   destination: Sequence[str] | None = None, **kwargs: Any
                   ) -> list[dict[str, Any]] | None:
        """Set a task's rate limit (``"10/m"``; ``0``/None: none) in the store (the
        claim decides; it holds until set again) and on live workers.

        Raises:
            ValueError: the rate is not a number nor like ``"10/m"``.
        """
        rate = parse_rate(rate_limit)  # a bad rate fails here, not in every worker
        # Rate limits are decided in the store's claim (liteq.flow): the store learns
        # the new rate; workers too, for messages sent without theirs.
        self.app.broker.set_rate_limit(task_name, rate)
        return self.broadcast("rate_limit", {"task_name": task_name,
                                             "rate_limit": rate_limit},
                              destination=destination, **kwargs)

    def time_limit(self, task_name: str, soft: float | None = None,
                   hard: float | None = None, destination: Sequence[str] | None = None,
                   **kwargs: Any) -> list[dict[str, Any]] | None:
        """Set a task's soft and hard time limits (seconds) on live workers.

        As in Celery, they apply to the task's messages that carry no limits of their
        own (a producer that knows the task puts its limits in each message).
        """
        for value in (soft, hard):
            if value is not None and (not isinstance(value, (int, float)) or value < 0):
                raise ValueError(f"time limits are seconds (a number >= 0), not {value!r}")
        return self.broadcast("time_limit", {"task_name": task_name, "soft": soft,
                                             "hard": hard},
                              destination=destination, **kwargs)

    def add_consumer(self, queue: str, exchange: str | None = None,
                     exchange_type: str | None = None, routing_key: str | None = None,
                     options: dict[str, Any] | None = None,
                     destination: Sequence[str] | None = None, **kwargs: Any
                     ) -> list[dict[str, Any]] | None:
        """Make live workers consume from ``queue`` too."""
        if not queue or not isinstance(queue, str):
            raise ValueError(f"add_consumer needs a queue name, not {queue!r}")
        return self.broadcast("add_consumer", {"queue": queue}, destination=destination,
                              **kwargs)

    def cancel_consumer(self, queue: str, destination: Sequence[str] | None = None,
                        **kwargs: Any) -> list[dict[str, Any]] | None:
        """Make live workers stop consuming from ``queue``."""
        if not queue or not isinstance(queue, str):
            raise ValueError(f"cancel_consumer needs a queue name, not {queue!r}")
        return self.broadcast("cancel_consumer", {"queue": queue},
                              destination=destination, **kwargs)

    def shutdown(self, destination: Sequence[str] | None = None, **kwargs: Any
                 ) -> list[dict[str, Any]] | None:
        """Warm shutdown of live workers: they finish running tasks and exit 0."""
        return self.broadcast("shutdown", destination=destination, **kwargs)

    def enable_events(self, destination: Sequence[str] | None = None, **kwargs: Any
                      ) -> list[dict[str, Any]] | None:
        """Accepted for Celery code: liteq's events are always there (read from the store)."""
        return self.broadcast("enable_events", destination=destination, **kwargs)

    def disable_events(self, destination: Sequence[str] | None = None, **kwargs: Any
                       ) -> list[dict[str, Any]] | None:
        """Accepted for Celery code: events cost workers nothing, so they stay on."""
        return self.broadcast("disable_events", destination=destination, **kwargs)


def _live(app: LiteQ) -> list[dict[str, Any]]:
    now = time.time()
    stale = max(30.0, 3 * min(10.0, app.visibility_timeout / 6))
    return [
        {"id": info.id, "hostname": info.hostname, "pid": info.pid,
         "queues": tuple(info.info.get("queues") or info.queues),
         "concurrency": info.concurrency, "pool": info.pool, "started_at": info.started_at,
         "info": info.info}
        for info in app.broker.workers() if now - info.heartbeat_at <= stale
    ]


def censored(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings for display: secrets masked, passwords cut out of URLs, values json-able."""
    shown: dict[str, Any] = {}
    for name, value in settings.items():
        if _SECRET_NAME.search(name) and value:
            shown[name] = "********"
        elif isinstance(value, str):
            shown[name] = _URL_PASSWORD.sub(r"\1********@", value)
        elif value is None or isinstance(value, (bool, int, float)):
            shown[name] = value
        elif isinstance(value, (list, tuple, dict)):
            shown[name] = _URL_PASSWORD.sub(r"\1********@", repr(value)) \
                if "://" in repr(value) else _plain(value)
        else:
            shown[name] = repr(value)
    return shown


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


class Inspect:
    """Celery's ``inspect()`` answers: ``{node name: reply}``, None when no worker lives."""

    def __init__(self, app: LiteQ, destination: Sequence[str] | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.app = app
        if isinstance(destination, str):
            destination = [destination]
        self.destination = set(destination) if destination else None
        self.timeout = timeout

    def _workers(self) -> list[dict[str, Any]]:
        workers = _live(self.app)
        if self.destination is not None:
            workers = [w for w in workers if w["hostname"] in self.destination]
        return workers

    def _per_worker(self, value: Callable[[dict[str, Any]], Any]) -> dict[str, Any] | None:
        workers = self._workers()
        return {w["hostname"]: value(w) for w in workers} if workers else None

    def _ask(self, command: str) -> dict[str, Any] | None:
        replies = self.app.control.broadcast(
            command, destination=None if self.destination is None else list(self.destination),
            reply=True, timeout=self.timeout) or []
        merged = {host: answer for one in replies for host, answer in one.items()}
        return merged or None

    def active(self) -> dict[str, list[dict[str, Any]]] | None:
        """Tasks each worker holds (running or about to run), as Celery's requests."""
        hostnames = holder_hostnames(self.app)
        held: dict[str, list[dict[str, Any]]] = {}
        for message in self.app.broker.messages(states=["leased"]):
            node = holder_node(message.holder, hostnames) or ""
            info = request_info(message, self.app.accept, node)
            info["acknowledged"] = True
            held.setdefault(node, []).append(info)
        return self._per_worker(lambda w: held.get(w["hostname"], []))

    reserved = active

    def scheduled(self) -> dict[str, list[dict[str, Any]]] | None:
        """Tasks waiting for their eta (countdown) in each worker's queues.

        They wait in the store, not in a worker, and any worker consuming the queue may
        run one when it is due: a task is listed under every such worker.
        """
        waiting = self.app.broker.messages(states=["scheduled"])

        def of(worker: dict[str, Any]) -> list[dict[str, Any]]:
            queues = set(worker["queues"])
            return [{"eta": request_info(m, self.app.accept)["eta"],
                     "priority": m.envelope.priority,
                     "request": request_info(m, self.app.accept, worker["hostname"])}
                    for m in reversed(waiting) if m.envelope.queue in queues]

        return self._per_worker(of)

    def stats(self) -> dict[str, dict[str, Any]] | None:
        """Each worker's pid, pool, concurrency, uptime and counters."""
        now = time.time()
        return self._per_worker(lambda w: {
            **{k: v for k, v in w["info"].items() if k not in ("registered", "pool")},
            "pid": w["pid"], "pool": {"implementation": w["pool"],
                                      "max-concurrency": w["concurrency"]},
            "uptime": now - w["started_at"], "hostname": w["hostname"],
            "broker": {"transport": self.app.broker.location},
            "queues": list(w["queues"]),
        })

    def registered(self, *_taskinfoitems: Any) -> dict[str, list[str]] | None:
        """The tasks each worker can run (its app's and ``shared_task``s; a worker
        started on a path alone adds tasks as it imports them)."""
        return self._per_worker(lambda w: sorted(w["info"].get("registered", [])))

    registered_tasks = registered

    def revoked(self) -> dict[str, list[str]] | None:
        """The revoked task ids (shared by all workers)."""
        ids = [r.task_id for r in self.app.broker.revoked()]
        return self._per_worker(lambda w: ids)

    def query_task(self, *ids: Any) -> dict[str, dict[str, Any]] | None:
        """``{node: {task id: [state, request]}}`` for the given ids that a worker
        holds (``"active"``) or that wait for their eta in its queues (``"scheduled"``)."""
        wanted = [i for one in ids for i in ([one] if isinstance(one, str) else one)]
        found = self.app.broker.messages(states=["leased", "scheduled"], task_ids=wanted)
        hostnames = holder_hostnames(self.app)

        def of(worker: dict[str, Any]) -> dict[str, Any]:
            answer: dict[str, Any] = {}
            for m in found:
                if m.state == "leased" and holder_node(m.holder, hostnames) == \
                        worker["hostname"]:
                    answer[m.envelope.task_id] = [
                        "active", request_info(m, self.app.accept, worker["hostname"])]
                elif m.state == "scheduled" and m.envelope.queue in worker["queues"]:
                    answer[m.envelope.task_id] = [
                        "scheduled", request_info(m, self.app.accept, worker["hostname"])]
            return answer

        return self._per_worker(of)

    def active_queues(self) -> dict[str, list[dict[str, Any]]] | None:
        """The queues each worker consumes now (after ``add_consumer`` and
        ``cancel_consumer``), asked of the workers."""
        return self._ask("active_queues")

    def conf(self, with_defaults: bool = False) -> dict[str, dict[str, Any]] | None:
        """Each worker's settings that differ from the defaults (secrets masked)."""
        return self._ask("conf")

    def ping(self) -> dict[str, dict[str, str]] | None:
        """Ask each worker to answer: ``{"w1@host": {"ok": "pong"}}``."""
        return self._ask("ping")


__all__ = ["COMMANDS", "Control", "Inspect", "censored"]
