"""What runs a chord after it is sent (see :class:`liteq.canvas.chord`).

A header task that ends for good publishes a ``liteq.chord_unlock`` message in the same
transaction as its result (``liteq.execute``); the unlock counts it in the result store
(:meth:`Transport.chord_part_done`), and the one that completes the count sends the
body with the header's results in order, or records the body as FAILURE with
:class:`ChordError`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from liteq.canvas import Signature, chain, dependency_error, signature
from liteq.exceptions import ChordError, EncodeError, OperationalError
from liteq.result import AsyncResult, exception_info
from liteq.states import FAILURE, SUCCESS

if TYPE_CHECKING:
    from liteq.app import LiteQ

logger = logging.getLogger(__name__)

#: The task that counts a finished header task and sends a chord's body.
CHORD_UNLOCK = "liteq.chord_unlock"


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


def _fail_body(app: LiteQ, body: Signature, error: ChordError) -> None:
    steps = body.tasks if isinstance(body, chain) else [body]
    logger.error("chord body %s[%s] will not run: %s", steps[-1].task, steps[-1].id, error)
    text = f"{type(error).__name__}: {error}"
    app.backend.store_results([
        dataclasses.replace(app.make_record(step.id or "", FAILURE, exception_info(error),
                                            task_name=step.task), traceback=text)
        for step in steps if step.id
    ])
    first = steps[0]
    errbacks = list(first.options.get("link_error", ()))
    if first is not body:  # a chain's own errbacks too
        errbacks += body.options.get("link_error", ())
    for errback in errbacks:
        signature(errback, app=app).clone((first.id,)).apply_async()


def register_builtins(app: LiteQ) -> None:
    """liteq's own tasks, registered in every app."""
    from liteq.task import Task  # tasks build on the canvas

    # A store that is out of reach for a while (Redis restarting) must not leave the
    # chord waiting for ever: the unlock is retried, with backoff, for about half an hour.
    @app.task(name=CHORD_UNLOCK, base=Task, acks_late=True, ignore_result=True,
              autoretry_for=(OperationalError,), retry_backoff=2, retry_backoff_max=120,
              max_retries=20)
    def chord_unlock(spec: dict[str, Any], member_id: str, index: int) -> None:
        unlock_chord(app, spec, member_id, index)


__all__ = ["CHORD_UNLOCK", "register_builtins", "unlock_chord"]
