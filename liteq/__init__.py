"""liteq: a task queue with Celery's API that needs no server.

Example:
    >>> from liteq import LiteQ
    >>> app = LiteQ("tasks", broker="sqlite:///tasks.db")
    >>> @app.task
    ... def add(x, y):
    ...     return x + y
"""

from __future__ import annotations

from typing import Any

from liteq import signals, states
from liteq._state import current_app as _current_app
from liteq.app import Celery, LiteQ
from liteq.canvas import Signature, chain, chord, group, maybe_signature, signature, subtask
from liteq.exceptions import (
    ChordError,
    ConfigurationError,
    ContentDisallowed,
    DecodeError,
    EncodeError,
    Ignore,
    ImproperlyConfigured,
    LiteQError,
    MaxRetriesExceededError,
    NetworkFilesystemError,
    NotRegistered,
    OperationalError,
    Reject,
    Retry,
    SoftTimeLimitExceeded,
    StorageError,
    TaskError,
    TaskRevokedError,
    TimeLimitExceeded,
    TimeoutError,
    WorkerLostError,
)
from liteq.execute import Request
from liteq.result import AsyncResult, EagerResult, GroupResult
from liteq.routing import Exchange, Queue
from liteq.schedules import crontab, schedule
from liteq.states import State
from liteq.task import Task, make_task, shared_tasks

__version__ = "0.1.0.dev0"


class _CurrentApp:
    """``liteq.current_app``: a stand-in that forwards to the current app."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_current_app(), name)

    def __repr__(self) -> str:
        return f"<current_app: {_current_app()!r}>"


current_app: Any = _CurrentApp()


def shared_task(*args: Any, **options: Any) -> Any:
    """A task not bound to one app: it uses whichever app is current when sent.

    Example:
        >>> @shared_task
        ... def ping():
        ...     return "pong"
    """

    def create(fun: Any) -> Task[Any, Any]:
        name = options.pop("name", None) or f"{fun.__module__}.{fun.__name__}"
        base = options.pop("base", None)
        bind = options.pop("bind", False)
        task = make_task(fun, app=None, name=name, base=base, bind=bind, **options)
        shared_tasks[name] = task
        return task

    if len(args) == 1 and callable(args[0]) and not options:
        return create(args[0])
    return create


__all__ = [
    "AsyncResult",
    "Celery",
    "ChordError",
    "ConfigurationError",
    "ContentDisallowed",
    "DecodeError",
    "EagerResult",
    "EncodeError",
    "Exchange",
    "GroupResult",
    "Ignore",
    "ImproperlyConfigured",
    "LiteQ",
    "LiteQError",
    "MaxRetriesExceededError",
    "NetworkFilesystemError",
    "NotRegistered",
    "OperationalError",
    "Queue",
    "Reject",
    "Request",
    "Retry",
    "Signature",
    "SoftTimeLimitExceeded",
    "State",
    "StorageError",
    "Task",
    "TaskError",
    "TaskRevokedError",
    "TimeLimitExceeded",
    "TimeoutError",
    "WorkerLostError",
    "__version__",
    "chain",
    "chord",
    "crontab",
    "current_app",
    "group",
    "maybe_signature",
    "schedule",
    "shared_task",
    "signals",
    "signature",
    "states",
    "subtask",
]
