"""``AsyncResult``: a task's state and return value, read from the result store.

``get()`` sleeps on the transport's wake-up (a pipe beside the SQLite file) instead of
polling, so a result is seen within microseconds of being stored. A task's exception is
re-raised with its own type when that type can be imported here.
"""

from __future__ import annotations

import builtins
import importlib
import re
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from liteq import _state, exceptions, serialization
from liteq.exceptions import ImproperlyConfigured, TaskRevokedError, TimeoutError
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

_IDENTIFIER = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


# -- exceptions in results -------------------------------------------------------------


def exception_info(exc: BaseException) -> dict[str, Any]:
    """What is stored of an exception: its type's module and name, and its arguments."""
    return {
        "exc_type": type(exc).__qualname__,
        "exc_module": type(exc).__module__,
        "exc_message": [_storable(arg) for arg in exc.args],
    }


def _storable(value: Any) -> Any:
    try:
        serialization.json_dumps(value)
    except Exception:
        return repr(value)
    return value


def _exception_class(module: str, qualname: str) -> type[BaseException] | None:
    if not _IDENTIFIER.match(module) or not _IDENTIFIER.match(qualname):
        return None
    if module == "builtins":
        candidate: Any = getattr(builtins, qualname, None)
    else:
        owner = sys.modules.get(module)
        if owner is None:
            try:
                owner = importlib.import_module(module)
            except Exception:
                return None
        candidate = owner
        for part in qualname.split("."):
            candidate = getattr(candidate, part, None)
    if isinstance(candidate, type) and issubclass(candidate, BaseException):
        return candidate
    return None


_synthetic: dict[tuple[str, str], type[Exception]] = {}


def rebuild_exception(info: Any) -> BaseException:
    """The exception described by :func:`exception_info`, as faithfully as possible.

    The original type is used when it can be imported and is an exception class; else a
    stand-in class with the same name and module (deriving from ``Exception``).
    """
    if not isinstance(info, dict):
        return exceptions.TaskError(f"unreadable exception: {info!r}")
    module = str(info.get("exc_module") or "builtins")
    qualname = str(info.get("exc_type") or "Exception")
    args = info.get("exc_message") or []
    if not isinstance(args, (list, tuple)):
        args = [args]
    cls = _exception_class(module, qualname)
    if cls is None:
        key = (module, qualname)
        if key not in _synthetic:
            name = qualname.rpartition(".")[2] if _IDENTIFIER.match(qualname) else "RemoteError"
            _synthetic[key] = type(name, (Exception,), {"__module__": module})
        cls = _synthetic[key]
    try:
        exc = cls(*args)
    except Exception:
        exc = cls.__new__(cls)
        exc.args = tuple(args)
    return exc


# -- results -------------------------------------------------------------------------


