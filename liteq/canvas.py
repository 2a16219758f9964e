"""Signatures and the canvas: ``add.s(2, 2)``, ``chain(a.s(), b.s())``, ``group(...)``.

A :class:`Signature` is a ``dict`` (task name, args, kwargs, options), as in Celery, so
it can travel inside messages. A chain's later steps ride along in the first message
and are published by the worker in the same transaction that stores each step's
result; a group is published in one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from liteq import _state
from liteq.exceptions import ImproperlyConfigured
from liteq.result import AsyncResult, GroupResult

if TYPE_CHECKING:
    from liteq.app import LiteQ


class Signature(dict[str, Any]):
    """A task call that can be passed around and sent later.

    Example:
        >>> sig = add.s(2, 2)  # doctest: +SKIP
        >>> sig.delay().get(timeout=10)  # doctest: +SKIP
        4
        >>> (add.s(2, 2) | add.s(4)).delay().get(timeout=10)  # doctest: +SKIP
        8
    """

    def __init__(
        self,
        task: Any = None,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        subtask_type: str | None = None,
        immutable: bool = False,
        app: LiteQ | None = None,
        **extra_options: Any,
    ) -> None:
        if isinstance(task, Mapping):  # rebuilding from a dict that travelled in a message
            super().__init__(task)
            self.setdefault("args", [])
            self.setdefault("kwargs", {})
            self.setdefault("options", {})
            self._app = app
            self._type = getattr(task, "_type", None)
            return
        name = task if isinstance(task, str) or task is None else task.name
        super().__init__(
            task=name,
            args=list(args or ()),
            kwargs=dict(kwargs or {}),
            options={**(options or {}), **extra_options},
            subtask_type=subtask_type,
            immutable=immutable,
        )
        self._app = app or (getattr(task, "_app", None) if not isinstance(task, str) else None)
        self._type = None if isinstance(task, str) else task

    @classmethod
    def of(cls, task: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
           immutable: bool = False) -> Signature:
        """A signature of a task object (``add.s(...)``), built without the general path."""
        sig = cls.__new__(cls)
        dict.__init__(sig, task=task.name, args=list(args), kwargs=kwargs, options={},
                      subtask_type=None, immutable=immutable)
        sig._app = task._app
        sig._type = task
        return sig

    # -- fields ----------------------------------------------------------------------

    @property
    def task(self) -> str:
        return str(self["task"])

    @property
    def args(self) -> tuple[Any, ...]:
        return tuple(self["args"])

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self["kwargs"])

    @property
    def options(self) -> dict[str, Any]:
        return self["options"]  # type: ignore[no-any-return]

    @property
    def immutable(self) -> bool:
        return bool(self.get("immutable"))

    @property
    def id(self) -> str | None:
        return self.options.get("task_id")

    @property
    def app(self) -> LiteQ:
        if self._app is None:
            self._app = _state.current_app()
        return self._app

    @property
    def type(self) -> Any:
        """The task object (looked up by name when the signature came from a message)."""
        if self._type is None:
            self._type = self.app.tasks.get(self.task)
        return self._type

    # -- building --------------------------------------------------------------------

    def clone(
        self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Signature:
        """A copy with ``args`` prepended (unless immutable) and kwargs/options merged."""
        new_args = list(self["args"])
        new_kwargs = dict(self["kwargs"])
        if not self.immutable:
            new_args = list(args or ()) + new_args
            new_kwargs.update(kwargs or {})
        clone = Signature(dict(self, args=new_args, kwargs=new_kwargs,
                               options={**self.options, **options}), app=self._app)
        clone._type = self._type
        return clone

    def set(self, immutable: bool | None = None, **options: Any) -> Signature:
        """Set options in place (``queue``, ``countdown``, ``priority``, ...)."""
        if immutable is not None:
            self["immutable"] = immutable
        self.options.update(options)
        return self

    def freeze(self, _id: str | None = None) -> AsyncResult[Any]:
        """Fix the task id now and return the result it will have."""
        task_id = self.options.setdefault("task_id", _id or str(uuid.uuid4()))
        return AsyncResult(task_id, self._app, self.task)

    def link(self, callback: Signature) -> Signature:
        """Run ``callback`` with this task's result when it succeeds."""
        self.options.setdefault("link", []).append(dict(callback))
        return callback

    def link_error(self, errback: Signature) -> Signature:
        """Run ``errback`` with this task's id when it fails."""
        self.options.setdefault("link_error", []).append(dict(errback))
        return errback

    on_error = link_error

    # -- sending ---------------------------------------------------------------------

    def apply_async(
        self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult[Any]:
        """Send the task, with extra leading ``args`` and merged kwargs and options."""
        final = self.clone(args, kwargs, **options)
        task = self.type
        if task is not None:
            return task.apply_async(final.args, final.kwargs, **final.options)  # type: ignore[no-any-return]
        return self.app.send_task(final.task, final.args, final.kwargs, **final.options)

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult[Any]:
        return self.apply_async(args, kwargs)

    def apply(
        self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult[Any]:
        """Run here and now (eager)."""
        final = self.clone(args, kwargs, **options)
        task = self.type
        if task is None:
            raise ImproperlyConfigured(f"task {self.task!r} is not registered in this process")
        return task.apply(final.args, final.kwargs, **final.options)  # type: ignore[no-any-return]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the task function directly (no message)."""
        final = self.clone(args, kwargs)
        return self.type(*final.args, **final.kwargs)

    # ``|`` builds a chain, as in Celery (not dict's merge).
    def __or__(self, other: Any) -> chain:  # type: ignore[override]
        if isinstance(other, chain):
            return chain(self, *other.tasks)
        if isinstance(other, Signature):
            return chain(self, other)
        return NotImplemented

    def __repr__(self) -> str:
        kwargs = (f"{key}={value!r}" for key, value in self["kwargs"].items())
        args = ", ".join([*map(repr, self["args"]), *kwargs])
        return f"{self.task}({args}){'!' if self.immutable else ''}"


def signature(varies: Any, *args: Any, **kwargs: Any) -> Signature:
    """A signature from a task name, a task, a signature or a dict.

    Example:
        >>> signature("tasks.add", args=(2, 2), countdown=10)
        tasks.add(2, 2)
    """
    if isinstance(varies, Mapping) and not args and not kwargs:
        if isinstance(varies, Signature):
            return varies
        subtask_type = varies.get("subtask_type")
        if subtask_type == "chain":
            return chain(*[signature(t) for t in varies["kwargs"]["tasks"]])
        if subtask_type == "group":
            return group(*[signature(t) for t in varies["kwargs"]["tasks"]])
        return Signature(varies)
    return Signature(varies, *args, **kwargs)


maybe_signature = signature
subtask = signature


class chain(Signature):
    """Tasks run one after another, each receiving the previous one's result.

    Example:
        >>> chain(add.s(2, 2), add.s(4), add.s(8))().get(timeout=10)  # doctest: +SKIP
        16
    """

    def __init__(self, *tasks: Any, app: LiteQ | None = None, **options: Any) -> None:
        if len(tasks) == 1 and not isinstance(tasks[0], Mapping):
            tasks = tuple(tasks[0])
        steps = [signature(t) for t in tasks]
        if any(isinstance(step, group) for step in steps):
            raise ImproperlyConfigured("a group inside a chain (a chord) is not supported yet")
        super().__init__("liteq.chain", (), {"tasks": steps}, options, subtask_type="chain",
                         app=app or next((s._app for s in steps if s._app), None))

    @property
    def tasks(self) -> list[Signature]:
        return list(self["kwargs"]["tasks"])

    def apply_async(
        self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult[Any]:
        steps = [step.clone() for step in self.tasks]
        if not steps:
            raise ImproperlyConfigured("an empty chain has nothing to run")
        for step in steps:
            step.freeze()
        first, rest = steps[0], steps[1:]
        if rest:
            first.options["chain"] = [dict(step) for step in rest]
        first.apply_async(args, kwargs, **{**self.options, **options})
        return AsyncResult(steps[-1].id or "", self.app, steps[-1].task)

    def apply(
        self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult[Any]:
        result: AsyncResult[Any] | None = None
        for index, step in enumerate(self.tasks):
            step_args = args if index == 0 else (result.get(),) if result is not None else ()
            result = step.apply(step_args, kwargs if index == 0 else None, **options)
        assert result is not None
        return result

    def __call__(self, *args: Any, **kwargs: Any) -> AsyncResult[Any]:
        return self.apply_async(args, kwargs)

    def __or__(self, other: Any) -> chain:  # type: ignore[override]
        if isinstance(other, chain):
            return chain(*self.tasks, *other.tasks)
        if isinstance(other, Signature):
            return chain(*self.tasks, other)
        return NotImplemented

    def __repr__(self) -> str:
        return " | ".join(repr(step) for step in self.tasks)


class group(Signature):
    """Tasks run in parallel; sending the group publishes all of them in one transaction.

    Example:
        >>> group(add.s(i, i) for i in range(10))().get(timeout=10)  # doctest: +SKIP
        [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    """

    def __init__(self, *tasks: Any, app: LiteQ | None = None, **options: Any) -> None:
        if len(tasks) == 1 and not isinstance(tasks[0], Mapping):
            tasks = tuple(tasks[0])
        steps = [signature(t) for t in tasks]
        super().__init__("liteq.group", (), {"tasks": steps}, options, subtask_type="group",
                         app=app or next((s._app for s in steps if s._app), None))

    @property
    def tasks(self) -> list[Signature]:
        return list(self["kwargs"]["tasks"])

    # A group's results are a GroupResult, as in Celery: it narrows the return type.
    def apply_async(  # type: ignore[override]
        self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> GroupResult:
        group_id = options.pop("group_id", None) or str(uuid.uuid4())
        app = self.app
        extra = {**self.options, **options}
        steps = self.tasks
        if args or kwargs or extra:
            steps = [step.clone(args, kwargs, **extra) for step in steps]
        if not steps:
            return GroupResult(group_id, [], app=app)
        first = steps[0]
        if all(step["task"] == first["task"] and step["options"] == first["options"]
               for step in steps):
            # One task, one set of options: resolve them once, publish in one transaction.
            ids, ignored = app.publish_calls(
                first.task, [(step["args"], step["kwargs"]) for step in steps],
                task=first.type, group_id=group_id, **first.options,
            )
            results: list[AsyncResult[Any]] = [
                AsyncResult(task_id, app, first.task, ignored=ignored) for task_id in ids
            ]
            return GroupResult(group_id, results, app=app)
        messages = [app.build_message(step.task, step.args, step.kwargs, task=step.type,
                                      group_id=group_id, **step.options) for step in steps]
        app.publish(messages)
        results = [AsyncResult(m.id, app, m.task, ignored=m.ignore_result) for m in messages]
        return GroupResult(group_id, results, app=app)

    def apply(  # type: ignore[override]
        self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> GroupResult:
        results = [step.apply(args, kwargs, **options) for step in self.tasks]
        return GroupResult(str(uuid.uuid4()), results, app=self._app)

    def __call__(self, *args: Any, **kwargs: Any) -> GroupResult:
        return self.apply_async(args, kwargs)

    def __repr__(self) -> str:
        return f"group([{', '.join(repr(step) for step in self.tasks)}])"


__all__ = ["Signature", "chain", "group", "maybe_signature", "signature", "subtask"]
