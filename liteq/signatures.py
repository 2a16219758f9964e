"""Signatures: a task call that can be passed around and sent later (``add.s(2, 2)``).

A :class:`Signature` is a ``dict`` (task name, args, kwargs, options), as in Celery, so
it can travel inside messages; :func:`signature` turns such a dict back into a
signature of its kind. The kinds that hold other signatures (chain, group, chord) live
in :mod:`liteq.canvas` and register themselves here by their ``subtask_type``, as
Celery's ``Signature.register_type`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from liteq import _state
from liteq.exceptions import ImproperlyConfigured
from liteq.messages import Message, new_id
from liteq.result import AsyncResult

if TYPE_CHECKING:
    from liteq.app import LiteQ

#: Options about how to publish, not about the message: kept out of built messages.
PUBLISH_OPTIONS = ("retry", "retry_policy", "connection")

#: Signature kinds by ``subtask_type``: how a dict from a message becomes one again.
_KINDS: dict[str, Callable[[Mapping[str, Any], LiteQ | None], Signature]] = {}


def register_kind(name: str, from_dict: Callable[[Mapping[str, Any], LiteQ | None],
                                                 Signature]) -> None:
    """Make dicts of ``subtask_type`` ``name`` rebuild through ``from_dict``."""
    _KINDS[name] = from_dict


class Signature(dict[str, Any]):
    """A task call that can be passed around and sent later.

    Example:
        >>> sig = add.s(2, 2)  # doctest: +SKIP
        >>> sig.delay().get(timeout=10)  # doctest: +SKIP
        4
        >>> (add.s(2, 2) | add.s(4)).delay().get(timeout=10)  # doctest: +SKIP
        8
        >>> ~add.s(2, 2)  # send and wait, as ``sig.delay().get()``  # doctest: +SKIP
        4
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
            self["options"] = dict(self.get("options") or {})
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

    def freeze(self, _id: str | None = None) -> Any:
        """Fix the task id now (``_id``, else the one fixed before, else a new one) and
        return the result it will have: ``sig.freeze().id`` is the id it is sent with."""
        if _id is not None:
            self.options["task_id"] = _id
        task_id = self.options.setdefault("task_id", new_id())
        return AsyncResult(task_id, self._app, self.task)

    def unroll(self) -> Signature:
        """What this signature stands for inside a chain, group or chord: itself, or
        the group a ``chunks`` signature sends."""
        return self

    def link(self, callback: Signature) -> Signature:
        """Run ``callback`` with this task's result when it succeeds."""
        self.options.setdefault("link", []).append(dict(callback))
        return callback

    def link_error(self, errback: Signature) -> Signature:
        """Run ``errback`` when this task fails."""
        self.options.setdefault("link_error", []).append(dict(errback))
        return errback

    def on_error(self, errback: Signature) -> Signature:
        """:meth:`link_error` that returns this signature, not the errback, so the call
        chains: ``add.s(2, 2).on_error(log_error.s()).delay()`` sends ``add``."""
        self.link_error(errback)
        return self

    def build(
        self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> tuple[list[Message], Any]:
        """The messages that sending this signature publishes, and its result.

        Ids frozen before are kept, so the result is the one :meth:`freeze` gave.
        """
        final = self.clone(args, kwargs, **options)
        for option in PUBLISH_OPTIONS:
            final.options.pop(option, None)
        app = self.app
        message = app.producer.build_message(final.task, final.args, final.kwargs,
                                             task=final.type, **final.options)
        return [message], AsyncResult(message.id, app, final.task,
                                      ignored=message.ignore_result)

    # -- sending ---------------------------------------------------------------------

    def apply_async(
        self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        """Send the task, with extra leading ``args`` and merged kwargs and options."""
        final = self.clone(args, kwargs, **options)
        task = self.type
        if task is not None:
            return task.apply_async(final.args, final.kwargs, **final.options)
        return self.app.send_task(final.task, final.args, final.kwargs, **final.options)

    def delay(self, *args: Any, **kwargs: Any) -> Any:
        return self.apply_async(args, kwargs)

    def apply(
        self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        """Run here and now (eager), with what it links to."""
        final = self.clone(args, kwargs, **options)
        task = self.type
        if task is None:
            raise ImproperlyConfigured(f"task {self.task!r} is not registered in this process")
        return task.apply(final.args, final.kwargs, **final.options)

    def _publish(self, options: dict[str, Any], args: Iterable[Any] | None,
                 kwargs: Mapping[str, Any] | None) -> Any:
        """Build and publish in one transaction (a composite signature's apply_async)."""
        publish = {key: options.pop(key) for key in PUBLISH_OPTIONS if key in options}
        messages, result = self.build(args, kwargs, **options)
        if messages:
            self.app.producer.publish(messages, **publish)
        return result

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the task function directly (no message)."""
        final = self.clone(args, kwargs)
        return self.type(*final.args, **final.kwargs)

    def __invert__(self) -> Any:
        """``~sig``: send it and wait for its value."""
        return self.apply_async().get()

    # ``|`` builds a chain, as in Celery (not dict's merge); nested chains flatten.
    def __or__(self, other: Any) -> Signature:  # type: ignore[override]
        if isinstance(other, Signature):
            return _KINDS["chain"]({"kwargs": {"tasks": [self, other]}}, self._app)
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
            if app is not None and varies._app is None:
                varies._app = app
            return varies
        kind = _KINDS.get(str(varies.get("subtask_type")))
        if kind is not None:
            return kind(varies, app)
        return Signature(varies, app=app)
    sig = Signature(varies, *args, **kwargs)
    sig._app = app or sig._app
    return sig


maybe_signature = signature
subtask = signature


__all__ = ["PUBLISH_OPTIONS", "Signature", "maybe_signature", "register_kind", "signature",
           "subtask"]
