"""The one execution path: run one task request and say what to store.

Eager mode (``apply()``, ``task_always_eager``), the solo and thread pools, and every
prefork child run a task through :func:`execute` (a worker first through
:func:`prepare`, see :func:`liteq.worker.running.run_delivery`), so a task behaves
the same wherever it runs: the same signals and hooks in the same order, the same
retry and failure handling, the same result encoding. Nothing here reads or writes
storage: a request goes in, an :class:`Outcome` comes out, and the caller stores it
(:class:`liteq.storing.OutcomeStore`), as it stores STARTED when :func:`execute`
calls its ``on_started``.

Order of events for one task (as in Celery)::

    task_prerun -> before_start -> run -> on_success | on_retry | on_failure
    -> task_success | task_retry | task_failure -> after_return -> task_postrun
"""

from __future__ import annotations

import asyncio
import dataclasses
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
from liteq.canvas import CHORD_UNLOCK
from liteq.exception_info import exception_info
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
from liteq.records import build_record, configured
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


class Replaced(Ignore):
    """Raised by :meth:`Task.replace`: the task ends here and its replacement, which
    took over its id, is published with its outcome (``envelopes``), or run here in
    eager mode (``signature``). Nothing is stored for the replaced task itself."""

    def __init__(self, signature: Any, envelopes: tuple[Envelope, ...] = ()) -> None:
        super().__init__("Replaced by new task")
        self.signature = signature
        self.envelopes = envelopes


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
    #: ``apply_async(argsrepr=..., kwargsrepr=...)``: what to show instead of the
    #: arguments (None: their repr)
    given_argsrepr: str | None = None
    given_kwargsrepr: str | None = None
    #: results of the tasks sent while this one runs (``Task.trail``), stored with its
    #: result as its ``children``; None when they are not recorded
    children: list[Any] | None = None
    #: the message this request came from (None when called directly)
    message: Message | None = None
    #: the lease it runs under (None in eager mode)
    delivery: Delivery | None = None
    #: epoch seconds it started running (stored with its result: the timeline)
    started_at: float | None = None

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
            given_argsrepr=options.get("argsrepr"),
            given_kwargsrepr=options.get("kwargsrepr"),
            message=message,
            delivery=delivery,
        )

    @property
    def argsrepr(self) -> str:
        """The positional arguments as logs and monitors show them: the ``argsrepr``
        the caller gave (to hide secrets), else their repr."""
        return self.given_argsrepr if self.given_argsrepr is not None else \
            _short(self.args, 1024)

    @property
    def kwargsrepr(self) -> str:
        """The keyword arguments as shown: the caller's ``kwargsrepr``, else their repr."""
        return self.given_kwargsrepr if self.given_kwargsrepr is not None else \
            _short(self.kwargs, 1024)

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


def _record(
    app: LiteQ, task: Task[Any, Any] | None, request: Request, state: str, data: Any,
    traceback: str | None = None, *, keep_call: bool = False,
) -> ResultRecord:
    """The record of ``request``'s outcome; raises EncodeError when ``data`` cannot be
    serialized.

    With ``keep_call`` (a failure) the call is kept with it whatever
    ``result_extended`` says, so ``liteq retry`` can send it again.
    """
    extended = configured(app, task).result_options[1]
    delivery = request.delivery
    return build_record(
        app, request.id or "", state, data, task=task, task_name=request.task,
        worker=request.hostname, retries=request.retries, traceback=traceback,
        extended=_extended(request, keep_call) if extended or keep_call else None,
        date_received=delivery.claimed_at if delivery is not None else None,
        date_started=request.started_at,
    )


