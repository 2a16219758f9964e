"""The one execution path: run one task request and say what to store.

Eager mode (``apply()``, ``task_always_eager``), the solo and thread pools, and every
prefork child call :func:`run_delivery` or :func:`execute`, so a task behaves the same
wherever it runs: the same signals and hooks in the same order, the same retry and
failure handling, the same result encoding. Nothing here writes to storage; the caller
settles the returned :class:`Outcome` (grouped, fenced by the lease token).

Order of events for one task (as in Celery)::

    task_prerun -> before_start -> run -> on_success | on_retry | on_failure
    -> task_success | task_retry | task_failure -> after_return -> task_postrun
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import threading
import time
import traceback as tb
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from liteq import _state, serialization, signals
from liteq.chords import CHORD_UNLOCK
from liteq.exceptions import (
    ContentDisallowed,
    DecodeError,
    EncodeError,
    Ignore,
    NotRegistered,
    Reject,
    Retry,
)
from liteq.messages import Envelope, Message, iso
from liteq.ratelimits import parse_rate
from liteq.result import exception_info
from liteq.states import FAILURE, RETRY, REVOKED, STARTED, SUCCESS
from liteq.timelimits import time_limits
from liteq.transports.base import Delivery, ResultRecord

if TYPE_CHECKING:
    from liteq.app import LiteQ
    from liteq.task import Task

logger = logging.getLogger("liteq.worker.task")

#: Outcome states besides the task states: nothing to store.
IGNORED, REJECTED = "IGNORED", "REJECTED"
#: Not run yet: the task's rate limit had no token; it waits until ``defer_until``.
DEFERRED = "DEFERRED"


class Request:
    """What a running task knows about its own message: ``self.request`` in a bound task.

    Example:
        >>> @app.task(bind=True)  # doctest: +SKIP
        ... def whoami(self):
        ...     return self.request.id, self.request.retries, self.request.hostname
    """

    id: str | None = None
    task: str | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}
    retries: int = 0
    is_eager: bool = False
    called_directly: bool = True
    #: epoch seconds of the eta and expiry (``eta``/``expires`` give them in ISO-8601)
    eta_at: float | None = None
    expires_at: float | None = None
    root_id: str | None = None
    parent_id: str | None = None
    group: str | None = None
    group_index: int | None = None
    origin: str | None = None
    hostname: str | None = None
    delivery_info: dict[str, Any] = {}
    headers: dict[str, Any] = {}
    timelimit: tuple[float | None, float | None] = (None, None)
    ignore_result: bool = False
    acks_late: bool = False
    reply_to: str | None = None
    correlation_id: str | None = None
    callbacks: list[Any] | None = None
    errbacks: list[Any] | None = None
    chain: list[Any] | None = None
    #: the message this request came from (None when called directly)
    message: Message | None = None
    #: the lease it runs under (None in eager mode)
    delivery: Delivery | None = None

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)

    @classmethod
    def from_message(
        cls, message: Message, *, hostname: str | None, delivery: Delivery | None = None,
        is_eager: bool = False,
    ) -> Request:
        options = message.options
        return cls(
            id=message.id,
            task=message.task,
            args=message.args,
            kwargs=dict(message.kwargs),
            retries=message.retries,
            is_eager=is_eager,
            called_directly=False,
            eta_at=message.eta,
            expires_at=message.expires,
            root_id=message.root_id,
            parent_id=message.parent_id,
            group=message.group,
            group_index=options.get("group_index"),
            origin=message.origin,
            hostname=hostname,
            delivery_info={
                "exchange": message.exchange,
                "routing_key": message.routing_key or message.queue,
                "queue": message.queue,
                "priority": message.priority,
                "redelivered": bool(delivery and delivery.deliveries > 1),
            },
            headers=dict(message.headers),
            timelimit=(message.soft_time_limit, message.time_limit),
            ignore_result=message.ignore_result,
            acks_late=message.acks_late,
            correlation_id=message.id,
            callbacks=options.get("link"),
            errbacks=options.get("link_error"),
            chain=options.get("chain"),
            message=message,
            delivery=delivery,
        )

    @property
    def eta(self) -> str | None:
        """The eta as Celery shows it: an ISO-8601 UTC string (None without one)."""
        return iso(self.eta_at)

    @property
    def expires(self) -> str | None:
        """The expiry as an ISO-8601 UTC string (None without one)."""
        return iso(self.expires_at)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def as_dict(self) -> dict[str, Any]:
        fields = {k: v for k, v in vars(self).items() if k not in ("message", "delivery")}
        return {**fields, "eta": self.eta, "expires": self.expires}

    def __repr__(self) -> str:
        return f"<Request {self.task}[{self.id}]>"


@dataclass
class Outcome:
    """What running one message produced: what to store and what to publish.

    Only plain data, so a prefork child can send it to the main process.
    """

    state: str
    record: ResultRecord | None = None
    publish: tuple[Envelope, ...] = ()
    runtime: float = 0.0
    #: Reject(requeue=True): put the message back instead of removing it
    requeue: bool = False
    #: a short description for the worker's log line
    summary: str = ""
    #: DEFERRED: when the message may be tried again (epoch seconds)
    defer_until: float | None = None
    #: the return value and exception, kept only in the process that ran the task
    value: Any = field(default=None, repr=False)
    exception: BaseException | None = field(default=None, repr=False)

    def portable(self) -> Outcome:
        """A copy without the live value and exception (safe to pickle)."""
        return Outcome(self.state, self.record, self.publish, self.runtime, self.requeue,
                       self.summary, self.defer_until)


# -- async tasks ---------------------------------------------------------------------

_loops = threading.local()


def run_awaitable(awaitable: Any) -> Any:
    """Run a coroutine on this thread's event loop (kept between tasks)."""
    loop = getattr(_loops, "loop", None)
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        _loops.loop = loop
    return loop.run_until_complete(awaitable)


