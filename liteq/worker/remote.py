"""Remote control in the worker: the commands ``app.control`` stores, acted on.

A thread of the worker's main process reads control commands from the store (woken
as soon as one is sent: a FIFO beside the SQLite file, a blocking ``XREAD`` on Redis),
keeps those addressed to this node, acts, and stores a reply when asked:

* answered here, at once, even while a solo-pool task runs: ``ping``, ``conf``,
  ``active_queues``, ``enable_events``/``disable_events``, ``rate_limit`` (the new
  rate is set on the task; every process takes tokens from the shared bucket at it) and
  ``time_limit`` (for the task's messages that carry no limits of their own);
* handed to the worker loop, which owns the consumer and the pool processes, through a
  pipe it watches: ``add_consumer``, ``cancel_consumer``, ``shutdown``, and the
  ``rate_limit`` and ``time_limit`` of prefork pool processes (:class:`Change`).

The reply texts are Celery's, so code that checks them keeps working.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from liteq import serialization
from liteq.control import COMMAND_TTL, censored
from liteq.exceptions import NotRegistered
from liteq.ratelimits import parse_rate
from liteq.routing import queues_from_setting
from liteq.task import shared_tasks
from liteq.transports.base import ControlCommand, Listener

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from liteq.app import LiteQ
    from liteq.worker.consumer import Consumer
    from liteq.worker.pool import SoloPool

logger = logging.getLogger("liteq.worker")

#: Seconds between looks at the control commands when no wake-up came (wake-ups are
#: hints: one lost while Redis restarts costs this much latency, never a command).
READ_TIMEOUT = 5.0
#: Longest a change waits for the worker loop before it is answered (seconds): a reply
#: of success means the loop applied it; past this, the reply says it is still pending
#: (a solo pool running a long task applies it after the task).
APPLY_TIMEOUT = 10.0


@dataclass(frozen=True)
class Change:
    """What the worker loop applies: ``queues`` (the new list), ``task_option``
    (``task``, ``option``, ``value``: set on the task in every pool process), or
    ``shutdown``."""

    kind: str
    queues: tuple[str, ...] = ()
    task: str = ""
    option: str = ""
    value: Any = None
    #: set by the worker loop once it applied the change
    applied: threading.Event = field(default_factory=threading.Event, compare=False)


def known_tasks(app: LiteQ) -> list[str]:
    """Every task name a worker of ``app`` can run: its own and ``shared_task``s."""
    names = set(app.tasks.regular())
    names.update(name for name in shared_tasks if not name.startswith("liteq."))
    return sorted(names)


def queue_info(app: LiteQ, name: str) -> dict[str, Any]:
    """A consumed queue as Celery's ``inspect active_queues`` shows it."""
    declared = queues_from_setting(app.conf.task_queues).get(name)
    exchange = getattr(declared, "exchange", None)
    return {
        "name": name,
        "exchange": {"name": getattr(exchange, "name", None) or name,
                     "type": getattr(exchange, "type", None) or "direct"},
        "routing_key": getattr(declared, "routing_key", None) or name,
        "durable": True, "exclusive": False, "auto_delete": False, "no_ack": False,
        "max_priority": getattr(declared, "max_priority", None),
    }


