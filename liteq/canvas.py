"""Signatures and the canvas: ``add.s(2, 2)``, ``chain(a.s(), b.s())``, ``group(...)``,
``chord(header)(body)``.

A :class:`Signature` is a ``dict`` (task name, args, kwargs, options), as in Celery, so
it can travel inside messages. A chain's later steps ride along in the first message
and are published by the worker in the same transaction that stores each step's
result; a group is published in one transaction.

A chord's header is a group whose messages carry the body. When a header task ends
(stored as SUCCESS, FAILURE or REVOKED), the worker publishes a small
``liteq.chord_unlock`` message in the same transaction as the result; the unlock counts
the task in the result store (:meth:`Transport.chord_part_done`), and the one that
completes the count sends the body with the header's results in order, or records the
body as FAILURE with :class:`ChordError` when one of them failed (``liteq.chords``).
No process waits or polls for a chord.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from liteq import _state
from liteq.exceptions import ChordError, ImproperlyConfigured
from liteq.result import AsyncResult, EagerResult, GroupResult
from liteq.states import FAILURE, REVOKED

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


def signature(varies: Any, *args: Any, app: LiteQ | None = None, **kwargs: Any) -> Signature:
    """A signature from a task name, a task, a signature or a dict (one that travelled
    in a message becomes a chain, group or chord again).

    Example:
        >>> signature("tasks.add", args=(2, 2), countdown=10)
        tasks.add(2, 2)
    """
    if isinstance(varies, Mapping) and not args and not kwargs:
        if isinstance(varies, Signature):
            return varies
        subtask_type = varies.get("subtask_type")
        options = varies.get("options") or {}
        if subtask_type == "chain":
            return chain(*[signature(t, app=app) for t in varies["kwargs"]["tasks"]],
                         app=app, **options)
        if subtask_type == "group":
            return group(*[signature(t, app=app) for t in varies["kwargs"]["tasks"]],
                         app=app, **options)
        if subtask_type == "chord":
            body = varies["kwargs"].get("body")
            return chord([signature(t, app=app) for t in varies["kwargs"]["header"]],
                         signature(body, app=app) if body is not None else None,
                         app=app, **options)
        return Signature(varies, app=app)
    sig = Signature(varies, *args, **kwargs)
    sig._app = app or sig._app
    return sig


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
        steps = _upgrade_groups([signature(t) for t in tasks])
        super().__init__("liteq.chain", (), {"tasks": steps}, options, subtask_type="chain",
                         app=app or next((s._app for s in steps if s._app), None))

    @property
    def tasks(self) -> list[Signature]:
        return list(self["kwargs"]["tasks"])

    def apply_async(
        self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult[Any]:
        steps = [_copy(step) for step in self.tasks]
        if not steps:
            raise ImproperlyConfigured("an empty chain has nothing to run")
        first, rest = steps[0], steps[1:]
        merged = {**self.options, **options}
        if isinstance(first, group):  # a chain of one group is that group
            return first.apply_async(args, kwargs, **merged)  # type: ignore[return-value]
        for step in rest:
            step.freeze()
        if isinstance(first, chord):  # a group led the chain: the rest follows its body
            return first.apply_async(args, kwargs, body=_chained(first.body, rest), **merged)
        first.freeze()
        if rest:
            first.options["chain"] = [dict(step) for step in rest]
        first.apply_async(args, kwargs, **merged)
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


class chord(Signature):
    """A group whose results, in header order, are passed to one more task (the body)
    once every task of the header has finished.

    The body runs once. When a header task fails or is revoked, the body does not run:
    its result is FAILURE with :class:`~liteq.exceptions.ChordError`, and its
    ``link_error`` callbacks are sent.

    Example:
        >>> chord(add.s(i, i) for i in range(10))(tsum.s()).get(timeout=10)  # doctest: +SKIP
        90
        >>> (group(add.s(i, i) for i in range(10)) | tsum.s())().get(timeout=10)  # doctest: +SKIP
        90
    """

    def __init__(self, header: Any, body: Any = None, app: LiteQ | None = None,
                 **options: Any) -> None:
        if isinstance(header, group):
            steps = header.tasks
        else:
            steps = [signature(step) for step in
                     ([header] if isinstance(header, Mapping) else header)]
        for step in steps:
            if step.get("subtask_type") in ("chain", "group", "chord"):
                raise ImproperlyConfigured(
                    f"a chord's header takes task signatures, not a {step['subtask_type']} "
                    f"({step!r})"
                )
        body = signature(body) if body is not None else None
        super().__init__("liteq.chord", (), {"header": steps, "body": body}, options,
                         subtask_type="chord",
                         app=app or next((s._app for s in [*steps, body] if s and s._app), None))

    @property
    def header(self) -> list[Signature]:
        return list(self["kwargs"]["header"])

    @property
    def body(self) -> Signature | None:
        body = self["kwargs"].get("body")
        return None if body is None else signature(body)

    def _body_or(self, body: Any) -> Signature:
        """The body given now, else the chord's own."""
        found = signature(body) if body is not None else self.body
        if found is None:
            raise ImproperlyConfigured(
                "a chord needs a body: chord(header)(callback) or chord(header, callback)"
            )
        return found

    # A chord's result is its body's (an AsyncResult whose ``parent`` is the header's
    # GroupResult), as in Celery.
    def apply_async(
        self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
        body: Any = None, **options: Any,
    ) -> AsyncResult[Any]:
        body = self._body_or(body)
        app = self.app
        if app.conf.task_always_eager:
            for option in ("task_id", "group_id"):  # ids of a sent chord, not of each task
                options.pop(option, None)
            return self.apply(args, kwargs, body=body, **options)
        body = _copy(body)
        result = _freeze(body, options.pop("task_id", None))
        group_id = options.pop("group_id", None) or str(uuid.uuid4())
        extra = {**self.options, **options}
        steps = [step.clone(args, kwargs, **extra) for step in self.header]
        if not steps:  # nothing to wait for: the body gets an empty list now, as in Celery
            body.apply_async(([],))
            result.parent = GroupResult(group_id, [], app=app)
            return result
        spec = {"id": group_id, "size": len(steps), "body": dict(body)}
        # Header tasks always store their results: the body is made of them.
        messages = [app.build_message(step.task, step.args, step.kwargs, task=step.type,
                                      **{**step.options, "group_id": group_id,
                                         "group_index": index, "chord": spec,
                                         "ignore_result": False})
                    for index, step in enumerate(steps)]
        app.publish(messages)
        result.parent = GroupResult(group_id, [AsyncResult(m.id, app, m.task) for m in messages],
                                    app=app)
        return result

    def apply(
        self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
        body: Any = None, **options: Any,
    ) -> AsyncResult[Any]:
        """Run the header and then the body here and now (eager)."""
        body = self._body_or(body)
        header = group(*self.header, app=self._app).apply(args, kwargs, **options)
        for member in header:
            if not member.successful():
                error = dependency_error(member)
                last = body.tasks[-1] if isinstance(body, chain) else body
                result: AsyncResult[Any] = EagerResult(
                    last.id or str(uuid.uuid4()), error, FAILURE,
                    f"{type(error).__name__}: {error}", app=self._app, task_name=last.task)
                break
        else:
            result = body.apply(([member.get(disable_sync_subtasks=False) for member in header],))
        result.parent = header
        return result

    def __call__(self, body: Any = None, **options: Any) -> AsyncResult[Any]:
        return self.apply_async(body=body, **options)

    def __or__(self, other: Any) -> chain:  # type: ignore[override]
        return chain(self, other)

    def __repr__(self) -> str:
        header = ", ".join(repr(step) for step in self.header)
        return f"chord([{header}], {self.body!r})"


