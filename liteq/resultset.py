"""Many results as one: ``ResultSet``, and ``GroupResult``, which a group returns and
which can be saved in the result store and restored by id from any process.

Results travel (in a task's stored ``children``, in a saved group, as a task's return
value) as Celery's *result tuples*: ``((id, parent), None)`` for a task and
``((id, parent), [member, ...])`` for a group, where ``parent`` is the tuple of the
result it came after, or None. :func:`result_from_tuple` turns one back into results,
made by the app (``app.AsyncResult`` / ``app.GroupResult``) so this module needs
neither class.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any

from liteq import _state, serialization
from liteq.exceptions import TimeoutError

if TYPE_CHECKING:
    from liteq.app import LiteQ
    from liteq.transports.base import Transport


class ResultBase:
    """What every result is (``isinstance(value, ResultBase)`` tells results apart)."""

    #: the result this one came after (a chain's previous step, a chord's header);
    #: set by whoever knows it, None otherwise
    parent: Any = None

    def as_tuple(self) -> tuple[Any, Any]:
        """This result as a tuple that :func:`result_from_tuple` turns back into it."""
        raise NotImplementedError

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled (a task returning a result with the pickle serializer) as its tuple:
        # unpickled with the current app, as Celery's results are.
        return result_from_tuple, (self.as_tuple(),)


def result_from_tuple(value: Any, app: LiteQ | None = None) -> Any:
    """The result a result tuple stands for (a result is returned as it is).

    Lists are taken for tuples, as json stores them.

    Example:
        >>> result_from_tuple((("a1", None), None), app)  # doctest: +SKIP
        <AsyncResult: a1>

    Raises:
        ValueError: ``value`` is not a result tuple.
    """
    if isinstance(value, ResultBase):
        return value
    try:
        head, nodes = value
        task_id, parent = head if isinstance(head, (list, tuple)) else (head, None)
    except (TypeError, ValueError):
        raise ValueError(f"not a result tuple: {value!r}") from None
    if not isinstance(task_id, str) or not (nodes is None or isinstance(nodes, (list, tuple))):
        raise ValueError(f"not a result tuple: {value!r}")
    app = app or _state.current_app()
    parent_result = result_from_tuple(parent, app) if parent else None
    if nodes is not None:
        return app.GroupResult(task_id, [result_from_tuple(node, app) for node in nodes],
                               parent=parent_result)
    return app.AsyncResult(task_id, parent=parent_result)


#: What ``get()`` says when it is refused inside a task.
JOIN_REFUSED = ("Never call result.get() within a task: it can deadlock the worker. "
                "Chain the tasks instead, or wait in a `with allow_join_result():` block "
                "or with get(disable_sync_subtasks=False).")


def _not_in_a_task() -> None:
    if _state.join_will_block():
        raise RuntimeError(JOIN_REFUSED)


class DependencyGraph:
    """Which results each result led to (``AsyncResult.graph``): ``graph[node]`` lists
    the results ``node`` sent."""

    def __init__(self) -> None:
        self.adjacent: dict[Any, list[Any]] = {}

    def add_arc(self, node: Any) -> None:
        self.adjacent.setdefault(node, [])

    def add_edge(self, parent: Any, child: Any) -> None:
        self.add_arc(parent)
        self.adjacent[parent].append(child)

    def __getitem__(self, node: Any) -> list[Any]:
        return self.adjacent[node]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.adjacent)

    def __len__(self) -> int:
        return len(self.adjacent)

    def __contains__(self, node: object) -> bool:
        return node in self.adjacent

    def items(self) -> Iterator[tuple[Any, list[Any]]]:
        return iter(self.adjacent.items())

    def to_dot(self, out: IO[str]) -> None:
        """Write the graph in GraphViz's dot language."""
        out.write("digraph dependencies {\n")
        for node, children in self.adjacent.items():
            out.write(f'  "{node.id}";\n')
            for child in children:
                out.write(f'  "{node.id}" -> "{child.id}";\n')
        out.write("}\n")


