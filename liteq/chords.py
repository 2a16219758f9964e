"""What runs a chord after it is sent (see :class:`liteq.canvas.chord`).

A header task that ends for good publishes a ``liteq.chord_unlock`` message in the same
transaction as its result (``liteq.execute``); the unlock counts it in the result store
(:meth:`Transport.chord_part_done`), and the one that completes the count sends the
body with the header's results in order, or records the body as FAILURE with
:class:`ChordError`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from liteq import _state, maps
from liteq.canvas import (
    ACCUMULATE,
    CHORD_UNLOCK,
    Signature,
    chain,
    chord,
    dependency_error,
    group,
    signature,
)
from liteq.errbacks import call_errbacks
from liteq.exceptions import ChordError, EncodeError, OperationalError
from liteq.execute import Request
from liteq.records import error_record
from liteq.result import AsyncResult
from liteq.states import FAILURE, SUCCESS

if TYPE_CHECKING:
    from liteq.app import LiteQ
    from liteq.task import Task

logger = logging.getLogger(__name__)


def unlock_chord(app: LiteQ, spec: Mapping[str, Any], member_id: str, index: int) -> None:
    """Count header task ``member_id`` of the chord ``spec``; the one that completes it
    sends the body, or records it as failed (the ``liteq.chord_unlock`` task)."""
    members = app.backend.chord_part_done(str(spec["id"]), member_id, int(index),
                                          int(spec["size"]), app.result_expires)
    if members is None:
        return
    body = signature(spec["body"], app=app)
    results: list[AsyncResult[Any]] = [AsyncResult(task_id, app) for task_id in members]
    for member in results:
        if member.state != SUCCESS:
            _fail_body(app, body, dependency_error(member))
            return
    values = [member.get(disable_sync_subtasks=False) for member in results]
    try:
        body.apply_async((values,))
    except (EncodeError, TypeError) as exc:  # the results don't fit the body
        _fail_body(app, body, ChordError(f"cannot send the body: {exc}"))


def _tasks_of(sig: Signature) -> list[Signature]:
    """Every task a signature would run (a chain's steps, a group's members...)."""
    if isinstance(sig, (chain, group)):
        return [task for step in sig.tasks for task in _tasks_of(step)]
    if isinstance(sig, chord):
        body = sig.body
        return [task for step in [*sig.header, *([body] if body else [])]
                for task in _tasks_of(step)]
    return [sig]


def _fail_body(app: LiteQ, body: Signature, error: ChordError) -> None:
    steps = _tasks_of(body)
    logger.error("chord body %s[%s] will not run: %s", steps[-1].task, steps[-1].id, error)
    text = f"{type(error).__name__}: {error}"
    app.outcome_store.store([
        error_record(app, step.id, FAILURE, error, task_name=step.task)
        for step in steps if step.id
    ])
    first = steps[0]
    errbacks = list(first.options.get("link_error", ()))
    if first is not body:  # a chain's (group's, chord's) own errbacks too
        errbacks += body.options.get("link_error", ())
    # As Celery's chord_error_from_stack: the errbacks get the body's request.
    running = _state.current_request.get()
    request = Request(id=first.id, task=first.task, args=tuple(first.args),
                      kwargs=dict(first.kwargs), errbacks=errbacks, called_directly=False,
                      group=first.options.get("group_id"),
                      is_eager=bool(running is not None and running.is_eager))
    messages = call_errbacks(app, request, error, text)
    if messages:
        app.producer.publish(messages)


def register_builtins(app: LiteQ, base: type[Task[Any, Any]]) -> None:
    """liteq's own tasks, registered in every app (made from ``base``, liteq's ``Task``,
    never the app's ``task_cls``)."""
    # A store that is out of reach for a while (Redis restarting) must not leave the
    # chord waiting for ever: the unlock is retried, with backoff, for about half an hour.
    @app.task(name=CHORD_UNLOCK, base=base, acks_late=True, ignore_result=True,
              autoretry_for=(OperationalError,), retry_backoff=2, retry_backoff_max=120,
              max_retries=20)
    def chord_unlock(spec: dict[str, Any], member_id: str, index: int) -> None:
        unlock_chord(app, spec, member_id, index)

    @app.task(name=ACCUMULATE, base=base)
    def accumulate(values: list[Any]) -> list[Any]:
        return values

    maps.register_builtins(app, base)


__all__ = ["ACCUMULATE", "CHORD_UNLOCK", "register_builtins", "unlock_chord"]