def _with_children(record: ResultRecord, request: Request,
                   follow_ups: tuple[Envelope, ...] = ()) -> ResultRecord:
    """``record`` with the tasks ``request`` sent while it ran, and its follow-ups (its
    chain's next step, its links), as children; as it is when there are none."""
    trail = request.children
    if trail is None or not (trail or follow_ups):
        return record  # the common case: nothing sent, nothing to add
    nodes = [result.as_tuple() for result in trail]
    groups: dict[str, list[Any]] = {}
    for envelope in follow_ups:
        node = ((envelope.task_id, None), None)
        group_id = serialization.json_loads(envelope.header).get("group")
        if group_id is None:
            nodes.append(node)
        elif group_id in groups:
            groups[group_id].append(node)
        else:
            groups[group_id] = [node]
            nodes.append(((group_id, None), groups[group_id]))
    return dataclasses.replace(record, children=serialization.json_dumps(nodes))


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
    hard_limit: bool = False, on_started: Callable[[ResultRecord], None] | None = None,
) -> Outcome:
    """Run ``task`` for ``request`` with signals, hooks and retry handling.

    ``soft_limit`` and ``hard_limit`` say whether this process enforces the request's
    time limits by raising in the task (see :func:`liteq.timelimits.time_limits`);
    eager calls enforce none, as in Celery. ``on_started`` receives the STARTED record
    after ``task_prerun``, before the task runs, when the task tracks it
    (``task_track_started``; a worker stores it, eager calls pass none).

    Returns:
        The outcome: the state reached, the record to store and messages to publish.
    """
    started = time.monotonic()
    request.started_at = time.time()
    request.children = [] if task.trail else None
    context_token = _state.current_request.set(request)
    task.push_request(request)
    try:
        signals.task_prerun.send(sender=task, task_id=request.id, task=task,
                                 args=request.args, kwargs=request.kwargs)
        if on_started is not None and request.id and _tracks_started(app, task):
            on_started(_started_record(app, task, request))
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


def _started_record(app: LiteQ, task: Task[Any, Any], request: Request) -> ResultRecord:
    meta = {"pid": os.getpid(), "hostname": request.hostname}
    delivery = request.delivery
    return build_record(app, request.id or "", STARTED, meta, task=task,
                        task_name=request.task, worker=request.hostname,
                        retries=request.retries,
                        date_received=delivery.claimed_at if delivery is not None else None,
                        date_started=request.started_at)


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
    except Replaced as exc:
        return Outcome(IGNORED, publish=exc.envelopes, summary="replaced by a new task",
                       exception=exc)
    except Ignore:
        return Outcome(IGNORED, summary="ignored")
    except Reject as exc:
        if exc.requeue:
            return Outcome(REJECTED, requeue=True, summary=f"rejected: {exc.reason!r}")
        # As Celery 5.7: a task that rejects its message for good will never run, so
        # its result is a FAILURE (the Reject), with errbacks and task_failure.
        failed = _failed(app, task, request, exc, hook=False)
        return dataclasses.replace(failed, state=REJECTED,
                                   summary=f"rejected: {exc.reason!r}")
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
    try:
        publish = task.follow_ups(request, value)
    except (EncodeError, TypeError) as exc:  # the next step can't take the value: loud
        return _failed(app, task, request, exc)
    if record is not None:
        record = _with_children(record, request, publish)
    task.on_success(value, request.id, request.args, request.kwargs)
    signals.task_success.send(sender=task, result=value)
    return Outcome(SUCCESS, record, publish, summary=_short(value), value=value)


def _failed(app: LiteQ, task: Task[Any, Any], request: Request, exc: BaseException,
            hook: bool = True) -> Outcome:
    """A FAILURE: its record, errbacks, ``on_failure`` (unless not ``hook``: a Reject)
    and ``task_failure``."""
    text = "".join(tb.format_exception(type(exc), exc, exc.__traceback__))
    record = None
    if not request.ignore_result or task.store_errors_even_if_ignored:
        record = _record(app, task, request, FAILURE, exception_info(exc), text,
                         keep_call=not request.is_eager)
        record = _with_children(record, request)
    # As in Celery: errbacks taking (request, exc, traceback) run here and now; the
    # others are messages published with the failure.
    publish = task.error_callbacks(request, exc, text)
    if hook:
        task.on_failure(exc, request.id, request.args, request.kwargs, text)
    signals.task_failure.send(sender=task, task_id=request.id, exception=exc,
                              args=request.args, kwargs=request.kwargs, traceback=text,
                              einfo=text)
    return Outcome(FAILURE, record, publish, summary=_short(exc), exception=exc)