class ResultSet(ResultBase):
    """Results of any tasks, waited for and inspected together.

    Example:
        >>> rs = ResultSet([add.delay(1, 1), add.delay(2, 2)])  # doctest: +SKIP
        >>> rs.get(timeout=10), rs.completed_count()  # doctest: +SKIP
        ([2, 4], 2)
    """

    #: waiting for many results is native: one wake-up for all of them
    supports_native_join = True

    def __init__(self, results: Iterable[Any], app: LiteQ | None = None,
                 **_unused: Any) -> None:
        self._app = app
        self.results: list[Any] = results if isinstance(results, list) else list(results)

    @property
    def app(self) -> LiteQ:
        if self._app is None:
            owner = next((r for r in self.results if getattr(r, "_app", None)), None)
            self._app = owner._app if owner is not None else _state.current_app()
        return self._app

    @app.setter
    def app(self, app: LiteQ) -> None:
        self._app = app

    @property
    def backend(self) -> Transport:
        return self.app.backend

    def __reduce__(self) -> tuple[Any, ...]:
        return ResultSet, (list(self.results),)

    # -- members ---------------------------------------------------------------------

    def add(self, result: Any) -> None:
        """Add a result, unless it is a member already."""
        if result not in self.results:
            self.results.append(result)

    def remove(self, result: Any) -> None:
        """Remove a member (a result or a task id).

        Raises:
            KeyError: it is not a member.
        """
        if isinstance(result, str):
            result = self.app.AsyncResult(result)
        try:
            self.results.remove(result)
        except ValueError:
            raise KeyError(result) from None

    def discard(self, result: Any) -> None:
        """Remove a member if it is one."""
        try:
            self.remove(result)
        except KeyError:
            pass

    def update(self, results: Iterable[Any]) -> None:
        """Add the results that are not members yet."""
        self.results.extend(r for r in results if r not in self.results)

    def clear(self) -> None:
        """Remove every member."""
        self.results[:] = []

    # -- state -----------------------------------------------------------------------

    def successful(self) -> bool:
        """True when every task succeeded."""
        return all(result.successful() for result in self.results)

    def failed(self) -> bool:
        """True when any task failed."""
        return any(result.failed() for result in self.results)

    def waiting(self) -> bool:
        """True while any task has not finished."""
        return any(not result.ready() for result in self.results)

    def ready(self) -> bool:
        """True once every task has finished (whatever the outcome)."""
        return all(result.ready() for result in self.results)

    def completed_count(self) -> int:
        """How many of the tasks succeeded."""
        return sum(1 for result in self.results if result.successful())

    def maybe_throw(self, callback: Callable[..., Any] | None = None,
                    propagate: bool = True) -> None:
        """Raise the exception of the first failed task (with ``propagate``)."""
        for result in self.results:
            result.maybe_throw(propagate=propagate)

    maybe_reraise = maybe_throw

    def forget(self) -> None:
        """Delete every task's stored result."""
        for result in self.results:
            result.forget()

    def revoke(self, connection: Any = None, terminate: bool = False,
               signal: str | None = None, wait: bool = False, timeout: float | None = None,
               **_unused: Any) -> None:
        """Revoke every task (see ``AsyncResult.revoke``)."""
        self.app.control.revoke([result.id for result in self.results],
                                terminate=terminate, signal=signal)

    # -- waiting ---------------------------------------------------------------------

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        callback: Callable[[str, Any], None] | None = None,
        no_ack: bool = True,
        on_message: Any = None,
        disable_sync_subtasks: bool = True,
        on_interval: Any = None,
    ) -> list[Any]:
        """Wait for every task and return their values in order (see :meth:`join`)."""
        return self.join(timeout, propagate, interval, callback,
                         disable_sync_subtasks=disable_sync_subtasks)

    def join(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        callback: Callable[[str, Any], None] | None = None,
        no_ack: bool = True,
        on_message: Any = None,
        disable_sync_subtasks: bool = True,
        on_interval: Any = None,
        **_unused: Any,
    ) -> list[Any]:
        """Wait for every task and return their values in order.

        Args:
            timeout: seconds to wait for all of them (one deadline); None: for ever.
            propagate: re-raise the first failed task's exception (in order).
            interval: longest sleep between two looks at the store.
            callback: called as ``callback(task_id, value)`` for each task instead of
                collecting the values (the list returned is then empty), as in Celery.
            disable_sync_subtasks: refuse to wait inside a running task.

        Raises:
            TimeoutError: not all finished within ``timeout``.
        """
        if disable_sync_subtasks:
            _not_in_a_task()
        deadline = None if timeout is None else time.monotonic() + timeout
        self._wait(deadline, interval, timeout)
        values = []
        for result in self.results:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            value = result.get(timeout=remaining, propagate=propagate, interval=interval,
                               disable_sync_subtasks=False)
            if callback is not None:
                callback(result.id, value)
            else:
                values.append(value)
        return values

    join_native = join

    async def aget(self, timeout: float | None = None, propagate: bool = True,
                   interval: float = 0.5, **_unused: Any) -> list[Any]:
        """``get()`` for asyncio: await every task's value, in order, without blocking
        the event loop (all members on one wake-up descriptor; see :mod:`liteq.aio`).

        Raises:
            TimeoutError: not all finished within ``timeout``.
            Exception: the first failed task's exception, in order (with ``propagate``).

        Example:
            >>> await group(add.s(i, i) for i in range(10)).apply_async().aget()  # doctest: +SKIP
        """
        async def outcome(result: Any) -> tuple[bool, Any]:
            try:
                return True, await result.aget(propagate=propagate, interval=interval)
            except Exception as exc:  # kept for its place in the order
                return False, exc

        waits = [outcome(result) for result in self.results]
        try:
            outcomes = await asyncio.wait_for(asyncio.gather(*waits), timeout)
        except asyncio.TimeoutError:
            done = sum(1 for r in self.results if getattr(r, "_final", None) is not None)
            raise TimeoutError(f"{self._label()}{done} of {len(self.results)} tasks "
                               f"finished within {timeout:g}s") from None
        for ok, value in outcomes:
            if not ok:
                raise value
        return [value for _, value in outcomes]

    ajoin = aget

    def _wait(self, deadline: float | None, interval: float, timeout: float | None) -> None:
        """Block until every task member is ready, on one wake-up for all of them
        (nested sets wait in their own ``get()``)."""
        pending = [r for r in self.results
                   if not isinstance(r, ResultSet) and not getattr(r, "_ignored", False)]
        if not pending or all(r.ready() for r in pending):
            return
        waiter = self.backend.result_waiter([r.id for r in pending])
        try:
            for result in pending:
                while not result.ready():
                    remaining = interval if deadline is None else deadline - time.monotonic()
                    if remaining <= 0:
                        done = sum(1 for r in self.results if r.ready())
                        raise TimeoutError(
                            f"{self._label()}{done} of {len(self.results)} tasks finished "
                            f"within {timeout:g}s"
                        )
                    waiter.wait(min(remaining, interval))
        finally:
            waiter.close()

    def _label(self) -> str:
        return ""

    # -- container -------------------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, index: int) -> Any:
        return self.results[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ResultSet):
            return other.results == self.results
        return NotImplemented

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: [{', '.join(str(r.id) for r in self.results)}]>"