class RemoteControl(threading.Thread):
    """Reads this node's control commands and acts on them (see the module docstring).

    Args:
        app: the worker's app.
        hostname: this node's name (the ``destination`` commands are matched against).
        queues: the queues consumed at start (this thread then owns the list).
        prefork: pool processes have their own tasks: rate limits go to them too.
        finder: finds a task by name (importing it, for a worker started on a path).
        guard: held while this thread is inside the store (prefork forks only when no
            other thread is: see ``Supervisor``).
    """

    def __init__(self, app: LiteQ, hostname: str, queues: list[str], *,
                 prefork: bool, finder: Callable[[str], Any],
                 guard: contextlib.AbstractContextManager[Any] | None = None) -> None:
        super().__init__(name="liteq-remote-control", daemon=True)
        self.app = app
        self.hostname = hostname
        #: the queues consumed (or about to be: the loop applies changes at once)
        self.queues = list(queues)
        self.prefork = prefork
        self.finder = finder
        self.guard = guard or contextlib.nullcontext()
        self.changes: queue.Queue[Change] = queue.Queue()
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._stop_event = threading.Event()
        self._stop_read, self._stop_write = os.pipe()
        # Taken now, before the worker says it is ready: a command sent after that is
        # read, one sent before is not (it was for the workers alive then).
        self._cursor = app.broker.control_cursor()
        self._listener: Listener | None = None
        try:
            self._listener = app.broker.listen_control()
        except OSError as exc:  # e.g. a read-only directory beside the file: poll
            logger.warning("no wake-up for remote control (%s); commands are read every "
                           "%gs", exc, READ_TIMEOUT)

    def fileno(self) -> int:
        """Readable when the worker loop has :class:`Change` s to apply."""
        return self._read_fd

    def pending(self) -> list[Change]:
        """The changes handed to the worker loop since the last call."""
        try:
            while os.read(self._read_fd, 512):
                pass
        except BlockingIOError:
            pass
        found = []
        while True:
            try:
                found.append(self.changes.get_nowait())
            except queue.Empty:
                return found

    def _hand_over(self, change: Change, wait: bool = False) -> None:
        self.changes.put(change)
        try:
            os.write(self._write_fd, b"!")
        except BlockingIOError:  # the loop has wake-ups pending already
            pass
        if wait:
            change.applied.wait(APPLY_TIMEOUT)

    # -- the thread ------------------------------------------------------------------

    def run(self) -> None:
        broker = self.app.broker
        wake = self._listener.fileno() if self._listener is not None else -1
        watched = [fd for fd in (wake, self._stop_read) if fd >= 0]
        while not self._stop_event.is_set():
            try:
                with self.guard:
                    commands, self._cursor = broker.read_control(self._cursor)
            except Exception:
                logger.exception("cannot read control commands; retrying")
                self._stop_event.wait(READ_TIMEOUT)
                continue
            for command in commands:
                if command.destination is not None and \
                        self.hostname not in command.destination:
                    continue
                self._handle(command)
            if not commands and wake in select.select(watched, [], [], READ_TIMEOUT)[0] \
                    and self._listener is not None:
                self._listener.drain()

    def _handle(self, command: ControlCommand) -> None:
        logger.info("remote control: %s %s", command.name, command.arguments or "")
        try:
            reply = self.act(command.name, command.arguments)
        except Exception as exc:
            logger.exception("remote control command %s failed", command.name)
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        if command.reply and reply is not None:
            try:
                with self.guard:
                    self.app.broker.reply_control(command.ticket, self.hostname, reply,
                                                  COMMAND_TTL)
            except Exception:
                logger.exception("cannot store the reply to %s", command.name)

    def stop(self) -> None:
        self._stop_event.set()
        os.write(self._stop_write, b"!")
        if self.is_alive():
            self.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
        for fd in (self._read_fd, self._write_fd, self._stop_read, self._stop_write):
            try:
                os.close(fd)
            except OSError:
                pass

    # -- the commands ----------------------------------------------------------------

    def act(self, name: str, arguments: dict[str, Any]) -> Any:
        """Act on one command; returns the reply."""
        if name == "ping":
            return {"ok": "pong"}
        if name == "conf":
            return censored(self.app.conf.changes())
        if name == "active_queues":
            return [queue_info(self.app, q) for q in self.queues]
        if name in ("enable_events", "disable_events"):
            return {"ok": "task events are always on in liteq: they are read from the "
                          "store, at no cost to workers"}
        if name == "rate_limit":
            return self._rate_limit(str(arguments.get("task_name")),
                                    arguments.get("rate_limit"))
        if name == "time_limit":
            return self._time_limit(str(arguments.get("task_name")), arguments.get("soft"),
                                    arguments.get("hard"))
        if name == "add_consumer":
            return self._add_consumer(str(arguments.get("queue")))
        if name == "cancel_consumer":
            return self._cancel_consumer(str(arguments.get("queue")))
        if name == "shutdown":
            logger.warning("%s: shutdown requested by remote control", self.hostname)
            self._hand_over(Change("shutdown"))
            return {"ok": "shutting down"}
        return {"error": f"unknown command {name!r}"}

    def _rate_limit(self, task_name: str, rate: Any) -> dict[str, str]:
        try:
            parsed = parse_rate(rate)
        except ValueError as exc:
            return {"error": f"invalid rate limit string: {exc}"}
        try:
            task = self.finder(task_name)
        except NotRegistered:
            return {"error": f"unknown task {task_name!r}"}
        value = rate if parsed is not None else "0"  # "0": no limit, whatever the default
        task.rate_limit = value
        if self.prefork:
            self._hand_over(Change("task_option", task=task_name, option="rate_limit",
                                   value=value), wait=True)
        if parsed is None:
            return {"ok": "rate limit disabled successfully"}
        return {"ok": "new rate limit set successfully"}

    def _time_limit(self, task_name: str, soft: Any, hard: Any) -> dict[str, str]:
        try:
            task = self.finder(task_name)
        except NotRegistered:
            return {"error": f"unknown task {task_name!r}"}
        for option, value in (("soft_time_limit", soft), ("time_limit", hard)):
            setattr(task, option, value)
            if self.prefork:
                self._hand_over(Change("task_option", task=task_name, option=option,
                                       value=value), wait=True)
        return {"ok": "time limits set successfully"}

    def _add_consumer(self, name: str) -> dict[str, str]:
        if name in self.queues:
            return {"ok": f"already consuming from {name}"}
        self.queues = [*self.queues, name]
        self._hand_over(Change("queues", queues=tuple(self.queues)), wait=True)
        return {"ok": f"add consumer {name}"}

    def _cancel_consumer(self, name: str) -> dict[str, str]:
        if name not in self.queues:
            return {"ok": f"no longer consuming from {name}"}
        if len(self.queues) == 1:
            return {"error": f"{name!r} is the only queue this worker consumes; a liteq "
                             "worker needs one (use shutdown to stop it)"}
        self.queues = [q for q in self.queues if q != name]
        self._hand_over(Change("queues", queues=tuple(self.queues)), wait=True)
        return {"ok": f"no longer consuming from {name}"}


