"""Making tasks: the class and instance ``@app.task`` and ``shared_task`` build for a
function (one class per task, as Celery does), and the names tasks get.

Kept apart from :mod:`liteq.task`, which is what a task *is* (sending, retrying,
hooks); this module is how one is *made* from a function and its options.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from liteq import serialization
from liteq.exceptions import ImproperlyConfigured
from liteq.flow import check_options
from liteq.ratelimits import parse_rate
from liteq.result import AsyncResult
from liteq.task import Task
from liteq.validation import ArgumentDumper, pydantic_wrapper

if TYPE_CHECKING:
    from liteq.app import LiteQ


def make_task(
    fun: Callable[..., Any],
    *,
    app: LiteQ | None,
    name: str,
    base: type[Task[Any, Any]] | None = None,
    bind: bool = False,
    **options: Any,
) -> Task[Any, Any]:
    """Build the task instance for ``fun`` (one class per task, as Celery does).

    ``pydantic=True`` (with ``pydantic_strict``, ``pydantic_context``,
    ``pydantic_dump_kwargs``) validates model arguments and dumps a returned model
    (see :mod:`liteq.validation`).

    Raises:
        ImproperlyConfigured: a bad ``base``, an unknown option, an invalid rate limit,
            or ``pydantic=True`` without pydantic installed.
    """
    base = base or Task
    if not (isinstance(base, type) and issubclass(base, Task)):
        raise ImproperlyConfigured(f"base= must be a subclass of liteq.Task, not {base!r}")
    use_pydantic = options.pop("pydantic", False)
    pydantic_options = {key: options.pop(f"pydantic_{key}", None)
                        for key in ("strict", "context", "dump_kwargs")}
    unknown = sorted(set(options) - set(_TASK_OPTIONS))
    if unknown:
        raise ImproperlyConfigured(
            f"unknown task option(s) {', '.join(map(repr, unknown))} for {name}"
        )
    attributes: dict[str, Any] = {}
    if use_pydantic:
        fun, dump_arguments = pydantic_wrapper(
            app, fun, name, bool(pydantic_options["strict"]), pydantic_options["context"],
            pydantic_options["dump_kwargs"], bound=bind)
        # Only these tasks pay for dumping the caller's models: others keep apply_async.
        attributes["apply_async"] = _dumping_models(base, dump_arguments)
    attributes = {
        **attributes,
        "name": name,
        "run": fun if bind else staticmethod(fun),
        "_app": app,
        "__doc__": fun.__doc__,
        "__module__": fun.__module__,
        "__qualname__": getattr(fun, "__qualname__", fun.__name__),
        "__wrapped__": fun,
        "_bind": bind,
        **options,
    }
    if "autoretry_for" in options:
        attributes["autoretry_for"] = tuple(options["autoretry_for"])
    if options.get("rate_limit") is not None:
        try:
            parse_rate(options["rate_limit"])
        except ValueError as exc:
            raise ImproperlyConfigured(f"task {name}: {exc}") from None
    check_options(name, options)
    cls = type(fun.__name__, (base,), attributes)
    task: Task[Any, Any] = cls()
    return task


def _dumping_models(base: type[Task[Any, Any]],
                    dump_arguments: ArgumentDumper) -> Callable[..., AsyncResult[Any]]:
    """``apply_async`` for a ``pydantic=True`` task: models the caller passes are sent
    as their dumps (as Celery 5.7), except with pickle, which sends them as they are."""
    send = base.apply_async

    def apply_async(self: Task[Any, Any], args: Iterable[Any] | None = None,
                    kwargs: Mapping[str, Any] | None = None, task_id: str | None = None,
                    **options: Any) -> AsyncResult[Any]:
        name = options.get("serializer") or self.serializer or self.app.conf.task_serializer
        if serialization.get(str(name)).name != "pickle":
            args, kwargs = dump_arguments(args, kwargs)
        return send(self, args, kwargs, task_id, **options)

    apply_async.__doc__ = base.apply_async.__doc__
    return apply_async


_TASK_OPTIONS = {
    name for name, value in vars(Task).items()
    if not name.startswith("_") and not callable(value) and not isinstance(value, property)
} | {"typing", "trail", "serializer", "shared"}


def gen_task_name(app_main: str | None, module: str, function: str) -> str:
    """``module.function``; a task defined in ``__main__`` takes the app's main name
    (so does one in ``__mp_main__``: the script, run again in a spawned child)."""
    if module == "__mp_main__":
        module = "__main__"
    if module == "__main__" and app_main:
        module = app_main
    return f"{module}.{function}"


__all__ = ["gen_task_name", "make_task"]
