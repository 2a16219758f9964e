"""Many calls of one task in few messages: ``task.map``, ``task.starmap``, ``task.chunks``.

As in Celery, :class:`xmap` and :class:`xstarmap` are one message that calls the task's
function for every item, in the worker that takes it (``liteq.map``,
``liteq.starmap``); :class:`chunks` splits the items into parts of ``n`` and sends a
group of one ``xstarmap`` per part, so its result is a list of lists.

Example:
    >>> add.chunks(zip(range(10), range(10)), 3)().get(timeout=10)  # doctest: +SKIP
    [[0, 2, 4], [6, 8, 10], [12, 14, 16], [18]]
    >>> add.starmap([(1, 2), (3, 4)]).delay().get(timeout=10)  # doctest: +SKIP
    [3, 7]
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from typing import TYPE_CHECKING, Any

from liteq.canvas import Signature, group, signature
from liteq.exceptions import ImproperlyConfigured
from liteq.signatures import register_kind

if TYPE_CHECKING:
    from liteq.app import LiteQ
    from liteq.task import Task

#: The builtin tasks that run a map in a worker.
MAP, STARMAP = "liteq.map", "liteq.starmap"


class _basemap(Signature):
    _task_name = MAP

    def __init__(self, task: Any, it: Iterable[Any], app: LiteQ | None = None,
                 **options: Any) -> None:
        task = signature(task, app=app)
        # Immutable, as in Celery: a map in a chain does not take the previous result.
        super().__init__(self._task_name, (), {"task": dict(task), "it": list(it)}, options,
                         immutable=True, app=app or task._app)


class xmap(_basemap):
    """``task.map(items)``: one message that returns ``[task(item) for item in items]``."""

    _task_name = MAP


class xstarmap(_basemap):
    """``task.starmap(items)``: one message that returns ``[task(*item) for item in
    items]``."""

    _task_name = STARMAP


class chunks(Signature):
    """``task.chunks(items, n)``: the argument tuples ``items`` in parts of ``n``, each
    part one ``xstarmap`` message; sent as a group, so ``get()`` gives a list of lists.

    Example:
        >>> add.chunks(zip(range(100), range(100)), 10).group()  # doctest: +SKIP
    """

    def __init__(self, task: Any, it: Iterable[Any], n: int, app: LiteQ | None = None,
                 **options: Any) -> None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ImproperlyConfigured(f"chunks() needs a chunk size of at least 1, not {n!r}")
        task = signature(task, app=app)
        super().__init__("liteq.chunks", (), {"task": dict(task), "it": list(it), "n": n},
                         options, subtask_type="chunks", immutable=True,
                         app=app or task._app)

    def group(self) -> group:
        """The group of ``xstarmap`` signatures, one per chunk."""
        task = signature(self["kwargs"]["task"], app=self._app)
        parts = _split(iter(self["kwargs"]["it"]), int(self["kwargs"]["n"]))
        return group((xstarmap(task, part, app=self._app) for part in parts),
                     app=self._app, **self.options)

    def unroll(self) -> Signature:
        return self.group()

    def apply_async(
        self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        return self.group().apply_async(args, kwargs, **options)

    def apply(
        self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        return self.group().apply(args, kwargs, **options)

    def freeze(self, _id: str | None = None) -> Any:
        raise ImproperlyConfigured("freeze the group of the chunks: sig.group().freeze()")

    def build(
        self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        return self.group().build(args, kwargs, **options)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.apply_async(args, kwargs)


register_kind("chunks", lambda d, app: chunks(
    d["kwargs"]["task"], d["kwargs"]["it"], d["kwargs"]["n"], app=app,
    **(d.get("options") or {})))


def _split(it: Iterator[Any], n: int) -> Iterator[list[Any]]:
    while True:
        part = list(islice(it, n))
        if not part:
            return
        yield part


def register_builtins(app: LiteQ, base: type[Task[Any, Any]]) -> None:
    """The tasks that run ``map`` and ``starmap`` messages, in every app (made from
    ``base``, liteq's ``Task``, never the app's ``task_cls``)."""

    def find(task: dict[str, Any]) -> Any:
        return app.task_finder(import_on_demand=True)(str(task["task"]))

    # The task's function is called here, directly, for each item (as Celery does).
    @app.task(name=MAP, base=base)
    def run_map(task: dict[str, Any], it: list[Any]) -> list[Any]:
        function = find(task)
        return [function(item) for item in it]

    @app.task(name=STARMAP, base=base)
    def run_starmap(task: dict[str, Any], it: list[Any]) -> list[Any]:
        function = find(task)
        return [function(*item) for item in it]


__all__ = ["MAP", "STARMAP", "chunks", "register_builtins", "xmap", "xstarmap"]