def _upgrade_groups(steps: list[Signature]) -> list[Signature]:
    """A chain's group followed by another step becomes a chord (as in Celery)."""
    upgraded: list[Signature] = []
    for index, step in enumerate(steps):
        if isinstance(step, group):
            if index + 1 == len(steps):
                if index == 0:  # a chain of just a group
                    upgraded.append(step)
                    continue
                raise ImproperlyConfigured(
                    "a group can end a chain only on its own; add a step after it (a chord) "
                    "or send it from a task"
                )
            step = chord(step.tasks, app=step._app)
        if isinstance(step, chord) and index > 0:
            raise ImproperlyConfigured(
                "a group or chord runs only at the start of a chain: send it from a task "
                "of the chain instead"
            )
        upgraded.append(step)
    if len(upgraded) > 1 and isinstance(upgraded[0], chord) and upgraded[0].body is None:
        first = chord(upgraded[0].header, upgraded[1], app=upgraded[0]._app,
                      **upgraded[0].options)
        upgraded = [first, *upgraded[2:]]
    return upgraded


def _copy(sig: Signature) -> Signature:
    """A copy to freeze and send, keeping what kind of signature it is."""
    if isinstance(sig, chain):
        return chain(*[_copy(step) for step in sig.tasks], app=sig._app, **sig.options)
    if isinstance(sig, group):
        return group(*[step.clone() for step in sig.tasks], app=sig._app, **sig.options)
    if isinstance(sig, chord):
        return chord([step.clone() for step in sig.header],
                     _copy(sig.body) if sig.body is not None else None, app=sig._app,
                     **sig.options)
    return sig.clone()


def _freeze(body: Signature, task_id: str | None) -> AsyncResult[Any]:
    """Fix the ids of a chord's body now; the result is its last task's."""
    steps = body.tasks if isinstance(body, chain) else [body]
    for step in steps[:-1]:
        step.freeze()
    return steps[-1].freeze(task_id)


def _chained(body: Signature | None, rest: list[Signature]) -> Signature:
    if body is None:
        raise ImproperlyConfigured("a chord needs a body")
    return chain(body, *rest) if rest else body


def dependency_error(member: AsyncResult[Any]) -> ChordError:
    state = member.state
    if state in (FAILURE, REVOKED):
        exc = member.result
        return ChordError(f"Dependency {member.id} raised {exc!r}")
    return ChordError(f"Dependency {member.id} has no result ({state})")


__all__ = [
    "Signature",
    "chain",
    "chord",
    "group",
    "maybe_signature",
    "signature",
    "subtask",
]