def _retried(app: LiteQ, task: Task[Any, Any], request: Request, exc: Retry) -> Outcome:
    envelope = exc.envelope
    reason = exc.exc if exc.exc is not None else exc
    text = "".join(tb.format_exception(type(reason), reason, reason.__traceback__))
    record = _with_children(_record(app, task, request, RETRY, exception_info(reason), text),
                            request)
    task.on_retry(reason, request.id, request.args, request.kwargs, text)
    signals.task_retry.send(sender=task, request=request, reason=reason, einfo=text)
    return Outcome(RETRY, record, (envelope,) if envelope is not None else (),
                   summary=str(exc), exception=exc)


def prepare(
    app: LiteQ,
    delivery: Delivery,
    hostname: str,
    find_task: Callable[[str], Task[Any, Any]],
    *,
    default_limits: tuple[float | None, float | None] = (None, None),
) -> tuple[Message, Task[Any, Any], Request] | Outcome:
    """Decode a claimed message and check it: its message, task and request when it
    can run, else the outcome that ends it.

    A message that is undecodable, uses a serializer outside ``accept_content``, names
    an unknown task, was revoked or has expired becomes a FAILURE or REVOKED outcome
    with the reason; it never stops the worker.
    """
    envelope = delivery.envelope
    try:
        message = Message.decode(envelope, app.accept)
    except (ContentDisallowed, DecodeError) as exc:
        return _unrunnable(app, delivery, hostname, exc)
    request = Request.from_message(message, hostname=hostname, delivery=delivery)
    if delivery.revoked:
        return _revoked(app, request, "revoked", expired=False)
    if message.expires is not None and time.time() > message.expires:
        return _revoked(app, request, f"expired at {request.expires}", expired=True)
    try:
        task = find_task(message.task)
    except NotRegistered as exc:
        signals.task_unknown.send(sender=None, name=message.task, id=message.id,
                                  message=message, exc=exc)
        return _unrunnable(app, delivery, hostname, exc, request)
    # The message's limits, else the task's (changed by app.control.time_limit), else
    # the worker's (--time-limit), as in Celery.
    soft, hard = request.timelimit
    request.timelimit = (soft or task.soft_time_limit or default_limits[0],
                         hard or task.time_limit or default_limits[1])
    return message, task, request


def deferred(wait: float) -> Outcome:
    """The outcome of a task whose rate limit has no token for ``wait`` seconds."""
    return Outcome(DEFERRED, summary=f"rate limited for {wait:.3f}s",
                   defer_until=time.time() + wait)


def count_in_chord(app: LiteQ, message: Message, outcome: Outcome) -> Outcome:
    """A chord's header task that ended for good also publishes its unlock (see
    liteq.canvas), in the same transaction as its result."""
    if not message.options.get("chord"):
        return outcome
    final = outcome.state in (SUCCESS, FAILURE, REVOKED, IGNORED) or \
        (outcome.state == REJECTED and not outcome.requeue)
    # A replaced task is counted when its replacement, which carries the chord, ends.
    if not final or isinstance(outcome.exception, Replaced):
        return outcome
    unlock = app.producer.build_message(
        CHORD_UNLOCK, (message.options["chord"], message.id,
                       message.options.get("group_index") or 0), {},
        queue=message.queue, priority=message.priority,
    )
    outcome.publish = (*outcome.publish, unlock.encode())
    return outcome


def rate_of(app: LiteQ, task: Task[Any, Any]) -> float | None:
    """The task's rate limit in tasks per second (None: unlimited)."""
    settings = configured(app, task).conf
    limit = task.rate_limit or settings.task_default_rate_limit
    if not limit or settings.worker_disable_rate_limits:
        return None
    try:
        return parse_rate(limit)
    except ValueError:
        logger.error("task %s: ignoring its invalid rate limit %r", task.name, limit)
        return None


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
    "Replaced",
    "Request",
    "count_in_chord",
    "deferred",
    "execute",
    "prepare",
    "rate_of",
    "run_awaitable",
]
