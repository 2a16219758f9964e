"""Result records: the one builder of what is stored for a task.

Every record liteq stores is built by :func:`build_record`: a task's final result,
an interim state (STARTED, ``update_state``), and a failure found outside the task (a
lost or killed process, a revocation, a chord body that cannot run;
:func:`error_record`). One rule picks the serializer: the task's
``result_serializer``, else the ``result_serializer`` of the app that governs the task
(:func:`configured`); ``result_expires`` comes from the same app.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from liteq import serialization
from liteq.exception_info import exception_info
from liteq.exceptions import EncodeError
from liteq.result import ResultBase
from liteq.transports.base import ResultRecord

if TYPE_CHECKING:
    from liteq.app import LiteQ
    from liteq.task import Task


def configured(app: LiteQ, task: Task[Any, Any] | None) -> LiteQ:
    """The app whose settings govern ``task``: its own app, when it has one.

    A worker started on a database path alone (no ``-A``) imports task modules on
    demand; their apps carry the user's settings (``task_track_started``,
    ``result_expires``, serializers...), while storage stays the worker's.
    """
    own = getattr(task, "_app", None) if task is not None else None
    return own if own is not None else app


def build_record(
    app: LiteQ, task_id: str, state: str, data: Any, *,
    task: Task[Any, Any] | None = None, task_name: str | None = None,
    worker: str | None = None, retries: int = 0, traceback: str | None = None,
    extended: bytes | None = None, serializer: str | None = None,
    date_received: float | None = None, date_started: float | None = None,
) -> ResultRecord:
    """The record storing ``data`` as the result (or state meta) of ``task_id``.

    Args:
        app: the app running the task (:func:`configured` picks the one governing it).
        task: the task, when known: its ``result_serializer`` wins.
        serializer: a serializer name that wins over both (a caller's explicit choice).
        extended: the call's details (``result_extended``), already encoded.
        date_received: when a worker claimed the task's message (epoch seconds).
        date_started: when the task started running (epoch seconds).

    Raises:
        EncodeError: ``data`` cannot be serialized (the message names the task).
    """
    settings = configured(app, task)
    default_serializer, _, expires_in = settings.result_options
    name = serializer or (task.result_serializer if task is not None else None) or \
        default_serializer
    codec = serialization.get(name)
    if isinstance(data, ResultBase) and codec.name != "pickle":
        data = data.as_tuple()  # a task returning a result: stored as its tuple
    try:
        payload = codec.dumps(data)
    except Exception as exc:
        raise EncodeError(
            f"cannot serialize the result of {task_name or task_id} with {codec.name}: {exc}"
        ) from exc
    return ResultRecord(
        task_id=task_id,
        state=state,
        content_type=codec.content_type,
        payload=payload,
        traceback=traceback,
        date_done=time.time(),
        task_name=task_name,
        worker=worker,
        retries=retries,
        extended=extended,
        expires_in=expires_in,
        date_received=date_received,
        date_started=date_started,
    )


def error_record(
    app: LiteQ, task_id: str, state: str, error: BaseException, *,
    task_name: str | None = None, worker: str | None = None,
) -> ResultRecord:
    """A FAILURE or REVOKED record for an error met outside the task's code (its
    process was lost or killed, it was revoked, its chord cannot run): the error as the
    result, its one-line description as the traceback."""
    return build_record(app, task_id, state, exception_info(error), task_name=task_name,
                        worker=worker, traceback=f"{type(error).__name__}: {error}")


__all__ = ["build_record", "configured", "error_record"]
