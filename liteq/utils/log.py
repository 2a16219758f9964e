"""Logging helpers, as Celery's ``celery.utils.log``.

``get_task_logger(__name__)`` gives a logger whose records a worker writes in its task
format (``worker_task_log_format``, by default
``[%(asctime)s: %(levelname)s/%(processName)s] %(task_name)s[%(task_id)s]: %(message)s``)
to the same place as its own log: the ``-f`` file or stderr, at the ``-l`` level.
Outside a worker such records go wherever the root logger sends them.

Example:
    >>> from liteq.utils.log import get_task_logger
    >>> logger = get_task_logger(__name__)
    >>> @app.task  # doctest: +SKIP
    ... def add(x, y):
    ...     logger.info("Adding %s + %s", x, y)  # ... tasks.add[5e6f...]: Adding 2 + 3
    ...     return x + y
"""

from __future__ import annotations

import io
import logging
import threading
from typing import Any, TextIO

from liteq._state import get_current_task

#: Level names, as ``kombu.log.LOG_LEVELS`` maps them (both ways).
LOG_LEVELS: dict[Any, Any] = {
    **{name: getattr(logging, name) for name in ("DEBUG", "INFO", "WARNING", "ERROR",
                                                 "CRITICAL")},
    "WARN": logging.WARNING, "FATAL": logging.CRITICAL,
    **{getattr(logging, name): name for name in ("DEBUG", "INFO", "WARNING", "ERROR",
                                                 "CRITICAL")},
}
#: Names ``get_task_logger`` refuses: they are liteq's own.
RESERVED_LOGGER_NAMES = frozenset({"liteq", "liteq.task"})

#: Every logger made here descends from this one.
base_logger = logger = logging.getLogger("liteq")


def logger_isa(child: logging.Logger, parent: logging.Logger, limit: int = 1000) -> bool:
    """True when ``parent`` is ``child`` or one of its ancestors."""
    this: logging.Logger | None = child
    for _ in range(limit):
        if this is None:
            return False
        if this is parent:
            return True
        this = this.parent
    raise RuntimeError(f"logger hierarchy of {child.name!r} exceeds {limit} levels")


def _under(parent: logging.Logger, child: logging.Logger) -> logging.Logger:
    if not logger_isa(child, parent):
        child.parent = parent
    return child


def get_logger(name: str) -> logging.Logger:
    """The logger ``name`` (``logging.getLogger``; Celery's ``get_logger``)."""
    return logging.getLogger(name)


#: The parent of every task logger (Celery's ``celery.task``).
task_logger = get_logger("liteq.task")
#: The worker's own logger.
worker_logger = get_logger("liteq.worker")


def get_task_logger(name: str) -> logging.Logger:
    """A logger for a task module: its records carry the running task's name and id.

    Raises:
        RuntimeError: ``name`` is one of liteq's own logger names.

    Example:
        >>> get_task_logger("proj.tasks").parent.name
        'liteq.task'
    """
    if name in RESERVED_LOGGER_NAMES:
        raise RuntimeError(f"Logger name {name!r} is reserved!")
    return _under(task_logger, get_logger(name))


def mlevel(level: int | str | None) -> Any:
    """A level number from a level name (``"info"``, ``"WARNING"``) or number."""
    if level and isinstance(level, str):
        return LOG_LEVELS[level.upper()]
    return level


class TaskFormatter(logging.Formatter):
    """Adds ``task_name`` and ``task_id`` of the running task to each record
    (``???`` outside tasks), as Celery's ``celery.app.log.TaskFormatter``."""

    def format(self, record: logging.LogRecord) -> str:
        task = get_current_task()
        if task is not None and task.request.id is not None:
            record.__dict__.update(task_id=task.request.id, task_name=task.name)
        elif task is not None:
            record.__dict__.update(task_id="???", task_name=task.name)
        else:
            record.__dict__.setdefault("task_name", "???")
            record.__dict__.setdefault("task_id", "???")
        return super().format(record)


class WorkerFormatter(logging.Formatter):
    """A worker's log format, with task loggers' records in the task format."""

    def __init__(self, other: logging.Formatter, task_format: str) -> None:
        super().__init__()
        self.other = other
        self.task = TaskFormatter(task_format)
        self._cache: dict[str, bool] = {}

    def _from_task_logger(self, name: str) -> bool:
        known = self._cache.get(name)
        if known is None:
            known = self._cache[name] = logger_isa(logging.getLogger(name), task_logger)
        return known

    def format(self, record: logging.LogRecord) -> str:
        if self._from_task_logger(record.name):
            return self.task.format(record)
        return self.other.format(record)


def setup_task_loggers(task_format: str) -> None:
    """Make the root logger's handlers write task loggers' records in ``task_format``.

    The worker calls it once its log (``-f`` file or stderr) is set up; other records
    keep the handlers' own format. Calling it again replaces the task format.
    """
    for handler in logging.getLogger().handlers:
        current = handler.formatter or logging.Formatter()
        if isinstance(current, WorkerFormatter):
            current = current.other
        handler.setFormatter(WorkerFormatter(current, task_format))


class LoggingProxy(io.TextIOBase):
    """A stream that logs every line written to it (Celery's ``LoggingProxy``; the
    worker puts one in place of ``sys.stdout``/``sys.stderr`` so ``print()`` in a task
    reaches the log, see ``worker_redirect_stdouts``).

    Lines are gathered per thread, so tasks of the threads pool never mix their halves
    of a line. A write made while logging (a handler's own error report) goes to
    ``original``, the stream that was replaced, never back into logging.

    Example:
        >>> proxy = LoggingProxy(get_logger("proj.stdout"), logging.WARNING)
        >>> print("hello", file=proxy)  # logged at WARNING
    """

    def __init__(self, logger: logging.Logger, loglevel: int | str | None = None,
                 original: TextIO | None = None) -> None:
        super().__init__()
        self.logger = logger
        self.loglevel = mlevel(loglevel or logger.level or logging.ERROR)
        self.original = original
        self._local = threading.local()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.original, "encoding", None) or "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        if self.original is None:
            raise io.UnsupportedOperation("a LoggingProxy has no file descriptor")
        return self.original.fileno()

    def write(self, text: str) -> int:
        local = self._local
        if getattr(local, "logging", False):  # the log handler writes back here
            return self.original.write(text) if self.original is not None else 0
        pending = getattr(local, "pending", "") + text
        *lines, local.pending = pending.split("\n")
        for line in lines:
            self._log(line)
        return len(text)

    def flush(self) -> None:
        pending = getattr(self._local, "pending", "")
        if pending:
            self._local.pending = ""
            self._log(pending)

    def _log(self, line: str) -> None:
        line = line.strip()
        if not line or self.closed:
            return
        self._local.logging = True
        try:
            self.logger.log(self.loglevel, line)
        finally:
            self._local.logging = False


__all__ = [
    "LOG_LEVELS",
    "LoggingProxy",
    "TaskFormatter",
    "WorkerFormatter",
    "base_logger",
    "get_logger",
    "get_task_logger",
    "logger_isa",
    "mlevel",
    "setup_task_loggers",
    "task_logger",
    "worker_logger",
]