class GroupResult(ResultSet):
    """The results of a group: a :class:`ResultSet` with the group's id.

    ``save()`` keeps it in the result store (for ``result_expires``), so any process
    can follow the group's progress by id with ``app.GroupResult.restore(id)``.

    Example:
        >>> res = group(add.s(i, i) for i in range(3))()  # doctest: +SKIP
        >>> res.save()  # doctest: +SKIP
        >>> app.GroupResult.restore(res.id).get(timeout=10)  # doctest: +SKIP
        [0, 2, 4]
    """

    #: the app of ``app.GroupResult`` (a subclass bound to its app, as in Celery)
    _bound_app: LiteQ | None = None

    def __init__(self, id: str | None = None, results: Iterable[Any] | None = None,
                 parent: Any = None, app: LiteQ | None = None, **_unused: Any) -> None:
        super().__init__(results if results is not None else [], app or self._bound_app)
        self.id = id
        if parent is not None:
            self.parent = parent

    @classmethod
    def bound_to(cls, app: LiteQ) -> type[GroupResult]:
        """This class with ``app`` as the app of its instances and of ``restore()``."""
        return type(cls.__name__, (cls,), {"_bound_app": app, "__module__": cls.__module__,
                                           "__qualname__": cls.__qualname__})

    @property
    def children(self) -> list[Any]:
        """The group's results (how a result graph walks through a group)."""
        return self.results

    def as_tuple(self) -> tuple[Any, Any]:
        parent = self.parent.as_tuple() if self.parent is not None else None
        return (self.id, parent), [result.as_tuple() for result in self.results]

    __reduce__ = ResultBase.__reduce__

    def save(self, backend: Transport | None = None) -> GroupResult:
        """Store the group's members by its id, for ``result_expires`` (Celery's
        ``GroupResult.save()``); saving again replaces them."""
        if not self.id:
            raise ValueError("a GroupResult needs an id to be saved")
        payload = serialization.json_dumps(self.as_tuple())
        (backend or self.backend).save_group(self.id, payload, self.app.result_expires)
        return self

    def delete(self, backend: Transport | None = None) -> None:
        """Delete the saved group (the tasks' results stay)."""
        if self.id:
            (backend or self.backend).forget_group(self.id)

    @classmethod
    def restore(cls, id: str, backend: Transport | None = None,
                app: LiteQ | None = None) -> GroupResult | None:
        """The group saved under ``id`` with :meth:`save`, or None when there is none
        (never saved, deleted, or expired).

        Example:
            >>> app.GroupResult.restore(group_id).completed_count()  # doctest: +SKIP
            3
        """
        app = app or cls._bound_app or _state.current_app()
        payload = (backend or app.backend).get_group(id)
        if payload is None:
            return None
        restored = result_from_tuple(serialization.json_loads(payload), app)
        if not isinstance(restored, GroupResult):
            raise ValueError(f"the group saved as {id!r} is not a group: {restored!r}")
        return restored

    def _label(self) -> str:
        return f"group {self.id}: "

    def __eq__(self, other: object) -> bool:
        if isinstance(other, GroupResult):
            return other.id == self.id and other.results == self.results and \
                other.parent == self.parent
        if isinstance(other, str):
            return other == self.id
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<GroupResult: {self.id} [{', '.join(str(r.id) for r in self.results)}]>"


__all__ = ["DependencyGraph", "GroupResult", "ResultBase", "ResultSet", "result_from_tuple"]
