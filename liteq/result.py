"""``AsyncResult``: a task's state and return value, read from the result store.

``get()`` sleeps on the transport's wake-up (a pipe beside the SQLite file) instead of
polling, so a result is seen within microseconds of being stored. A task's exception is
re-raised with its own type when that type can be imported here.

A result is a node of a graph: ``parent`` (the result it came after, set by whoever
sent it), ``children`` (the tasks it sent while it ran, stored with its result by the
worker), walked by ``iterdeps()``, ``collect()`` and ``get_leaf()`` as in Celery.
``ResultSet`` and ``GroupResult`` live in :mod:`liteq.resultset` and are importable
from here too.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from liteq import _state, aio, serialization
from liteq.exception_info import rebuild_exception
from liteq.exceptions import ImproperlyConfigured, IncompleteStream, TaskRevokedError, TimeoutError
from liteq.resultset import (
    JOIN_REFUSED,
    DependencyGraph,
    GroupResult,
    ResultBase,
    ResultSet,
    result_from_tuple,
)
from liteq.states import (
    FAILURE,
    PENDING,
    READY_STATES,
    RECEIVED,
    RETRY,
    REVOKED,
    SUCCESS,
    State,
)
from liteq.transports.base import ResultRecord

if TYPE_CHECKING:
    from liteq.app import LiteQ

R = TypeVar("R")



# -- waiting inside tasks -------------------------------------------------------------


@contextmanager
def allow_join_result() -> Iterator[None]:
    """Allow ``get()`` inside a task in the block (as Celery's ``allow_join_result``).

    Waiting for another task from a task can deadlock a worker whose processes are all
    waiting; use it where you know the awaited task runs elsewhere.

    Example:
        >>> @app.task  # doctest: +SKIP
        ... def on_error(task_id):
        ...     with allow_join_result():
        ...         exc = app.AsyncResult(task_id).get(propagate=False)
    """
    token = _state.join_policy.set(True)
    try:
        yield
    finally:
        _state.join_policy.reset(token)


@contextmanager
def denied_join_result() -> Iterator[None]:
    """Refuse ``get()`` in the block, inside a task or not (Celery's
    ``denied_join_result``)."""
    token = _state.join_policy.set(False)
    try:
        yield
    finally:
        _state.join_policy.reset(token)


# -- results -------------------------------------------------------------------------


class AsyncResult(ResultBase, Generic[R]):
    """The result of a task sent with ``delay()`` or ``apply_async()``.

    Example:
        >>> res = add.delay(4, 4)  # doctest: +SKIP
        >>> res.get(timeout=10)  # doctest: +SKIP
        8
        >>> res.state, res.successful()  # doctest: +SKIP
        ('SUCCESS', True)
    """

    def __init__(
        self,
        id: str,
        app: LiteQ | None = None,
        task_name: str | None = None,
        *,
        ignored: bool = False,
        parent: Any = None,
    ) -> None:
        self.id = str(id)
        self._app = app
        self.task_name = task_name
        self._ignored = ignored
        self._final: ResultRecord | None = None
        if parent is not None:
            self.parent = parent

    # -- plumbing --------------------------------------------------------------------

    @property
    def ignored(self) -> bool:
        """True when the task was sent with ``ignore_result`` (nothing will be stored)."""
        return self._ignored

    @ignored.setter
    def ignored(self, value: bool) -> None:
        self._ignored = bool(value)

    @property
    def app(self) -> LiteQ:
        if self._app is None:
            self._app = _state.current_app()
        return self._app

    @property
    def backend(self) -> Any:
        return self.app.backend

    def _record(self) -> ResultRecord | None:
        if self._final is not None:
            return self._final
        record: ResultRecord | None = self.backend.get_result(self.id)
        if record is not None and record.state in READY_STATES:
            self._final = record
        return record

    def _decode(self, record: ResultRecord) -> Any:
        value = serialization.loads(record.payload, record.content_type, self.app.result_accept)
        if record.state in (FAILURE, RETRY, REVOKED):
            return rebuild_exception(value)
        return value

    # -- state -----------------------------------------------------------------------

    @property
    def state(self) -> State | str:
        """PENDING, RECEIVED, STARTED, SUCCESS, FAILURE, RETRY, REVOKED or a custom state."""
        record = self._record()
        if record is not None:
            try:
                return State(record.state)
            except ValueError:
                return record.state  # a custom state from update_state()
        if self.app.broker.is_leased(self.id):
            return RECEIVED
        return PENDING

    status = state

    def ready(self) -> bool:
        """True once the task has finished (SUCCESS, FAILURE or REVOKED)."""
        record = self._record()
        return record is not None and record.state in READY_STATES

    def successful(self) -> bool:
        record = self._record()
        return record is not None and record.state == SUCCESS

    def failed(self) -> bool:
        record = self._record()
        return record is not None and record.state == FAILURE

    @property
    def result(self) -> Any:
        """The return value, the exception when it failed, or the meta of a custom state."""
        record = self._record()
        return None if record is None else self._decode(record)

    info = result

    @property
    def traceback(self) -> str | None:
        record = self._record()
        return None if record is None else record.traceback

    @property
    def date_done(self) -> datetime | None:
        record = self._record()
        if record is None or record.state not in READY_STATES:
            return None
        return datetime.fromtimestamp(record.date_done, tz=timezone.utc)

    @property
    def retries(self) -> int:
        record = self._record()
        return 0 if record is None else record.retries

    @property
    def worker(self) -> str | None:
        record = self._record()
        return None if record is None else record.worker

    @property
    def name(self) -> str | None:
        """The task's name (from the stored result, else as known when it was sent)."""
        record = self._record()
        return (record.task_name if record is not None else None) or self.task_name

    # -- the call, kept with ``result_extended`` -------------------------------------

    def _extended(self, key: str) -> Any:
        record = self._record()
        if record is None or record.extended is None:
            return None
        try:
            fields = serialization.json_loads(record.extended)
        except Exception:
            return None
        return fields.get(key) if isinstance(fields, dict) else None

    @property
    def args(self) -> Any:
        """The task's positional arguments (stored with ``result_extended=True``)."""
        return self._extended("args")

    @property
    def kwargs(self) -> Any:
        """The task's keyword arguments (stored with ``result_extended=True``)."""
        return self._extended("kwargs")

    @property
    def queue(self) -> str | None:
        """The queue the task came from (stored with ``result_extended=True``)."""
        return self._extended("queue")  # type: ignore[no-any-return]

    @property
    def parent_id(self) -> str | None:
        """The id of the task that sent this one (stored with ``result_extended=True``)."""
        return self._extended("parent_id")  # type: ignore[no-any-return]

    @property
    def root_id(self) -> str | None:
        """The id of the first task of the workflow (stored with ``result_extended``)."""
        return self._extended("root_id")  # type: ignore[no-any-return]

    # -- the result graph ------------------------------------------------------------

    @property
    def children(self) -> list[Any] | None:
        """Results of the tasks this task sent while it ran (``delay()`` calls, groups as
        GroupResult, its chain's next step and its links); None until it has a result.
        """
        record = self._record()
        if record is None:
            return None
        if record.children is None:
            return []
        return [result_from_tuple(node, self.app)
                for node in serialization.json_loads(record.children)]

    def as_tuple(self) -> tuple[Any, Any]:
        parent = self.parent.as_tuple() if self.parent is not None else None
        return (self.id, parent), None

    def as_list(self) -> list[str]:
        """This task's id, then its parents' ids."""
        ids = [self.id]
        if self.parent is not None:
            ids.extend(self.parent.as_list())
        return ids

    def iterdeps(self, intermediate: bool = False) -> Iterator[tuple[Any, Any]]:
        """``(parent, result)`` pairs of the graph from here, breadth first, starting
        with ``(None, self)``.

        Raises:
            IncompleteStream: a result is not ready (unless ``intermediate``, which
                yields it without following it).
        """
        stack: deque[tuple[Any, Any]] = deque([(None, self)])
        while stack:
            parent, node = stack.popleft()
            yield parent, node
            if node.ready():
                stack.extend((node, child) for child in node.children or ())
            elif not intermediate:
                raise IncompleteStream(f"{node!r} has not finished")

    def collect(self, intermediate: bool = False, **kwargs: Any) -> Iterator[tuple[Any, Any]]:
        """``(result, value)`` for this result and every one it led to, waiting for each
        as ``get(**kwargs)`` does (as Celery's ``collect()``).

        Example:
            >>> [v for _, v in A.delay(10).collect(timeout=10)]  # doctest: +SKIP
        """
        for _, node in self.iterdeps(intermediate=intermediate):
            yield node, node.get(**kwargs)

    def get_leaf(self) -> Any:
        """The value of the last result of the graph (waiting for each on the way)."""
        value = None
        for _, node in self.iterdeps():
            value = node.get()
        return value

    def build_graph(self, intermediate: bool = False,
                    formatter: Any = None) -> DependencyGraph:
        """The graph of results from here (see :meth:`iterdeps`)."""
        graph = DependencyGraph()
        for parent, node in self.iterdeps(intermediate=intermediate):
            graph.add_arc(node)
            if parent is not None:
                graph.add_edge(parent, node)
        return graph

    @property
    def graph(self) -> DependencyGraph:
        return self.build_graph()

    # -- waiting ---------------------------------------------------------------------

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        disable_sync_subtasks: bool = True,
        on_message: Callable[[dict[str, Any]], Any] | None = None,
        **_unused: Any,
    ) -> R:
        """Wait for the task to finish and return its value.

        Args:
            timeout: seconds to wait; None waits for ever.
            propagate: re-raise the task's exception (else return it).
            interval: longest sleep between two looks at the store (wake-ups usually
                end the sleep much sooner).
            disable_sync_subtasks: refuse to wait inside a running task, where waiting
                for another task can deadlock the worker (as Celery does; see
                :func:`allow_join_result`).
            on_message: called with the task's meta (``status``, ``result``,
                ``traceback``, ``children``, ``date_done``, ``task_id``) for each state
                it is seen in while waiting, the final one included (as Celery's).

        Raises:
            TimeoutError: the task did not finish within ``timeout``.
            TaskRevokedError: the task was revoked or expired (with ``propagate``).
            Exception: the task's own exception (with ``propagate``).
        """
        if self._ignored:
            return None  # type: ignore[return-value]
        if disable_sync_subtasks and _state.join_will_block():
            raise RuntimeError(JOIN_REFUSED)
        record = self._wait(timeout, interval, on_message)
        return self._finish(record, propagate)  # type: ignore[no-any-return]

    wait = get

    async def aget(self, timeout: float | None = None, propagate: bool = True,
                   interval: float = 0.5, **_unused: Any) -> R:
        """``get()`` for asyncio: await the task's value without blocking the event
        loop (woken by the same wake-ups as ``get()``; see :mod:`liteq.aio`).

        Raises:
            TimeoutError: the task did not finish within ``timeout``.
            TaskRevokedError: the task was revoked or expired (with ``propagate``).
            Exception: the task's own exception (with ``propagate``).

        Example:
            >>> result = await add.adelay(2, 3)  # doctest: +SKIP
            >>> await result.aget(timeout=10)  # doctest: +SKIP
            5
        """
        if self._ignored:
            return None  # type: ignore[return-value]
        record = self._final
        if record is None:
            record = await aio.wait_for_result(self.backend, self.id, timeout, interval)
            self._final = record
        return self._finish(record, propagate)  # type: ignore[no-any-return]

    def _wait(self, timeout: float | None, interval: float,
              on_message: Callable[[dict[str, Any]], Any] | None = None) -> ResultRecord:
        record = self._record()
        seen: tuple[Any, ...] | None = None
        if record is not None and record.state in READY_STATES:
            if on_message is not None:
                on_message(self._meta(record))
            return record
        deadline = None if timeout is None else time.monotonic() + timeout
        waiter = self.backend.result_waiter([self.id])
        try:
            while True:
                record = self._record()
                if on_message is not None and record is not None:
                    version = (record.state, record.payload, record.date_done)
                    if version != seen:  # a new state (or new meta): tell the caller
                        seen = version
                        on_message(self._meta(record))
                if record is not None and record.state in READY_STATES:
                    return record
                remaining = interval if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    state = record.state if record is not None else self.state
                    raise TimeoutError(
                        f"task {self.id} did not finish within {timeout:g}s (state {state})"
                    )
                waiter.wait(min(remaining, interval))
        finally:
            waiter.close()

    def _meta(self, record: ResultRecord) -> dict[str, Any]:
        """The task's meta as Celery's ``on_message`` callbacks receive it."""
        children = [] if record.children is None else serialization.json_loads(record.children)
        return {
            "status": record.state,
            "result": self._decode(record),
            "traceback": record.traceback,
            "children": children,
            "date_done": datetime.fromtimestamp(record.date_done, tz=timezone.utc).isoformat(),
            "task_id": self.id,
        }

    def _finish(self, record: ResultRecord, propagate: bool) -> Any:
        value = self._decode(record)
        if record.state == SUCCESS or not propagate:
            return value
        if record.state == REVOKED:
            raise TaskRevokedError(f"task {self.id} was revoked: {value}")
        raise value

    def forget(self) -> None:
        """Delete the stored result (it would expire after ``result_expires`` anyway)."""
        self._final = None
        self.backend.forget([self.id])

    def revoke(self, terminate: bool = False, signal: str | None = None,
               **_unused: Any) -> None:
        """Revoke the task: it will not run; with ``terminate``, kill it if it runs."""
        self._final = None
        self.app.control.revoke(self.id, terminate=terminate, signal=signal)

    def maybe_throw(self, propagate: bool = True) -> None:
        """Raise the task's exception if it failed."""
        record = self._record()
        if record is not None and record.state in READY_STATES:
            self._finish(record, propagate)

    # -- dunder ----------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.id}>"

    def __str__(self) -> str:
        return self.id

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AsyncResult):
            return other.id == self.id
        if isinstance(other, str):
            return other == self.id
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)