class AsyncResult(Generic[R]):
    """The result of a task sent with ``delay()`` or ``apply_async()``.

    Example:
        >>> res = add.delay(4, 4)  # doctest: +SKIP
        >>> res.get(timeout=10)  # doctest: +SKIP
        8
        >>> res.state, res.successful()  # doctest: +SKIP
        ('SUCCESS', True)
    """

    #: what this result came after: a chord's body has its header's GroupResult here
    parent: Any = None

    def __init__(
        self,
        id: str,
        app: LiteQ | None = None,
        task_name: str | None = None,
        *,
        ignored: bool = False,
    ) -> None:
        self.id = str(id)
        self._app = app
        self.task_name = task_name
        self._ignored = ignored
        self._final: ResultRecord | None = None

    # -- plumbing --------------------------------------------------------------------

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
        record = self._record()
        return (record.task_name if record is not None else None) or self.task_name

    # -- waiting ---------------------------------------------------------------------

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        disable_sync_subtasks: bool = True,
        **_unused: Any,
    ) -> R:
        """Wait for the task to finish and return its value.

        Args:
            timeout: seconds to wait; None waits for ever.
            propagate: re-raise the task's exception (else return it).
            interval: longest sleep between two looks at the store (wake-ups usually
                end the sleep much sooner).
            disable_sync_subtasks: refuse to wait inside a running task, where waiting
                for another task can deadlock the worker (as Celery does).

        Raises:
            TimeoutError: the task did not finish within ``timeout``.
            TaskRevokedError: the task was revoked or expired (with ``propagate``).
            Exception: the task's own exception (with ``propagate``).
        """
        if self._ignored:
            return None  # type: ignore[return-value]
        if disable_sync_subtasks and _state.current_request.get() is not None:
            raise RuntimeError(
                "Never call result.get() within a task: it can deadlock the worker. "
                "Chain the tasks instead, or pass disable_sync_subtasks=False."
            )
        record = self._wait(timeout, interval)
        return self._finish(record, propagate)  # type: ignore[no-any-return]

    wait = get

    def _wait(self, timeout: float | None, interval: float) -> ResultRecord:
        record = self._record()
        if record is not None and record.state in READY_STATES:
            return record
        deadline = None if timeout is None else time.monotonic() + timeout
        waiter = self.backend.result_waiter([self.id])
        try:
            while True:
                record = self._record()
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

    def _record(self) -> ResultRecord | None:
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
        **_unused: Any,
    ) -> R:
        return self._finish(self._record(), propagate)  # type: ignore[arg-type,no-any-return]

    wait = get

    def forget(self) -> None:
        raise ImproperlyConfigured("an eager result is not stored, so it cannot be forgotten")


class GroupResult:
    """The results of a group of tasks.

    Example:
        >>> res = group(add.s(i, i) for i in range(3))()  # doctest: +SKIP
        >>> res.get(timeout=10), res.completed_count()  # doctest: +SKIP
        ([0, 2, 4], 3)
    """

    def __init__(self, id: str, results: list[AsyncResult[Any]], app: LiteQ | None = None):
        self.id = id
        self.results = list(results)
        self._app = app

    def __iter__(self) -> Iterator[AsyncResult[Any]]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, index: int) -> AsyncResult[Any]:
        return self.results[index]

    def __repr__(self) -> str:
        return f"<GroupResult: {self.id} [{', '.join(r.id for r in self.results)}]>"

    def ready(self) -> bool:
        return all(result.ready() for result in self.results)

    def successful(self) -> bool:
        return all(result.successful() for result in self.results)

    def failed(self) -> bool:
        return any(result.failed() for result in self.results)

    def waiting(self) -> bool:
        return not self.ready()

    def completed_count(self) -> int:
        """How many of the tasks succeeded."""
        return sum(1 for result in self.results if result.successful())

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        disable_sync_subtasks: bool = True,
        **_unused: Any,
    ) -> list[Any]:
        """Wait for every task and return their values in order.

        Raises:
            TimeoutError: not all finished within ``timeout`` (one deadline for all).
        """
        if disable_sync_subtasks and _state.current_request.get() is not None:
            raise RuntimeError("Never call result.get() within a task: it can deadlock.")
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = [r for r in self.results if not r._ignored]
        if pending and not all(r.ready() for r in pending):
            app = self._app or pending[0].app
            waiter = app.backend.result_waiter([r.id for r in pending])
            try:
                for result in pending:
                    while not result.ready():
                        remaining = interval if deadline is None else deadline - time.monotonic()
                        if remaining <= 0:
                            done = sum(1 for r in self.results if r.ready())
                            raise TimeoutError(
                                f"group {self.id}: {done} of {len(self.results)} tasks "
                                f"finished within {timeout:g}s"
                            )
                        waiter.wait(min(remaining, interval))
            finally:
                waiter.close()
        return [r.get(propagate=propagate, disable_sync_subtasks=False) for r in self.results]

    join = get

    def forget(self) -> None:
        for result in self.results:
            result.forget()


__all__ = ["AsyncResult", "EagerResult", "GroupResult", "exception_info", "rebuild_exception"]
