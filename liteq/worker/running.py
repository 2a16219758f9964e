"""The pool boundary: one claimed message in, its outcome out, storage touched here.

Every pool (solo, threads, each prefork child) and ``liteq.testing.drain`` run a claimed
message through :func:`run_delivery`. Execution itself (:mod:`liteq.execute`) reads
and writes nothing; the two writes a task needs before its outcome are made here: a
token from its rate limit (none: the message waits, DEFERRED) and its STARTED state
(``task_track_started``), stored through the app's :class:`~liteq.storing.OutcomeStore`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from liteq.execute import Outcome, count_in_chord, deferred, execute, prepare, rate_of
from liteq.transports.base import Delivery, ResultRecord

if TYPE_CHECKING:
    from liteq.app import LiteQ
    from liteq.task import Task


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
        wait = app.broker.take_token(f"rate:{task.name}", rate)
        if wait:
            return deferred(wait)
    store = app.outcome_store

    def started(record: ResultRecord) -> None:
        store.interim(record, delivery)

    outcome = execute(app, task, request, soft_limit=True, hard_limit=hard_limit,
                      on_started=started)
    return count_in_chord(app, message, outcome)


__all__ = ["run_delivery"]
