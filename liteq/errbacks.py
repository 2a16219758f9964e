"""Calling a failed task's ``link_error`` errbacks, as Celery does.

One place decides how an errback is called, for a task that failed on a worker or in
``apply()`` (:meth:`liteq.task.Task.error_callbacks`) and for a chord body that will not
run because a header task failed (:mod:`liteq.chords`): an errback whose function takes
``(request, exc, traceback)`` is called here and now with the failed task's request;
any other is called with the failed task's id.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from liteq import canvas
from liteq.exceptions import NotRegistered
from liteq.messages import Envelope, Message

if TYPE_CHECKING:
    from liteq.app import LiteQ
    from liteq.execute import Request

logger = logging.getLogger(__name__)


def takes_request(task: Any, errback: Mapping[str, Any]) -> bool:
    """Whether an errback is called as ``(request, exc, traceback)``: its function takes
    more than one positional argument that the signature ``errback`` does not give
    (Celery's arity test, counting what the signature already holds); the ``self`` of
    a bound task does not count. Class-based tasks take the task id, as in Celery."""
    function = getattr(type(task), "__wrapped__", None)
    if function is None:
        return False
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return False
    if getattr(type(task), "_bind", False):
        parameters = parameters[1:]
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return True
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY,
                                                      p.POSITIONAL_OR_KEYWORD)]
    given = set(errback.get("kwargs") or ())
    free = [p for p in positional[len(errback.get("args") or ()):] if p.name not in given]
    return len(free) > 1


def call_errbacks(app: LiteQ, request: Request, exc: BaseException,
                  traceback: str | None = None) -> list[Message]:
    """Call ``request.errbacks`` for the failure ``exc`` of the task ``request`` ran.

    An errback taking ``(request, exc, traceback)`` (bound tasks too) is called here
    and now; one that raises is logged and the failure stands. Any other errback (one
    argument, a class-based task, a task this process does not know) is called with
    the failed task's id: applied here when ``request.is_eager``, else returned as a
    message, for the caller to publish with the failure.
    """
    messages = []
    find = None
    for link in request.errbacks or ():
        errback = canvas.signature(link, app=app)
        try:
            find = find or app.task_finder(import_on_demand=True)
            target = find(errback.task)
        except NotRegistered:
            target = None  # another worker may know it: send it
        step = errback.clone((request.id,))
        try:
            if target is not None and takes_request(target, errback):
                target(request, exc, traceback, *errback.args, **errback.kwargs)
                continue
            if target is not None and request.is_eager:  # apply(): run it here too
                target.apply(step.args, step.kwargs)
                continue
        except Exception:
            logger.exception("errback %s of %s[%s] raised", errback.task,
                             request.task, request.id)
            continue
        messages.append(app.producer.build_message(step.task, step.args, step.kwargs,
                                                   **step.options))
    return messages


def run_here(app: LiteQ, envelopes: Sequence[Envelope]) -> None:
    """Eager mode: run a failed task's errback messages here, in order, with their own
    links; nothing is published (``apply()`` never reaches the broker, with or without
    ``task_always_eager``)."""
    find = app.task_finder(import_on_demand=False)
    for envelope in envelopes:
        message = Message.decode(envelope, app.accept)
        options = {key: message.options[key] for key in ("link", "link_error", "chain")
                   if message.options.get(key)}
        find(message.task).apply(message.args, message.kwargs, task_id=message.id,
                                 **options)


__all__ = ["call_errbacks", "run_here", "takes_request"]