# -- in prefork pool processes: what the main process forwards ------------------------


def child_commands(control: Connection, consumer: Consumer, pool: SoloPool) -> None:
    """What the main process says: ``W`` (stop warm), ``Q`` + json queues, ``T`` +
    json ``[task, option, value]`` (remote control)."""
    while True:  # every command sent so far, before the loop claims again
        try:
            command = control.recv_bytes()
        except (EOFError, OSError):
            command = b"W"  # the main process is gone: stop
        if command == b"W":
            consumer.stop("warm")
            return
        if command[:1] == b"Q":
            consumer.set_queues(serialization.json_loads(command[1:]))
        elif command[:1] == b"T":
            task_name, option, value = serialization.json_loads(command[1:])
            set_task_option(pool, task_name, option, value)
        try:
            if not control.poll(0):
                return
        except (EOFError, OSError):
            return


def task_option(pool: SoloPool, task_name: str, option: str) -> Any:
    try:
        return getattr(pool.find_task(task_name), option, None)
    except Exception:  # an unknown task: it fails with the reason when it runs
        return None


def poll_child_commands(control: Connection, consumer: Consumer, pool: SoloPool) -> None:
    """Apply what the main process sent before this claim (one ``poll`` syscall)."""
    try:
        pending = control.poll(0)
    except (EOFError, OSError):
        pending = True  # the main process is gone: child_commands stops
    if pending:
        child_commands(control, consumer, pool)


def set_task_option(pool: SoloPool, task_name: str, option: str, value: Any) -> None:
    try:
        setattr(pool.find_task(task_name), option, value)
    except Exception as exc:  # an unknown task: the main process said so already
        logger.debug("cannot set %s of %s: %s", option, task_name, exc)


__all__ = ["Change", "RemoteControl", "child_commands", "known_tasks", "poll_child_commands",
           "queue_info", "set_task_option", "task_option"]
