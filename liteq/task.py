"""Tasks: ``@app.task``, ``shared_task``, class-based tasks, retries and hooks.

A task is an instance of a class made for it (deriving from ``Task`` or from the
``base=`` the user gives), created once per process, so attributes set on it live once
per worker process, as in seed 000's ``DatabaseTask``.
"""

from __future__ import annotations

import logging
import random
import socket
import time
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, NoReturn, ParamSpec, TypeVar

from liteq import _state, aio, canvas, maps
from liteq.canvas import ACCUMULATE
from liteq.errbacks import call_errbacks, run_here, takes_request
from liteq.exceptions import (
    ImproperlyConfigured,
    MaxRetriesExceededError,
    OperationalError,
    Retry,
)
from liteq.execute import IGNORED, Replaced, Request, execute
from liteq.messages import Envelope
from liteq.records import build_record
from liteq.result import AsyncResult, EagerResult
from liteq.states import FAILURE, RETRY, SUCCESS

if TYPE_CHECKING:
    from liteq.app import LiteQ

P = ParamSpec("P")
R = TypeVar("R")

logger = logging.getLogger(__name__)

#: Tasks made with ``@shared_task``: every app finds them by name.
shared_tasks: dict[str, Task[Any, Any]] = {}

_DEFAULT_REQUEST = Request()


