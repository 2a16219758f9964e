"""The pool boundary: one claimed message in, its outcome out, storage touched here.

Every pool (solo, threads, each prefork child) and ``liteq.testing.drain`` run a claimed
message through :func:`run_delivery`. Execution itself (:mod:`liteq.execute`) reads
and writes nothing; the two writes a task needs before its outcome are made here: a
token from its rate limit (none: the message waits, DEFERRED) and its STARTED state
(``task_track_started``), stored through the app's :class:`~liteq.storing.OutcomeStore`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from liteq.exceptions import OperationalError
from liteq.execute import (
    Outcome,
    count_in_chord,
    deferred,
    ended_outside,
    execute,
    prepare,
    rate_of,
)
from liteq.transports.base import Delivery, LostTaskPolicy, ResultRecord

if TYPE_CHECKING:
    from liteq.app import LiteQ
    from liteq.task import Task

logger = logging.getLogger("liteq.worker")

#: How long a task waits for its rate-limit token when the store refused the write (s).
TOKEN_RETRY = 1.0


def run_delivery(
    app: LiteQ,
    delivery: Delivery,
    hostname: str,
    find_task: Callable[[str], Task[Any, Any]],
    *,
    hard_limit: bool = True,
    default_limits: tuple[float | None, float | None] = (None, None),
) -> Outcome:
    """Decode, check and run a claimed message; the outcome is stored by the caller.

    ``hard_limit`` says whether this process enforces hard time limits by raising in
    the task (a prefork child's supervisor kills it instead); ``default_limits`` are
    the worker's ``--soft-time-limit``/``--time-limit`` for tasks that set none.
    """
    prepared = prepare(app, delivery, hostname, find_task, default_limits=default_limits)
    if isinstance(prepared, Outcome):
        return prepared
    message, task, request = prepared
    # A message sent with its rate limit got its token in the claim (liteq.flow);
    # one sent without (by name, or before the limit was set) takes it here.
    flow = delivery.envelope.flow
    rate = None if flow is not None and flow.rate_key is not None else rate_of(app, task)
    if rate is not None:
        try:
            wait = app.broker.take_token(f"rate:{task.name}", rate)
        except OperationalError as exc:  # the store refused the write: try again later
            logger.warning("no rate-limit token for %s[%s]: %s; it waits %gs",
                           task.name, delivery.task_id, exc, TOKEN_RETRY)
            wait = TOKEN_RETRY
        if wait:
            return deferred(wait)
    store = app.outcome_store

    def started(record: ResultRecord) -> None:
        try:
            store.interim(record, delivery)
        except OperationalError as exc:  # STARTED is informational: run the task anyway
            logger.warning("could not store STARTED for %s[%s]: %s", task.name,
                           delivery.task_id, exc)

    outcome = execute(app, task, request, soft_limit=True, hard_limit=hard_limit,
                      on_started=started)
    return count_in_chord(app, message, outcome)


def keeping_calls(app: LiteQ, policy: LostTaskPolicy) -> LostTaskPolicy:
    """``policy`` whose failures of lost tasks keep the call and count a chord's part
    (:func:`liteq.execute.ended_outside`). Bound to this process's app: a prefork child
    makes its own from the plain policy it receives."""
    return dataclasses.replace(policy, finish=functools.partial(ended_outside, app))


__all__ = ["keeping_calls", "run_delivery"]