# -- encoding results ----------------------------------------------------------------


def configured(app: LiteQ, task: Task[Any, Any] | None) -> LiteQ:
    """The app whose settings govern ``task``: its own app, when it has one.

    A worker started on a database path alone (no ``-A``) imports task modules on
    demand; their apps carry the user's settings (``task_track_started``,
    ``result_expires``, serializers...), while storage stays the worker's.
    """
    own = getattr(task, "_app", None) if task is not None else None
    return own if own is not None else app



def _record(
    app: LiteQ, task: Task[Any, Any] | None, request: Request, state: str, data: Any,
    traceback: str | None = None, *, keep_call: bool = False,
) -> ResultRecord:
    """The record to store; raises EncodeError when ``data`` cannot be serialized.

    With ``keep_call`` (a failure) the call is kept with it whatever
    ``result_extended`` says, so ``liteq retry`` can send it again.
    """
    settings = configured(app, task)
    default_serializer, extended, expires_in = settings.result_options
    name = (task.result_serializer if task is not None else None) or default_serializer
    serializer = serialization.get(name)
    try:
        payload = serializer.dumps(data)
    except Exception as exc:
        raise EncodeError(
            f"cannot serialize the result of {request.task} with {serializer.name}: {exc}"
        ) from exc
    return ResultRecord(
        task_id=request.id or "",
        state=state,
        content_type=serializer.content_type,
        payload=payload,
        traceback=traceback,
        date_done=time.time(),
        task_name=request.task,
        worker=request.hostname,
        retries=request.retries,
        extended=_extended(request, keep_call) if extended or keep_call else None,
        expires_in=expires_in,
    )


def _extended(request: Request, keep_call: bool = False) -> bytes:
    message = request.message
    data: dict[str, Any] = {
        "args": list(request.args),
        "kwargs": request.kwargs,
        "queue": message.queue if message else None,
        "parent_id": request.parent_id,
        "root_id": request.root_id,
        "group": request.group,
    }
    if keep_call and message is not None:
        # What sending the task again needs besides name, args and kwargs (liteq retry).
        options = {key: message.options[key] for key in ("link", "link_error", "chain")
                   if message.options.get(key)}
        data["call"] = {"priority": message.priority, "headers": dict(message.headers),
                        "options": options}
    try:
        return serialization.json_dumps(data)
    except Exception:  # arguments json cannot hold (pickle): shown, not kept for a retry
        data.pop("call", None)
        return serialization.json_dumps({**data, "args": repr(request.args),
                                         "kwargs": repr(request.kwargs)})