class Task(Generic[P, R]):
    """A task: call it to run it here, ``delay()`` it to run it on a worker.

    Subclass it to share code and per-process state between tasks (``base=``), or to
    define hooks (``on_success``, ``on_failure``, ``on_retry``, ``after_return``,
    ``before_start``).

    Example:
        >>> class DatabaseTask(Task):
        ...     _db = None
        ...     @property
        ...     def db(self):
        ...         if self._db is None:
        ...             self._db = connect()  # once per worker process
        ...         return self._db
    """

    #: the task's registered name (``module.function`` unless given)
    name: str = ""
    typing: bool = True
    max_retries: int | None = 3
    default_retry_delay: float = 180
    rate_limit: str | None = None
    #: flow control (liteq.flow): decided by the transport's claim, across workers
    rate_limit_key: Any = None
    rate_limit_burst: int | None = None
    concurrency_limit: int | None = None
    concurrency_key: Any = None
    unique: bool = False
    unique_for: float | None = None
    unique_until: str | None = None
    ignore_result: bool | None = None
    store_errors_even_if_ignored: bool | None = None
    serializer: str | None = None
    result_serializer: str | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    autoretry_for: tuple[type[BaseException], ...] = ()
    dont_autoretry_for: tuple[type[BaseException], ...] = ()
    retry_kwargs: Mapping[str, Any] = {}
    retry_backoff: bool | float = False
    retry_backoff_max: float = 600
    retry_jitter: bool = True
    acks_late: bool | None = None
    reject_on_worker_lost: bool | None = None
    track_started: bool | None = None
    priority: int | None = None
    expires: float | datetime | None = None
    queue: str | None = None
    routing_key: str | None = None
    exchange: str | None = None
    trail: bool = True

    _app: LiteQ | None = None

    #: Celery's exception attributes: ``except add.OperationalError`` (the broker is out
    #: of reach when sending), ``add.MaxRetriesExceededError``.
    MaxRetriesExceededError = MaxRetriesExceededError
    OperationalError = OperationalError

    def __init__(self) -> None:
        self._requests: ContextVar[tuple[Request, ...]] = ContextVar(
            f"liteq_requests_{id(self)}", default=()
        )

    # -- identity --------------------------------------------------------------------

    @property
    def app(self) -> LiteQ:
        """The app this task belongs to (the current app for a ``shared_task``)."""
        return self._app if self._app is not None else _state.get_current_app()

    def bind(self, app: LiteQ) -> Task[P, R]:
        self._app = app
        return self

    def __repr__(self) -> str:
        return f"<@task: {self.name}>"

    def run(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """The task body; ``@app.task`` makes the decorated function this method."""
        raise NotImplementedError("Tasks must define the run method.")

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the task here and now, without a message (as ``add(4, 6)`` in Celery)."""
        self.push_request(Request(args=args, kwargs=kwargs, called_directly=True))
        try:
            return self.run(*args, **kwargs)
        finally:
            self.pop_request()

    # -- request context -------------------------------------------------------------

    @property
    def request(self) -> Request:
        """The request this task is running for (``self.request`` in a bound task)."""
        stack = self._requests.get()
        return stack[-1] if stack else _DEFAULT_REQUEST

    def push_request(self, request: Request) -> None:
        """Run for ``request`` in this context: ``self.request`` and ``current_task``."""
        self._requests.set((*self._requests.get(), request))
        _state.push_current_task(self)

    def pop_request(self) -> None:
        _state.pop_current_task()
        self._requests.set(self._requests.get()[:-1])

    # -- sending ---------------------------------------------------------------------

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult[R]:
        """Send the task to a worker: ``add.delay(4, 4)``.

        Raises:
            EncodeError: an argument cannot be serialized (the message names it).
        """
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        task_id: str | None = None,
        **options: Any,
    ) -> AsyncResult[R]:
        """Send the task with options.

        Args:
            args: positional arguments.
            kwargs: keyword arguments.
            task_id: the id to use (a new uuid by default).
            **options: ``countdown``, ``eta``, ``expires``, ``queue``, ``routing_key``,
                ``exchange``, ``priority`` (higher runs first), ``serializer``,
                ``ignore_result``, ``headers``, ``link``, ``link_error``,
                ``time_limit``, ``soft_time_limit``, ``retry``, ``retry_policy``.

        Example:
            >>> add.apply_async((2, 3), countdown=5, expires=60, priority=7)  # doctest: +SKIP
            <AsyncResult: ...>
        """
        app = self.app
        if app.conf.task_always_eager:
            return self.apply(args, kwargs, task_id=task_id, **options)
        retry = options.pop("retry", None)
        retry_policy = options.pop("retry_policy", None)
        connection = options.pop("connection", None)
        producer = app.producer
        message = producer.build_message(self.name, args, kwargs, task=self, task_id=task_id,
                                         **options)
        sent = producer.publish([message], retry=retry, retry_policy=retry_policy,
                                connection=connection)[0]  # a unique task: maybe another's
        return AsyncResult(sent, app, self.name, ignored=message.ignore_result)

    async def adelay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult[R]:
        """``delay()`` for asyncio: ``result = await add.adelay(4, 4)``; the publish
        runs in the event loop's default executor, never blocking the loop.

        Raises:
            EncodeError: an argument cannot be serialized (the message names it).
        """
        return await self.aapply_async(args, kwargs)

    async def aapply_async(self, args: Iterable[Any] | None = None,
                           kwargs: Mapping[str, Any] | None = None,
                           task_id: str | None = None, **options: Any) -> AsyncResult[R]:
        """``apply_async()`` for asyncio, with the same options (see
        :meth:`apply_async`); it does not join an ``app.transaction()`` block.

        Example:
            >>> result = await add.aapply_async((2, 3), countdown=5)  # doctest: +SKIP
        """
        return await aio.run_blocking(self.apply_async, args, kwargs, task_id, **options)

    def apply(
        self,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        task_id: str | None = None,
        retries: int = 0,
        throw: bool | None = None,
        **options: Any,
    ) -> EagerResult[R]:
        """Run the task here and now through the worker's execution path.

        Hooks, signals, retries and result encoding behave as on a worker. With
        ``task_eager_propagates`` (or ``throw=True``) a failure raises here.
        """
        app = self.app
        for option in ("retry", "retry_policy", "connection"):
            options.pop(option, None)
        message = app.producer.build_message(self.name, args, kwargs, task=self,
                                             task_id=task_id, retries=retries, **options)
        request = Request.from_message(message, hostname=socket.gethostname(), is_eager=True)
        outcome = execute(app, self, request)
        if outcome.state == RETRY and isinstance(outcome.exception, Retry):
            return self.apply(args, kwargs, task_id=message.id, retries=retries + 1,
                              throw=throw, **options)
        propagate = app.conf.task_eager_propagates if throw is None else throw
        if isinstance(outcome.exception, Replaced):
            return self._run_replacement(message.id, outcome.exception, propagate)
        if app.conf.task_store_eager_result and outcome.record is not None:
            app.outcome_store.store([outcome.record])
        if outcome.state == SUCCESS:  # the chain's next step and links, here and now
            self._run_follow_ups_here(request, outcome.value)
        elif outcome.state == FAILURE:
            run_here(app, outcome.publish)  # its errbacks, here and now
        if outcome.state == FAILURE and propagate and outcome.exception is not None:
            raise outcome.exception
        value = outcome.value if outcome.state in (SUCCESS, IGNORED) else outcome.exception
        traceback = outcome.record.traceback if outcome.record is not None else None
        return EagerResult(message.id, value, outcome.state, traceback, app, self.name)

    def _run_follow_ups_here(self, request: Request, value: Any) -> None:
        """Eager mode: run the chain's next step and the links with ``value``, here."""
        app = self.app
        if request.chain:
            step = canvas.signature(request.chain[0], app=app)
            canvas.with_chain(step, request.chain[1:]).apply((value,))
        for link in request.callbacks or ():
            canvas.signature(link, app=app).apply((value,))

    def _run_replacement(self, task_id: str, signal: Replaced,
                         propagate: bool) -> EagerResult[R]:
        """Eager mode: run the replacement here; its value is this task's."""
        result = signal.signature.apply()
        value = result.get(propagate=False, disable_sync_subtasks=False)
        if result.state == FAILURE and propagate and isinstance(value, BaseException):
            raise value
        return EagerResult(task_id, value, result.state, result.traceback, self.app,
                           self.name)

    def AsyncResult(self, task_id: str) -> AsyncResult[R]:
        return AsyncResult(task_id, self.app, self.name)

    # -- signatures ------------------------------------------------------------------

    def signature(
        self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None, *, immutable: bool = False,
        **extra_options: Any,
    ) -> canvas.Signature:
        """A signature with options, as in Celery: args, kwargs, then options.

        Example:
            >>> add.signature((2, 2), {"debug": True}, countdown=10)  # doctest: +SKIP
            >>> notify.signature(immutable=True)  # a link that ignores the result  # doctest: +SKIP
        """
        return canvas.Signature(self, args, kwargs, options, immutable=immutable,
                                **extra_options)

    subtask = signature

    def s(self, *args: Any, **kwargs: Any) -> canvas.Signature:
        """A signature: ``add.s(2, 2)``."""
        return canvas.Signature.of(self, args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> canvas.Signature:
        """An immutable signature: it ignores the parent's result in a chain."""
        return canvas.Signature.of(self, args, kwargs, immutable=True)

    def map(self, it: Iterable[Any]) -> maps.xmap:
        """One message that calls this task's function for every item of ``it``.

        Example:
            >>> tsum.map([[1, 2], [3]]).delay().get(timeout=10)  # doctest: +SKIP
            [3, 3]
        """
        return maps.xmap(self.s(), it, app=self._app)

    def starmap(self, it: Iterable[Any]) -> maps.xstarmap:
        """One message that calls this task's function with each item's arguments.

        Example:
            >>> add.starmap([(1, 2), (3, 4)]).delay().get(timeout=10)  # doctest: +SKIP
            [3, 7]
        """
        return maps.xstarmap(self.s(), it, app=self._app)

    def chunks(self, it: Iterable[Any], n: int) -> maps.chunks:
        """The argument tuples ``it`` in parts of ``n`` tasks, one message per part.

        Example:
            >>> add.chunks(zip(range(4), range(4)), 2)().get(timeout=10)  # doctest: +SKIP
            [[0, 2], [4, 6]]
        """
        return maps.chunks(self.s(), it, n, app=self._app)

    # -- state -----------------------------------------------------------------------

    def update_state(
        self, task_id: str | None = None, state: str | None = None, meta: Any = None,
        **_unused: Any,
    ) -> None:
        """Record a state (``"PROGRESS"`` and the like) with ``meta`` for the result.

        Example:
            >>> self.update_state(state="PROGRESS", meta={"done": 3, "total": 10})  # doctest: +SKIP
        """
        app = self.app
        request = self.request
        task_id = task_id or request.id
        if task_id is None:
            raise ImproperlyConfigured("update_state() needs a task id outside a running task")
        record = build_record(app, task_id, state or "PENDING", meta, task=self,
                              task_name=self.name, worker=request.hostname,
                              retries=request.retries)
        app.outcome_store.interim(record, request.delivery if task_id == request.id else None)

    # -- retries ---------------------------------------------------------------------

    def retry(
        self,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        exc: BaseException | None = None,
        throw: bool = True,
        eta: datetime | None = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> Retry:
        """Retry this task later: ``raise self.retry(exc=exc, countdown=5)``.

        The retry is a new message (same task id, ``retries + 1``) stored in the
        database with its eta, published in the same transaction that records RETRY.
        Past ``max_retries``, ``exc`` is raised (or ``MaxRetriesExceededError``).
        """
        request = self.request
        if request.called_directly or request.message is None:
            raise exc if exc is not None else Retry("Task can be retried", None)
        limit = self.max_retries if max_retries is None else max_retries
        if limit is not None and request.retries >= limit:
            if exc is not None:
                raise exc
            raise self.MaxRetriesExceededError(
                f"Can't retry {self.name}[{request.id}] args:{request.args} "
                f"kwargs:{request.kwargs}"
            )
        if eta is None and countdown is None:
            countdown = self.default_retry_delay
        app = self.app
        old = request.message
        message = app.producer.build_message(
            self.name,
            request.args if args is None else args,
            request.kwargs if kwargs is None else kwargs,
            task=self,
            task_id=old.id,
            retries=request.retries + 1,
            eta=eta,
            countdown=None if eta is not None else countdown,
            queue=options.pop("queue", old.queue),
            priority=options.pop("priority", old.priority),
            expires=old.expires,
            headers=old.headers,
            root_id=old.root_id,
            parent_id=old.parent_id,
            group_id=old.group,
            **{**dict(old.options), **options},
        )
        when = countdown if eta is None else eta.timestamp() - time.time()
        signal = Retry(exc=exc, when=when, envelope=message.encode())
        if not throw:
            return signal
        raise signal

    def autoretry(self, request: Request, exc: BaseException) -> Retry | None:
        """The Retry for ``exc`` when ``autoretry_for`` covers it, else None."""
        if not self.autoretry_for or not isinstance(exc, self.autoretry_for):
            return None
        if self.dont_autoretry_for and isinstance(exc, self.dont_autoretry_for):
            return None
        options = dict(self.retry_kwargs)
        if self.retry_backoff:
            options["countdown"] = backoff_interval(
                float(self.retry_backoff), request.retries, self.retry_backoff_max,
                self.retry_jitter,
            )
        try:
            return self.retry(exc=exc, throw=False, **options)
        except Retry as signal:
            return signal
        except BaseException:
            return None  # out of retries: the original exception stands

    # -- replacing -------------------------------------------------------------------

    def replace(self, sig: Any) -> NoReturn:
        """Replace this task with ``sig``, which takes over its id: whoever waits for
        this task gets the replacement's value, a chain goes on after it, and its links,
        errbacks and chord membership carry over. The task ends here.

        Example:
            >>> @app.task(bind=True)  # doctest: +SKIP
            ... def fetch_all(self, urls):
            ...     return self.replace(group(fetch.s(url) for url in urls))

        Raises:
            ImproperlyConfigured: called outside a task run from a message, or with
                an empty chain or a signature that is part of a chord.
        """
        request = self.request
        if request.called_directly or request.id is None:
            raise ImproperlyConfigured(
                f"{self.name}: replace() works in a task run by a worker or apply(), "
                "not in a direct call"
            )
        app = self.app
        sig = canvas.signature(sig, app=app)
        if "chord" in sig.options:
            raise ImproperlyConfigured("a signature replacing a task must not be part of a "
                                       "chord")
        if isinstance(sig, canvas.chain) and not sig.tasks:
            raise ImproperlyConfigured("cannot replace a task with an empty chain")
        sig = canvas.deep_copy(sig)
        if isinstance(canvas.last_task(sig), canvas.group):  # its results become one value
            sig = sig | canvas.Signature(ACCUMULATE, app=app)
        for link in request.callbacks or ():
            canvas.last_task(sig).link(canvas.signature(link, app=app))
        for errback in request.errbacks or ():
            canvas.link_error_everywhere(sig, canvas.signature(errback, app=app))
        sig.freeze(request.id)
        last = canvas.last_task(sig)
        message = request.message
        chord = message.options.get("chord") if message is not None else None
        if chord:  # counted in the chord when the replacement ends, once
            last.options.update(chord=chord, group_index=request.group_index,
                                group_id=request.group, ignore_result=False)
        elif request.group:
            last.options["group_id"] = request.group
        self.on_replace(canvas.with_chain(sig, list(request.chain or ())))

    def on_replace(self, sig: canvas.Signature) -> NoReturn:
        """Called by :meth:`replace` with the replacement, ready to send (as in Celery
        5.3); an override must end with ``return super().on_replace(sig)``.

        Ends the task: on a worker the replacement's messages are published with its
        outcome, in one transaction; in eager mode the replacement runs here.
        """
        if self.request.is_eager:
            raise Replaced(sig)
        messages, _ = sig.build()
        raise Replaced(sig, tuple(m.encode() for m in messages))

    # -- follow-up messages ----------------------------------------------------------

    def follow_ups(self, request: Request, value: Any) -> tuple[Envelope, ...]:
        """Messages to publish with this task's result: the chain's next step (a task,
        a group or a chord, its ids frozen when the chain was sent), and the links."""
        app = self.app
        messages = []
        if request.chain:
            step = canvas.signature(request.chain[0], app=app)
            messages += canvas.with_chain(step, request.chain[1:]).build((value,))[0]
        for link in request.callbacks or ():
            messages += canvas.signature(link, app=app).build((value,))[0]
        return tuple(message.encode() for message in messages)

    def error_callbacks(self, request: Request, exc: BaseException,
                        traceback: str | None = None) -> tuple[Envelope, ...]:
        """Run this task's ``link_error`` errbacks for a failure, as Celery does.

        An errback whose function takes more than one argument besides those its
        signature gives (Celery's documented ``def on_error(request, exc, traceback)``,
        bound tasks too) is called here and now, in this process, with the failed
        task's request, the exception and the traceback text; one that raises is
        logged and the failure stands. Any other errback (one argument, a class-based
        task, a task this process does not know) is called with the failed task's id:
        applied here when the failed task was applied here (``apply()``, eager mode),
        else returned as a message, to be published with the failure
        (see :func:`liteq.errbacks.call_errbacks`).

        Example:
            >>> @app.task  # doctest: +SKIP
            ... def on_error(request, exc, traceback):
            ...     print(f"Task {request.id} raised {exc!r}")
            >>> add.apply_async((2, "x"), link_error=on_error.s())  # doctest: +SKIP
        """
        return tuple(message.encode()
                     for message in call_errbacks(self.app, request, exc, traceback))

    # -- hooks -----------------------------------------------------------------------

    def before_start(self, task_id: str | None, args: tuple[Any, ...],
                     kwargs: dict[str, Any]) -> None:
        """Called before the task body runs."""

    def on_success(self, retval: Any, task_id: str | None, args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> None:
        """Called when the task returned ``retval``."""

    def on_failure(self, exc: BaseException, task_id: str | None, args: tuple[Any, ...],
                   kwargs: dict[str, Any], einfo: Any) -> None:
        """Called when the task raised ``exc`` (and will not be retried)."""

    def on_retry(self, exc: BaseException, task_id: str | None, args: tuple[Any, ...],
                 kwargs: dict[str, Any], einfo: Any) -> None:
        """Called when the task is to be retried."""

    def after_return(self, status: str, retval: Any, task_id: str | None,
                     args: tuple[Any, ...], kwargs: dict[str, Any], einfo: Any) -> None:
        """Called after the task finished, whatever the outcome."""


def backoff_interval(factor: float, retries: int, maximum: float, full_jitter: bool) -> float:
    """Celery's exponential backoff: ``factor * 2**retries`` capped at ``maximum``,
    drawn uniformly from ``[0, that]`` with full jitter."""
    countdown = float(min(maximum, factor * (2**retries)))
    if full_jitter:
        countdown = float(random.randrange(int(countdown) + 1))
    return max(0.0, countdown)


__all__ = ["Task", "backoff_interval", "shared_tasks", "takes_request"]