class EagerResult(AsyncResult[R]):
    """The result of a task run here and now (``apply()`` or ``task_always_eager``)."""

    def __init__(
        self,
        id: str,
        value: Any,
        state: str,
        traceback: str | None = None,
        app: LiteQ | None = None,
        task_name: str | None = None,
    ) -> None:
        super().__init__(id, app, task_name)
        self._value = value
        self._state = state
        self._traceback = traceback
        self._done = time.time()

    def _record(self) -> ResultRecord:
        return ResultRecord(self.id, self._state, traceback=self._traceback,
                            date_done=self._done, task_name=self.task_name)

    def _decode(self, record: ResultRecord) -> Any:
        return self._value

    @property
    def state(self) -> State | str:
        try:
            return State(self._state)
        except ValueError:
            return self._state

    status = state

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        disable_sync_subtasks: bool = True,
        on_message: Callable[[dict[str, Any]], Any] | None = None,
        **_unused: Any,
    ) -> R:
        record = self._record()
        if on_message is not None:  # its one state, as a result that was ready
            on_message(self._meta(record))
        return self._finish(record, propagate)  # type: ignore[no-any-return]

    wait = get

    async def aget(self, timeout: float | None = None, propagate: bool = True,
                   interval: float = 0.5, **_unused: Any) -> R:
        return self.get(propagate=propagate)

    def forget(self) -> None:
        raise ImproperlyConfigured("an eager result is not stored, so it cannot be forgotten")


__all__ = [
    "AsyncResult",
    "DependencyGraph",
    "EagerResult",
    "GroupResult",
    "ResultBase",
    "ResultSet",
    "allow_join_result",
    "denied_join_result",
    "result_from_tuple",
]