def _short(value: Any, limit: int = 200) -> str:
    try:
        text = repr(value)
    except Exception:
        text = object.__repr__(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- running -------------------------------------------------------------------------


def execute(
    app: LiteQ, task: Task[Any, Any], request: Request, *, soft_limit: bool = False,
    hard_limit: bool = False,
) -> Outcome:
    """Run ``task`` for ``request`` with signals, hooks and retry handling.

    ``soft_limit`` and ``hard_limit`` say whether this process enforces the request's
    time limits by raising in the task (see :func:`liteq.timelimits.time_limits`);
    eager calls enforce none, as in Celery.

    Returns:
        The outcome: the state reached, the record to store and messages to publish.
    """
    started = time.monotonic()
    context_token = _state.current_request.set(request)
    task.push_request(request)
    try:
        signals.task_prerun.send(sender=task, task_id=request.id, task=task,
                                 args=request.args, kwargs=request.kwargs)
        if not request.is_eager and request.id and _tracks_started(app, task):
            _record_started(app, task, request)
        soft, hard = request.timelimit
        outcome = _run(app, task, request, soft if soft_limit else None,
                       hard if hard_limit else None)
        outcome.runtime = time.monotonic() - started
        einfo = outcome.record.traceback if outcome.record is not None else None
        task.after_return(outcome.state, outcome.value if outcome.exception is None
                          else outcome.exception, request.id, request.args, request.kwargs,
                          einfo)
        signals.task_postrun.send(sender=task, task_id=request.id, task=task,
                                  args=request.args, kwargs=request.kwargs,
                                  retval=outcome.value if outcome.exception is None
                                  else outcome.exception, state=outcome.state)
        return outcome
    finally:
        task.pop_request()
        _state.current_request.reset(context_token)


def _tracks_started(app: LiteQ, task: Task[Any, Any]) -> bool:
    track = task.track_started
    return bool(configured(app, task).conf.task_track_started if track is None else track)


def _record_started(app: LiteQ, task: Task[Any, Any], request: Request) -> None:
    meta = {"pid": os.getpid(), "hostname": request.hostname}
    record = configured(app, task).make_record(
        request.id or "", STARTED, meta, task_name=request.task, worker=request.hostname,
        retries=request.retries, serializer=task.result_serializer,
    )
    app.backend.store_result(record, fence=request.delivery if app.results_with_broker
                             else None)


def _run(
    app: LiteQ, task: Task[Any, Any], request: Request, soft: float | None, hard: float | None,
) -> Outcome:
    try:
        task.before_start(request.id, request.args, request.kwargs)
        with time_limits(soft, hard):
            value = task.run(*request.args, **request.kwargs)
            if inspect.isawaitable(value):
                value = run_awaitable(value)
    except Retry as exc:
        return _retried(app, task, request, exc)
    except Ignore:
        return Outcome(IGNORED, summary="ignored")
    except Reject as exc:
        return Outcome(REJECTED, requeue=exc.requeue, summary=f"rejected: {exc.reason!r}")
    except (Exception, SystemExit) as exc:
        retry = task.autoretry(request, exc)
        if retry is not None:
            return _retried(app, task, request, retry)
        return _failed(app, task, request, exc)
    return _succeeded(app, task, request, value)


def _succeeded(app: LiteQ, task: Task[Any, Any], request: Request, value: Any) -> Outcome:
    record = None
    if not request.ignore_result:
        try:
            record = _record(app, task, request, SUCCESS, value)
        except EncodeError as exc:
            return _failed(app, task, request, exc)
    publish = task.follow_ups(request, value)
    task.on_success(value, request.id, request.args, request.kwargs)
    signals.task_success.send(sender=task, result=value)
    return Outcome(SUCCESS, record, publish, summary=_short(value), value=value)


def _failed(app: LiteQ, task: Task[Any, Any], request: Request, exc: BaseException) -> Outcome:
    text = "".join(tb.format_exception(type(exc), exc, exc.__traceback__))
    record = None
    if not request.ignore_result or task.store_errors_even_if_ignored:
        record = _record(app, task, request, FAILURE, exception_info(exc), text,
                         keep_call=not request.is_eager)
    publish = task.error_callbacks(request, exc)
    task.on_failure(exc, request.id, request.args, request.kwargs, text)
    signals.task_failure.send(sender=task, task_id=request.id, exception=exc,
                              args=request.args, kwargs=request.kwargs, traceback=text,
                              einfo=text)
    return Outcome(FAILURE, record, publish, summary=_short(exc), exception=exc)


def _retried(app: LiteQ, task: Task[Any, Any], request: Request, exc: Retry) -> Outcome:
    envelope: Envelope | None = getattr(exc, "envelope", None)
    reason = exc.exc if exc.exc is not None else exc
    text = "".join(tb.format_exception(type(reason), reason, reason.__traceback__))
    record = _record(app, task, request, RETRY, exception_info(reason), text)
    task.on_retry(reason, request.id, request.args, request.kwargs, text)
    signals.task_retry.send(sender=task, request=request, reason=reason, einfo=text)
    return Outcome(RETRY, record, (envelope,) if envelope is not None else (),
                   summary=str(exc), exception=exc)


def run_delivery(
    app: LiteQ,
    delivery: Delivery,
    hostname: str,
    find_task: Callable[[str], Task[Any, Any]],
    *,
    hard_limit: bool = True,
    default_limits: tuple[float | None, float | None] = (None, None),
) -> Outcome:
    """Decode a claimed message, check it, and run its task.

    A message that is undecodable, uses a serializer outside ``accept_content``, names
    an unknown task, or has expired becomes a stored FAILURE or REVOKED with the reason;
    it never stops the worker.
    """
    envelope = delivery.envelope
    try:
        message = Message.decode(envelope, app.accept)
    except (ContentDisallowed, DecodeError) as exc:
        return _unrunnable(app, delivery, hostname, exc)
    request = Request.from_message(message, hostname=hostname, delivery=delivery)
    outcome = _run_request(app, message, request, find_task, hard_limit, default_limits)
    if message.options.get("chord"):
        outcome = _count_in_chord(app, message, outcome)
    return outcome


def _run_request(
    app: LiteQ,
    message: Message,
    request: Request,
    find_task: Callable[[str], Task[Any, Any]],
    hard_limit: bool,
    default_limits: tuple[float | None, float | None],
) -> Outcome:
    delivery = request.delivery
    if delivery is not None and delivery.revoked:
        return _revoked(app, request, "revoked", expired=False)
    if default_limits != (None, None):
        soft, hard = request.timelimit
        request.timelimit = (soft or default_limits[0], hard or default_limits[1])
    if message.expires is not None and time.time() > message.expires:
        return _revoked(app, request, f"expired at {request.expires}", expired=True)
    try:
        task = find_task(message.task)
    except NotRegistered as exc:
        signals.task_unknown.send(sender=None, name=message.task, id=message.id,
                                  message=message, exc=exc)
        assert delivery is not None
        return _unrunnable(app, delivery, request.hostname or "", exc, request)
    wait = _rate_limited(app, task)
    if wait:
        return Outcome(DEFERRED, summary=f"rate limited for {wait:.3f}s",
                       defer_until=time.time() + wait)
    return execute(app, task, request, soft_limit=True, hard_limit=hard_limit)


def _count_in_chord(app: LiteQ, message: Message, outcome: Outcome) -> Outcome:
    """A chord's header task that ended for good also publishes its unlock (see
    liteq.canvas), in the same transaction as its result."""
    final = outcome.state in (SUCCESS, FAILURE, REVOKED, IGNORED) or \
        (outcome.state == REJECTED and not outcome.requeue)
    if not final:
        return outcome
    unlock = app.build_message(
        CHORD_UNLOCK, (message.options["chord"], message.id,
                       message.options.get("group_index") or 0), {},
        queue=message.queue, priority=message.priority,
    )
    outcome.publish = (*outcome.publish, unlock.encode())
    return outcome


def _rate_limited(app: LiteQ, task: Task[Any, Any]) -> float:
    """Seconds the task must wait for its rate limit (0.0: run now)."""
    settings = configured(app, task).conf
    limit = task.rate_limit or settings.task_default_rate_limit
    if not limit or settings.worker_disable_rate_limits:
        return 0.0
    try:
        rate = parse_rate(limit)
    except ValueError:
        logger.error("task %s: ignoring its invalid rate limit %r", task.name, limit)
        return 0.0
    if rate is None:
        return 0.0
    return app.broker.take_token(f"rate:{task.name}", rate)


def _unrunnable(app: LiteQ, delivery: Delivery, hostname: str, exc: Exception,
                request: Request | None = None) -> Outcome:
    """A FAILURE for a message that cannot run; with its decoded ``request`` (an unknown
    task) the call is kept, to be sent again once the task exists."""
    envelope = delivery.envelope
    decoded = request is not None
    if request is None:
        request = Request(id=envelope.task_id, task=envelope.task_name, hostname=hostname,
                          called_directly=False)
    logger.error("cannot run %s[%s]: %s", envelope.task_name, envelope.task_id, exc)
    reason = f"{type(exc).__name__}: {exc}"
    record = _record(app, None, request, FAILURE, exception_info(exc), reason,
                     keep_call=decoded)
    return Outcome(FAILURE, record, summary=reason, exception=exc)


def _revoked(app: LiteQ, request: Request, reason: str, *, expired: bool) -> Outcome:
    signals.task_revoked.send(sender=None, request=request, terminated=False, signum=None,
                              expired=expired)
    info = {"exc_type": "TaskRevokedError", "exc_module": "liteq.exceptions",
            "exc_message": [reason]}
    record = _record(app, None, request, REVOKED, info, keep_call=True)
    return Outcome(REVOKED, record, summary=reason)


__all__ = [
    "DEFERRED",
    "IGNORED",
    "REJECTED",
    "Outcome",
    "Request",
    "execute",
    "run_awaitable",
    "run_delivery",
]
