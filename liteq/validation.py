"""``@app.task(pydantic=True)``: validate arguments with pydantic, dump returned models.

As Celery 5.5's ``pydantic=True``: an argument annotated with a pydantic model (or
``Optional`` of one) is validated into that model before the call, so a caller sends a
plain dict (``x.delay({"value": 1})``); a returned model is turned into a dict with
``model_dump(mode="json")`` so it can be stored as the result. A model the caller
passes (``x.delay(ArgModel(value=1))``) is dumped at send time, as Celery 5.7 does,
unless the task's serializer is pickle (which sends it as it is). Options:
``pydantic_strict`` (default False), ``pydantic_context`` (extra validation context;
``celery_app`` and ``celery_task_name`` are always in it, as in Celery) and
``pydantic_dump_kwargs`` (for ``model_dump``).

pydantic is optional (``pip install liteq[pydantic]``); without it, decorating a task
with ``pydantic=True`` raises :class:`~liteq.exceptions.ImproperlyConfigured`.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from liteq.exceptions import ImproperlyConfigured


def _load_pydantic() -> Any:
    try:
        # Imported only when a task asks for it: pydantic is an optional dependency.
        return importlib.import_module("pydantic")
    except ImportError as exc:
        raise ImproperlyConfigured(
            "@app.task(pydantic=True) needs the pydantic library: "
            "pip install 'liteq[pydantic]' (or pip install pydantic)"
        ) from exc


def _optional_of(annotation: Any) -> Any:
    """``X`` for ``Optional[X]`` / ``X | None``, else None."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1 and len(typing.get_args(annotation)) == 2:
            return members[0]
    return None


def _model_class(annotation: Any, base: type) -> Any:
    return annotation if isinstance(annotation, type) and issubclass(annotation, base) \
        else None


#: ``dump_arguments(args, kwargs)``: the caller's arguments with models dumped.
ArgumentDumper = Callable[[Any, Any], tuple[Any, Any]]


class _Models:
    """Which of a task function's arguments are pydantic models, and how to validate
    and dump them."""

    def __init__(self, fun: Callable[..., Any], base: Any, strict: bool,
                 context: dict[str, Any], dump: dict[str, Any], bound: bool) -> None:
        self.base, self.strict, self.context, self.dump = base, strict, context, dump
        self.signature = signature = inspect.signature(fun)
        try:
            # Resolves string annotations (``from __future__ import annotations``).
            self.hints = typing.get_type_hints(fun)
        except (NameError, AttributeError, TypeError):
            self.hints = {}  # a name only the enclosing scope knows: raw annotations
        returns = self.hints.get("return", signature.return_annotation)
        self.returns = _optional_of(returns) or returns
        parameters = list(signature.parameters.values())[1 if bound else 0:]
        self.positional = [p.name for p in parameters
                           if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        self.by_keyword = {p.name for p in parameters
                           if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}

    def model_of(self, name: str, value: Any) -> Any:
        """The model class argument ``name`` is validated into (None: not a model)."""
        if name in self.hints:
            annotation = self.hints[name]
        else:
            parameter = self.signature.parameters.get(name)
            annotation = parameter.annotation if parameter is not None else None
        if value is not None:
            annotation = _optional_of(annotation) or annotation
        return _model_class(annotation, self.base)

    def validate(self, model: Any, value: Any) -> Any:
        return model.model_validate(value, strict=self.strict, context=self.context)

    def returned(self, value: Any) -> Any:
        """A returned model as its dump (when it is of the annotated class, if any)."""
        returns = self.returns
        if isinstance(value, self.base) and (returns is inspect.Signature.empty or (
                isinstance(returns, type) and isinstance(value, returns))):
            return value.model_dump(**self.dump)
        return value

    def dumped(self, name: str | None, value: Any) -> Any:
        """A model the caller passes for ``name``, as the dump that validates back into
        an equal model; anything else as it is (left to the serializer)."""
        if name is None or not isinstance(value, self.base):
            return value
        model = self.model_of(name, value)
        if model is None:
            return value
        try:
            data = value.model_dump(**self.dump)
            if self.validate(model, data) == value:
                return data
        except Exception:  # validators that only work on a worker: sent as it is
            pass
        return value

    def dump_arguments(self, args: Any, kwargs: Any) -> tuple[Any, Any]:
        call_args = () if args is None else args
        call_kwargs = {} if kwargs is None else kwargs
        if not isinstance(call_args, (list, tuple)) or not isinstance(call_kwargs, Mapping):
            return args, kwargs  # refused by apply_async, as for any task
        if not any(isinstance(v, self.base) for v in (*call_args, *call_kwargs.values())):
            return args, kwargs
        names = self.positional
        new_args = tuple(self.dumped(names[i] if i < len(names) else None, value)
                         for i, value in enumerate(call_args))
        new_kwargs = {key: self.dumped(key if key in self.by_keyword else None, value)
                      for key, value in call_kwargs.items()}
        return new_args, new_kwargs


def pydantic_wrapper(
    app: Any,
    fun: Callable[..., Any],
    task_name: str,
    strict: bool = False,
    context: Mapping[str, Any] | None = None,
    dump_kwargs: Mapping[str, Any] | None = None,
    bound: bool = False,
) -> tuple[Callable[..., Any], ArgumentDumper]:
    """Wrap a task function to validate model arguments and dump a returned model.

    Returns:
        The wrapper, and the function that dumps the models a caller passes (for
        ``apply_async``): a model is sent as its dump when validating that dump gives
        an equal model back; any other value (or a model that does not round-trip) is
        left to the serializer. ``bound``: the function takes the task first.

    Raises:
        ImproperlyConfigured: pydantic is not installed.

    Example:
        >>> class Arg(BaseModel):  # doctest: +SKIP
        ...     value: int
        >>> @app.task(pydantic=True)  # doctest: +SKIP
        ... def x(arg: Arg) -> Ret:
        ...     return Ret(value=f"example: {arg.value}")
        >>> x.delay({"value": 1}).get(timeout=10)  # doctest: +SKIP
        {'value': 'example: 1'}
    """
    models = _Models(
        fun, _load_pydantic().BaseModel, strict,
        {**(context or {}), "celery_app": app, "celery_task_name": task_name},
        {"mode": "json", **(dump_kwargs or {})}, bound,
    )

    @functools.wraps(fun)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        arguments = models.signature.bind(*args, **kwargs)
        for name, value in arguments.arguments.items():
            model = models.model_of(name, value)
            if model is not None:
                arguments.arguments[name] = models.validate(model, value)
        return models.returned(fun(*arguments.args, **arguments.kwargs))

    return wrapper, models.dump_arguments


__all__ = ["ArgumentDumper", "pydantic_wrapper"]
