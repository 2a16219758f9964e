"""The current app and the running task, as Celery's ``celery._state`` has them.

``get_current_app()`` is the app set in this context (a ``ContextVar``), or else the
app most recently created with ``set_as_current=True`` (so threads a web server starts
see it too). ``get_current_task()`` is the task running in this context (None outside
tasks). ``current_app`` and ``current_task`` are proxies to them, importable from
``liteq`` as from ``celery``. Nothing here connects to anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from liteq.exceptions import ImproperlyConfigured

_current: ContextVar[Any] = ContextVar("liteq_current_app", default=None)
#: The request of the task executing in this context (None outside tasks).
current_request: ContextVar[Any] = ContextVar("liteq_current_request", default=None)
#: The tasks running in this context, innermost last (a task calling another directly
#: stacks it on top).
#: ``allow_join_result()`` / ``denied_join_result()`` in force: True allows waiting for a
#: result inside a task, False refuses it anywhere, None (the default) refuses it in tasks.
join_policy: ContextVar[bool | None] = ContextVar("liteq_join_policy", default=None)
_task_stack: ContextVar[tuple[Any, ...]] = ContextVar("liteq_task_stack", default=())
_fallback: list[Any] = []  # the last app created as current, for contexts that set none


def set_current_app(app: Any) -> None:
    """Make ``app`` the current app of this context and the fallback of others."""
    _current.set(app)
    _fallback[:] = [app]


def get_current_app() -> Any:
    """The current :class:`~liteq.app.LiteQ` app.

    Raises:
        ImproperlyConfigured: no app was created yet.
    """
    app = _current.get()
    if app is None and _fallback:
        app = _fallback[0]
    if app is None:
        raise ImproperlyConfigured(
            "no liteq app: create one with LiteQ('name', broker='sqlite:///tasks.db')"
        )
    return app


def reset_current_app() -> None:
    """Forget the current app (test fixtures use this between tests)."""
    _current.set(None)
    _fallback.clear()


@contextmanager
def current_app_as(app: Any) -> Iterator[None]:
    """Make ``app`` the current app in the block, then put the previous one back
    (test fixtures; ``app`` may be a stand-in that refuses use)."""
    previous, fallback = _current.get(), list(_fallback)
    set_current_app(app)
    try:
        yield
    finally:
        _current.set(previous)
        _fallback[:] = fallback


def join_will_block() -> bool:
    """Whether waiting for a result here is refused (Celery's ``task_join_will_block``):
    inside a running task unless ``allow_join_result()`` is in force, or anywhere in a
    ``denied_join_result()`` block."""
    policy = join_policy.get()
    if policy is None:
        return current_request.get() is not None
    return not policy


def push_current_task(task: Any) -> None:
    """Mark ``task`` as running in this context (``Task`` does it around each run)."""
    _task_stack.set((*_task_stack.get(), task))


def pop_current_task() -> None:
    """Undo the last :func:`push_current_task` of this context."""
    _task_stack.set(_task_stack.get()[:-1])


def get_current_task() -> Any:
    """The task running in this context, or None outside tasks.

    Example:
        >>> get_current_task() is None
        True
    """
    stack = _task_stack.get()
    return stack[-1] if stack else None


def get_current_worker_task() -> Any:
    """The innermost running task that a worker (or eager mode) started, skipping tasks
    called directly as functions; None outside tasks."""
    for task in reversed(_task_stack.get()):
        if not task.request.called_directly:
            return task
    return None


class Proxy:
    """Stands for the object ``get()`` returns at each use, as Celery's ``Proxy``.

    Attribute access, truth, equality and ``repr`` go to the current object;
    ``_get_current_object()`` returns it.
    """

    __slots__ = ("_Proxy__get",)

    def __init__(self, get: Callable[[], Any]) -> None:
        object.__setattr__(self, "_Proxy__get", get)

    def _get_current_object(self) -> Any:
        return self.__get()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__get(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.__get(), name, value)

    def __bool__(self) -> bool:
        return bool(self.__get())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Proxy):
            other = other._get_current_object()
        return bool(self.__get() == other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None  # type: ignore[assignment]  # equality follows a changing object

    def __repr__(self) -> str:
        return repr(self.__get())

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__get()(*args, **kwargs)


class _AppProxy(Proxy):
    """``current_app``. Calling it returns the app itself: liteq's own modules spell
    ``_state.current_app()`` (an app is not callable, so nothing is lost)."""

    __slots__ = ()

    def __call__(self) -> Any:
        return self._get_current_object()


#: The current app: ``from liteq import current_app``; ``current_app.conf``.
current_app: Any = _AppProxy(get_current_app)
#: The running task: ``current_task.request.id`` inside a task; falsy outside.
current_task: Any = Proxy(get_current_task)

__all__ = [
    "Proxy",
    "current_app",
    "current_app_as",
    "current_request",
    "current_task",
    "get_current_app",
    "get_current_task",
    "get_current_worker_task",
    "join_policy",
    "join_will_block",
    "pop_current_task",
    "push_current_task",
    "reset_current_app",
    "set_current_app",
]
