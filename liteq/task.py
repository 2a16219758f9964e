"""Tasks: ``@app.task``, ``shared_task``, class-based tasks, retries and hooks.

A task is an instance of a class made for it (deriving from ``Task`` or from the
``base=`` the user gives), created once per process, so attributes set on it live once
per worker process, as in seed 000's ``DatabaseTask``.
"""

from __future__ import annotations

import random
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from liteq import _state, canvas
from liteq.exceptions import (
    ImproperlyConfigured,
    MaxRetriesExceededError,
    Retry,
)
from liteq.execute import IGNORED, Request, execute
from liteq.messages import Envelope
from liteq.ratelimits import parse_rate
from liteq.result import AsyncResult, EagerResult
from liteq.states import FAILURE, RETRY, SUCCESS

if TYPE_CHECKING:
    from liteq.app import LiteQ

P = ParamSpec("P")
R = TypeVar("R")

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

    def __init__(self) -> None:
        self._requests: ContextVar[tuple[Request, ...]] = ContextVar(
            f"liteq_requests_{id(self)}", default=()
        )

    # -- identity --------------------------------------------------------------------

    @property
    def app(self) -> LiteQ:
        """The app this task belongs to (the current app for a ``shared_task``)."""
        return self._app if self._app is not None else _state.current_app()

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
        self._requests.set((*self._requests.get(), request))

    def pop_request(self) -> None:
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
        message = app.build_message(self.name, args, kwargs, task=self, task_id=task_id,
                                    **options)
        app.publish([message], retry=retry, retry_policy=retry_policy, connection=connection)
        return AsyncResult(message.id, app, self.name, ignored=message.ignore_result)

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
        message = app.build_message(self.name, args, kwargs, task=self, task_id=task_id,
                                    retries=retries, **options)
        request = Request.from_message(message, hostname=socket.gethostname(), is_eager=True)
        outcome = execute(app, self, request)
        if outcome.state == RETRY and isinstance(outcome.exception, Retry):
            return self.apply(args, kwargs, task_id=message.id, retries=retries + 1,
                              throw=throw, **options)
        if app.conf.task_store_eager_result and outcome.record is not None:
            app.backend.store_results([outcome.record])
        app.run_follow_ups(outcome.publish)
        propagate = app.conf.task_eager_propagates if throw is None else throw
        if outcome.state == FAILURE and propagate and outcome.exception is not None:
            raise outcome.exception
        value = outcome.value if outcome.state in (SUCCESS, IGNORED) else outcome.exception
        traceback = outcome.record.traceback if outcome.record is not None else None
        return EagerResult(message.id, value, outcome.state, traceback, app, self.name)

    def AsyncResult(self, task_id: str) -> AsyncResult[R]:
        return AsyncResult(task_id, self.app, self.name)

    # -- signatures ------------------------------------------------------------------

    def signature(self, args: Iterable[Any] | None = None,
                  **options: Any) -> canvas.Signature:
        """A signature with options: ``add.signature((2, 2), countdown=10)``."""
        kwargs = options.pop("kwargs", None)
        return canvas.Signature(self, args, kwargs, options)

    subtask = signature

    def s(self, *args: Any, **kwargs: Any) -> canvas.Signature:
        """A signature: ``add.s(2, 2)``."""
        return canvas.Signature.of(self, args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> canvas.Signature:
        """An immutable signature: it ignores the parent's result in a chain."""
        return canvas.Signature.of(self, args, kwargs, immutable=True)

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
        record = app.make_record(task_id, state or "PENDING", meta, task_name=self.name,
                                 worker=request.hostname, retries=request.retries,
                                 serializer=self.result_serializer)
        # The lease fences the write only where it lives: in the broker's own store.
        fenced = task_id == request.id and app.results_with_broker
        app.backend.store_result(record, fence=request.delivery if fenced else None)

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
            raise MaxRetriesExceededError(
                f"Can't retry {self.name}[{request.id}] args:{request.args} "
                f"kwargs:{request.kwargs}"
            )
        if eta is None and countdown is None:
            countdown = self.default_retry_delay
        app = self.app
        old = request.message
        message = app.build_message(
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
        signal = Retry(exc=exc, when=when)
        signal.envelope = message.encode()  # type: ignore[attr-defined]
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

    # -- follow-up messages ----------------------------------------------------------

    def follow_ups(self, request: Request, value: Any) -> tuple[Envelope, ...]:
        """Messages to publish with this task's result: the chain's next step, links."""
        app = self.app
        envelopes = []
        if request.chain:
            step, rest = canvas.signature(request.chain[0]), request.chain[1:]
            step = step.clone((value,))
            if rest:
                step.options["chain"] = list(rest)
            envelopes.append(app.build_message(step.task, step.args, step.kwargs,
                                               **step.options).encode())
        for link in request.callbacks or ():
            step = canvas.signature(link).clone((value,))
            envelopes.append(app.build_message(step.task, step.args, step.kwargs,
                                               **step.options).encode())
        return tuple(envelopes)

    def error_callbacks(self, request: Request, exc: BaseException) -> tuple[Envelope, ...]:
        """Messages to publish when this task fails: its ``link_error`` signatures,
        each called with the failed task's id."""
        app = self.app
        envelopes = []
        for link in request.errbacks or ():
            step = canvas.signature(link).clone((request.id,))
            envelopes.append(app.build_message(step.task, step.args, step.kwargs,
                                               **step.options).encode())
        return tuple(envelopes)

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


def make_task(
    fun: Callable[..., Any],
    *,
    app: LiteQ | None,
    name: str,
    base: type[Task[Any, Any]] | None = None,
    bind: bool = False,
    **options: Any,
) -> Task[Any, Any]:
    """Build the task instance for ``fun`` (one class per task, as Celery does)."""
    base = base or Task
    if not (isinstance(base, type) and issubclass(base, Task)):
        raise ImproperlyConfigured(f"base= must be a subclass of liteq.Task, not {base!r}")
    unknown = sorted(set(options) - set(_TASK_OPTIONS))
    if unknown:
        raise ImproperlyConfigured(
            f"unknown task option(s) {', '.join(map(repr, unknown))} for {name}"
        )
    attributes = {
        "name": name,
        "run": fun if bind else staticmethod(fun),
        "_app": app,
        "__doc__": fun.__doc__,
        "__module__": fun.__module__,
        "__qualname__": getattr(fun, "__qualname__", fun.__name__),
        "__wrapped__": fun,
        "_bind": bind,
        **options,
    }
    if "autoretry_for" in options:
        attributes["autoretry_for"] = tuple(options["autoretry_for"])
    if options.get("rate_limit") is not None:
        try:
            parse_rate(options["rate_limit"])
        except ValueError as exc:
            raise ImproperlyConfigured(f"task {name}: {exc}") from None
    cls = type(fun.__name__, (base,), attributes)
    task: Task[Any, Any] = cls()
    return task


_TASK_OPTIONS = {
    name for name, value in vars(Task).items()
    if not name.startswith("_") and not callable(value) and not isinstance(value, property)
} | {"typing", "trail", "serializer", "shared"}


def gen_task_name(app_main: str | None, module: str, function: str) -> str:
    """``module.function``; a task defined in ``__main__`` takes the app's main name."""
    if module == "__main__" and app_main:
        module = app_main
    return f"{module}.{function}"


def new_id() -> str:
    return str(uuid.uuid4())


__all__ = ["Task", "backoff_interval", "gen_task_name", "make_task", "shared_tasks"]
