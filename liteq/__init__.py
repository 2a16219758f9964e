"""liteq: a task queue with Celery's API that needs no server.

Example:
    >>> from liteq import LiteQ
    >>> app = LiteQ("tasks", broker="sqlite:///tasks.db")
    >>> @app.task
    ... def add(x, y):
    ...     return x + y
"""

from __future__ import annotations

__version__ = "0.1.0.dev0"  # first: the worker layer imported below reads it

from typing import Any

from liteq import signals, states
from liteq._state import current_app, current_task
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
    IncompleteStream,
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
from liteq.maps import chunks, xmap, xstarmap
from liteq.messages import new_id as uuid
from liteq.result import AsyncResult, EagerResult, GroupResult, ResultSet
from liteq.routing import Exchange, Queue
from liteq.schedules import crontab, schedule, solar
from liteq.states import State
from liteq.task import Task, shared_tasks
from liteq.task_factory import make_task
from liteq.worker.background import EmbeddedWorker  # registers app.Worker / app.run_worker


def shared_task(*args: Any, **options: Any) -> Any:
    """A task not bound to one app: it uses whichever app is current when sent.

    Example:
        >>> @shared_task
        ... def ping():
        ...     return "pong"
    """

    def create(fun: Any) -> Task[Any, Any]:
        name = options.pop("name", None) or f"{fun.__module__}.{fun.__name__}"
        # as in Celery, the current app's task class (Django's gives delay_on_commit)
        base = options.pop("base", None) or _current_task_cls()
        bind = options.pop("bind", False)
        task = make_task(fun, app=None, name=name, base=base, bind=bind, **options)
        shared_tasks[name] = task
        return task

    if len(args) == 1 and callable(args[0]) and not options:
        return create(args[0])
    return create


def _current_task_cls() -> Any:
    try:
        return current_app._task_base()
    except (ImproperlyConfigured, RuntimeError):  # no app yet, or a test's app trap
        return None


__all__ = [
    "AsyncResult",
    "Celery",
    "ChordError",
    "ConfigurationError",
    "ContentDisallowed",
    "DecodeError",
    "EagerResult",
    "EmbeddedWorker",
    "EncodeError",
    "Exchange",
    "GroupResult",
    "Ignore",
    "ImproperlyConfigured",
    "IncompleteStream",
    "LiteQ",
    "LiteQError",
    "MaxRetriesExceededError",
    "NetworkFilesystemError",
    "NotRegistered",
    "OperationalError",
    "Queue",
    "Reject",
    "Request",
    "ResultSet",
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
    "chunks",
    "crontab",
    "current_app",
    "current_task",
    "group",
    "maybe_signature",
    "schedule",
    "shared_task",
    "signals",
    "signature",
    "solar",
    "states",
    "subtask",
    "uuid",
    "xmap",
    "xstarmap",
]
