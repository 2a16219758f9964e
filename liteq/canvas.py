"""Signatures and the canvas: ``add.s(2, 2)``, ``chain(a.s(), b.s())``, ``group(...)``,
``chord(header)(body)``.

A :class:`~liteq.signatures.Signature` is a ``dict`` (task name, args, kwargs, options),
as in Celery, so it can travel inside messages (``liteq.signatures``); the kinds that
hold other signatures are here. Every kind of signature can :meth:`~Signature.freeze`
(fix its task ids now and return the result it will have) and :meth:`~Signature.build`
(the messages sending it publishes, ids frozen), so the client and a worker that sends
a chain's next step build the same messages, and the handle the client holds is right.

A chain's later steps ride along in the first message (its ``chain`` option) and are
published by the worker in the same transaction that stores each step's result; the
next step may be a task, a group or a chord. A group is published in one transaction.
Nested chains are flattened, and a group followed by another step becomes a chord whose
body is that step, as in Celery.

A chord's header is a group whose messages carry the body. When a header task ends
(stored as SUCCESS, FAILURE or REVOKED), the worker publishes a small
``liteq.chord_unlock`` message in the same transaction as the result; the unlock counts
the task in the result store (:meth:`Transport.chord_part_done`), and the one that
completes the count sends the body with the header's results in order, or records the
body as FAILURE with :class:`ChordError` when one of them failed (``liteq.chords``).
No process waits or polls for a chord.

Eager mode (``task_always_eager``, or ``apply()`` on any signature) runs the whole
canvas here, task by task, through :meth:`liteq.task.Task.apply`; nothing is published.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from liteq.exceptions import ChordError, ImproperlyConfigured
from liteq.messages import Message, new_id
from liteq.result import AsyncResult, EagerResult, GroupResult
from liteq.signatures import (
    PUBLISH_OPTIONS,
    Signature,
    maybe_signature,
    register_kind,
    signature,
    subtask,
)
from liteq.states import FAILURE, REVOKED

if TYPE_CHECKING:
    from liteq.app import LiteQ

#: The task that counts a finished header task and sends a chord's body
#: (registered in every app by :mod:`liteq.chords`).
CHORD_UNLOCK = "liteq.chord_unlock"
#: The body given to a group that replaces a task: it returns the group's results.
ACCUMULATE = "liteq.accumulate"


class chain(Signature):
    """Tasks run one after another, each receiving the previous one's result.

    Chains given as steps are flattened; the result is the last step's, and its
    ``parent`` is the step before (``res.parent.parent`` ... back to the first).

    Example:
        >>> chain(add.s(2, 2), add.s(4), add.s(8))().get(timeout=10)  # doctest: +SKIP
        16
    """

    def __init__(self, *tasks: Any, app: LiteQ | None = None, **options: Any) -> None:
        if len(tasks) == 1 and not isinstance(tasks[0], Mapping):
            tasks = tuple(tasks[0])
        steps = _upgrade_groups(_flatten([signature(t, app=app).unroll() for t in tasks]))
        super().__init__("liteq.chain", (), {"tasks": steps}, options, subtask_type="chain",
                         app=app or next((s._app for s in steps if s._app), None))

    @property
    def tasks(self) -> list[Signature]:
        return list(self["kwargs"]["tasks"])

    def freeze(self, _id: str | None = None) -> Any:
        """Fix every step's ids now; the result is the last step's (``_id`` is its id),
        each result's ``parent`` the one of the step before."""
        return _freeze_steps(self.tasks, _id)

    def build(
        self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> tuple[list[Message], Any]:
        steps = [deep_copy(step) for step in self.tasks]
        if not steps:
            raise ImproperlyConfigured("an empty chain has nothing to run")
        merged = {**self.options, **options}
        _spread_links(steps, merged)
        task_id = merged.pop("task_id", None)
        result = _freeze_steps(steps, task_id)
        first = with_chain(steps[0], steps[1:])
        messages, _ = first.build(args, kwargs, **merged)
        return messages, result

    def apply_async(
        self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        if self.app.conf.task_always_eager:
            return self.apply(args, kwargs, **options)
        return self._publish(options, args, kwargs)

    def apply(
        self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        """Run the steps here, one after another; a failed step ends the chain (its
        result is returned, so ``get()`` raises its error)."""
        steps = [deep_copy(step) for step in self.tasks]
        if not steps:
            raise ImproperlyConfigured("an empty chain has nothing to run")
        for option in PUBLISH_OPTIONS:
            options.pop(option, None)
        merged = {**self.options, **options}
        _spread_links(steps, merged)
        if "task_id" in merged:
            steps[-1].freeze(merged.pop("task_id"))
        result: Any = None
        for index, step in enumerate(steps):
            if index == 0:
                current = step.apply(args, kwargs, **merged)
            else:
                current = step.apply((result.get(propagate=False,
                                                 disable_sync_subtasks=False),))
            result = attach_parent(current, result)
            if _failed(result):
                break
        return result

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.apply_async(args, kwargs)

    def __or__(self, other: Any) -> chain:  # type: ignore[override]
        if isinstance(other, chain):
            return chain(*self.tasks, *other.tasks, app=self._app)
        if isinstance(other, Signature):
            return chain(*self.tasks, other, app=self._app)
        return NotImplemented

    def __repr__(self) -> str:
        return " | ".join(repr(step) for step in self.tasks)


class group(Signature):
    """Tasks run in parallel; sending the group publishes all of them in one transaction.

    Members may be chains; nested groups are flattened, as in Celery.

    Example:
        >>> group(add.s(i, i) for i in range(10))().get(timeout=10)  # doctest: +SKIP
        [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    """

    def __init__(self, *tasks: Any, app: LiteQ | None = None, **options: Any) -> None:
        if len(tasks) == 1 and not isinstance(tasks[0], Mapping):
            tasks = tuple(tasks[0])
        steps: list[Signature] = []
        for task in tasks:
            step = signature(task, app=app).unroll()
            steps.extend(step.tasks if isinstance(step, group) else [step])
        super().__init__("liteq.group", (), {"tasks": steps}, options, subtask_type="group",
                         app=app or next((s._app for s in steps if s._app), None))

    @property
    def tasks(self) -> list[Signature]:
        return list(self["kwargs"]["tasks"])

    def freeze(self, _id: str | None = None) -> Any:
        """Fix the group id and every member's ids now; returns the GroupResult."""
        if _id is not None:
            self.options["group_id"] = _id
        group_id = self.options.setdefault("group_id", new_id())
        results = []
        for member in self.tasks:
            if not isinstance(member, chain):
                member.options["group_id"] = group_id
            results.append(member.freeze())
        return GroupResult(group_id, results, app=self._app)

    def build(
        self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> tuple[list[Message], Any]:
        extra = {**self.options, **options}
        group_id = extra.pop("group_id", None) or new_id()
        extra.pop("task_id", None)
        messages: list[Message] = []
        results = []
        for member in self.tasks:
            if not isinstance(member, chain):
                extra["group_id"] = group_id
            else:
                extra.pop("group_id", None)
            built, result = member.build(args, kwargs, **extra)
            messages.extend(built)
            results.append(result)
        return messages, GroupResult(group_id, results, app=self._app)

    # A group's results are a GroupResult, as in Celery.
    def apply_async(
        self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        app = self.app
        if app.conf.task_always_eager:
            return self.apply(args, kwargs, **options)
        steps = self.tasks
        extra = {**self.options, **options}
        first = steps[0] if steps else None
        if first is not None and not isinstance(first, (chain, group, chord)) and all(
                step["task"] == first["task"] and step["options"] == first["options"]
                and "task_id" not in step["options"] for step in steps):
            # One task, one set of options: resolve them once, publish in one transaction.
            group_id = extra.pop("group_id", None) or new_id()
            if args or kwargs:  # partial arguments given now: each member takes them
                final = [step.clone(args, kwargs, **extra) for step in steps]
                calls = [(step["args"], step["kwargs"]) for step in final]
                step_options = final[0].options
            else:  # as the clones would be, without copying every signature
                calls = [(step["args"], step["kwargs"]) for step in steps]
                step_options = {**first.options, **extra}
            ids, ignored = app.producer.publish_calls(
                first.task, calls, task=first.type, group_id=group_id, **step_options,
            )
            return GroupResult(group_id, [AsyncResult(task_id, app, first.task, ignored=ignored)
                                          for task_id in ids], app=app)
        return self._publish(options, args, kwargs)

    def apply(
        self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        for option in PUBLISH_OPTIONS:
            options.pop(option, None)
        extra = {**self.options, **options}
        group_id = extra.pop("group_id", None) or new_id()
        extra.pop("task_id", None)
        results = [member.apply(args, kwargs, **extra) if isinstance(member, chain)
                   else member.apply(args, kwargs, **extra, group_id=group_id)
                   for member in self.tasks]
        return GroupResult(group_id, results, app=self._app)

    def skew(self, start: float = 1.0, stop: float | None = None,
             step: float = 1.0) -> group:
        """Spread the members' start: countdowns ``start``, ``start + step``, ... (the
        last repeated once ``stop`` is reached), as Celery's ``group.skew``.

        Example:
            >>> group(add.s(i, i) for i in range(10)).skew(start=1, stop=5)()  # doctest: +SKIP
        """
        countdown = float(start)
        for member in self.tasks:
            member.set(countdown=countdown)
            if stop is None or countdown + step <= stop:
                countdown += step
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.apply_async(args, kwargs)

    def __repr__(self) -> str:
        return f"group([{', '.join(repr(step) for step in self.tasks)}])"


class chord(Signature):
    """A group whose results, in header order, are passed to one more task (the body)
    once every task of the header has finished.

    The body runs once. When a header task fails or is revoked, the body does not run:
    its result is FAILURE with :class:`~liteq.exceptions.ChordError`, and its
    ``link_error`` callbacks are sent. Header members may be chains; the body may be
    any signature (a chain, a group, another chord).

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
            steps = [signature(step, app=app).unroll() for step in
                     ([header] if isinstance(header, Mapping) else header)]
        for step in steps:
            if isinstance(step, (group, chord)):
                raise ImproperlyConfigured(
                    f"a chord's header takes task signatures and chains, not a "
                    f"{step['subtask_type']} ({step!r})"
                )
        body = signature(body, app=app) if body is not None else None
        super().__init__("liteq.chord", (), {"header": steps, "body": body}, options,
                         subtask_type="chord",
                         app=app or next((s._app for s in [*steps, body] if s and s._app), None))

    @property
    def header(self) -> list[Signature]:
        return list(self["kwargs"]["header"])

    @property
    def body(self) -> Signature | None:
        body = self["kwargs"].get("body")
        return None if body is None else signature(body, app=self._app)

    def _body_or(self, body: Any) -> Signature:
        """The body given now, else the chord's own."""
        found = signature(body, app=self._app) if body is not None else self.body
        if found is None:
            raise ImproperlyConfigured(
                "a chord needs a body: chord(header)(callback) or chord(header, callback)"
            )
        return found

    def freeze(self, _id: str | None = None) -> Any:
        """Fix the header's and the body's ids now; the result is the body's, its
        ``parent`` the header's GroupResult."""
        body = self._body_or(None)
        self["kwargs"]["body"] = body
        header = group(*self.header, app=self._app)
        if "group_id" in self.options:
            header.options["group_id"] = self.options["group_id"]
        header_result = header.freeze()
        self.options["group_id"] = header_result.id
        return attach_parent(body.freeze(_id), header_result)

    # A chord's result is its body's (its ``parent`` is the header's GroupResult).
    def build(
        self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
        body: Any = None, **options: Any,
    ) -> tuple[list[Message], Any]:
        app = self.app
        body = deep_copy(self._body_or(body))
        extra = {**self.options, **options}
        for key in ("link", "link_error"):
            if key in extra:
                body.options[key] = [*body.options.get(key, ()), *extra.pop(key)]
        result = body.freeze(extra.pop("task_id", None))
        group_id = extra.pop("group_id", None) or new_id()
        steps = [deep_copy(step) for step in self.header]
        if not steps:  # nothing to wait for: the body gets an empty list now, as in Celery
            messages, _ = body.build(([],))
            return messages, attach_parent(result, GroupResult(group_id, [], app=app))
        spec = {"id": group_id, "size": len(steps), "body": dict(body)}
        messages = []
        members = []
        for index, step in enumerate(steps):
            # Header tasks always store their results: the body is made of them.
            last = step.tasks[-1] if isinstance(step, chain) else step
            last.options.update(chord=spec, group_index=index, group_id=group_id,
                                ignore_result=False)
            built, member = step.build(args, kwargs, **extra)
            messages.extend(built)
            members.append(member)
        return messages, attach_parent(result, GroupResult(group_id, members, app=app))

    def apply_async(
        self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
        body: Any = None, **options: Any,
    ) -> Any:
        if self.app.conf.task_always_eager:
            for option in ("task_id", "group_id"):  # ids of a sent chord, not of each task
                options.pop(option, None)
            return self.apply(args, kwargs, body=body, **options)
        if body is not None:
            return chord(self.header, body, app=self._app, **self.options)._publish(
                options, args, kwargs)
        return self._publish(options, args, kwargs)

    def apply(
        self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
        body: Any = None, **options: Any,
    ) -> Any:
        """Run the header and then the body here and now (eager)."""
        body = deep_copy(self._body_or(body))
        for option in PUBLISH_OPTIONS:
            options.pop(option, None)
        header = group(*self.header, app=self._app).apply(args, kwargs, **options)
        for member in header:
            if _failed(member) or not member.ready():
                error = dependency_error(member)
                last = last_task(body)
                result: Any = EagerResult(
                    last.id or new_id(), error, FAILURE, f"{type(error).__name__}: {error}",
                    app=self._app, task_name=last.task)
                first = body.tasks[0] if isinstance(body, chain) else body
                for errback in [*first.options.get("link_error", ()),
                                *(body.options.get("link_error", ()) if first is not body
                                  else ())]:
                    signature(errback, app=self._app).apply((first.id or result.id,))
                break
        else:
            values = [member.get(disable_sync_subtasks=False) for member in header]
            result = body.apply((values,))
        return attach_parent(result, header)

    def __call__(self, body: Any = None, **options: Any) -> Any:
        return self.apply_async(body=body, **options)

    def __or__(self, other: Any) -> chain:  # type: ignore[override]
        return chain(self, other, app=self._app)

    def __repr__(self) -> str:
        header = ", ".join(repr(step) for step in self.header)
        return f"chord([{header}], {self.body!r})"


register_kind("chain", lambda d, app: chain(
    *[signature(t, app=app) for t in d["kwargs"]["tasks"]], app=app, **(d.get("options") or {})))
register_kind("group", lambda d, app: group(
    *[signature(t, app=app) for t in d["kwargs"]["tasks"]], app=app, **(d.get("options") or {})))
register_kind("chord", lambda d, app: chord(
    [signature(t, app=app) for t in d["kwargs"]["header"]],
    signature(d["kwargs"]["body"], app=app) if d["kwargs"].get("body") is not None else None,
    app=app, **(d.get("options") or {})))


# -- helpers -------------------------------------------------------------------------


def _flatten(steps: list[Signature]) -> list[Signature]:
    """A chain's steps with nested chains spliced in (``chain(chain(a, b), c)``), and a
    group of one task unrolled to that task, as Celery does."""
    flat: list[Signature] = []
    for step in steps:
        if isinstance(step, group) and len(step.tasks) == 1 and len(steps) > 1:
            step = step.tasks[0].clone(**step.options)
        flat.extend(_flatten(step.tasks) if isinstance(step, chain) else [step])
    return flat


def _upgrade_groups(steps: list[Signature]) -> list[Signature]:
    """A group followed by another step becomes a chord with that step as its body, and
    a chord without a body takes the next step as body (as in Celery)."""
    upgraded: list[Signature] = []
    for step in reversed(steps):
        if upgraded and isinstance(step, group):
            step = chord(step.tasks, upgraded.pop(), app=step._app, **step.options)
        elif upgraded and isinstance(step, chord) and step.body is None:
            step = chord(step.header, upgraded.pop(), app=step._app, **step.options)
        upgraded.append(step)
    return upgraded[::-1]


def _freeze_steps(steps: list[Signature], last_id: str | None) -> Any:
    """Freeze a chain's steps in place; the last step's result, parents linked."""
    result: Any = None
    for index, step in enumerate(steps):
        frozen = step.freeze(last_id if index == len(steps) - 1 else None)
        result = attach_parent(frozen, result)
    return result


def with_chain(step: Signature, rest: list[Signature] | list[Any]) -> Signature:
    """``step`` followed by the chain steps ``rest`` (frozen signatures or their dicts):
    a task carries them in its ``chain`` option, a chord's body goes on with them."""
    if not rest:
        return step
    if isinstance(step, chord):
        body = step._body_or(None)
        return chord(step.header, with_chain(body, rest), app=step._app, **step.options)
    if isinstance(step, chain):
        return chain(*step.tasks, *[signature(s, app=step._app) for s in rest],
                     app=step._app, **step.options)
    if isinstance(step, group):  # a group followed by more steps is a chord
        body = with_chain(signature(rest[0], app=step._app), list(rest[1:]))
        return chord(step.tasks, body, app=step._app, **step.options)
    step = step.clone()
    step.options["chain"] = [*(dict(s) for s in rest), *step.options.get("chain", ())]
    return step


def link_error_everywhere(sig: Signature, errback: Signature) -> None:
    """Add ``errback`` to every task ``sig`` runs after it is sent (a chain's steps, a
    chord's body), so a failure anywhere calls it."""
    if isinstance(sig, (chain, group)):
        for step in sig.tasks:
            link_error_everywhere(step, errback)
    elif isinstance(sig, chord):
        link_error_everywhere(sig._body_or(None), errback)
    else:
        sig.link_error(errback)


def _spread_links(steps: list[Signature], options: dict[str, Any]) -> None:
    """A chain's ``link`` runs after its last step; its ``link_error`` on any step."""
    links = options.pop("link", None)
    if links:
        last = steps[-1]
        for link in links if isinstance(links, (list, tuple)) else [links]:
            last.link(signature(link))
    errbacks = options.pop("link_error", None)
    if errbacks:
        for step in steps:
            for errback in errbacks if isinstance(errbacks, (list, tuple)) else [errbacks]:
                step.link_error(signature(errback))


def deep_copy(sig: Signature) -> Signature:
    """A copy to freeze and send, keeping what kind of signature it is."""
    if isinstance(sig, chain):
        return chain(*[deep_copy(step) for step in sig.tasks], app=sig._app, **sig.options)
    if isinstance(sig, group):
        return group(*[deep_copy(step) for step in sig.tasks], app=sig._app, **sig.options)
    if isinstance(sig, chord):
        return chord([deep_copy(step) for step in sig.header],
                     deep_copy(sig.body) if sig.body is not None else None, app=sig._app,
                     **sig.options)
    copy = sig.clone()
    for key in ("link", "link_error", "chain"):
        if key in copy.options:
            copy.options[key] = list(copy.options[key])
    return copy


def last_task(sig: Signature) -> Signature:
    """The task whose result is the signature's (a chain's last, a chord's body's)."""
    if isinstance(sig, chain):
        return last_task(sig.tasks[-1])
    if isinstance(sig, chord):
        return last_task(sig._body_or(None))
    return sig


def attach_parent(result: Any, parent: Any) -> Any:
    """Set ``parent`` as the parent of the first result ``result`` descends from."""
    if parent is None:
        return result
    node = result
    while getattr(node, "parent", None) is not None:
        node = node.parent
    node.parent = parent
    return result


def _failed(result: Any) -> bool:
    if isinstance(result, GroupResult):
        return any(_failed(member) for member in result)
    return bool(result.state in (FAILURE, REVOKED))


def dependency_error(member: AsyncResult[Any]) -> ChordError:
    state = member.state
    if state in (FAILURE, REVOKED):
        exc = member.result
        return ChordError(f"Dependency {member.id} raised {exc!r}")
    return ChordError(f"Dependency {member.id} has no result ({state})")


__all__ = [
    "Signature",
    "attach_parent",
    "chain",
    "chord",
    "deep_copy",
    "group",
    "last_task",
    "link_error_everywhere",
    "maybe_signature",
    "signature",
    "subtask",
    "with_chain",
]
