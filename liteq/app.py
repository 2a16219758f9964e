"""``LiteQ`` (alias ``Celery``): settings, the task registry, and sending tasks.

Example:
    >>> from liteq import LiteQ
    >>> app = LiteQ("tasks", broker="sqlite:///tasks.db")
    >>> @app.task
    ... def add(x, y):
    ...     return x + y
    >>> add(2, 3)
    5
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar, overload
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from liteq import _state, chords, serialization
from liteq.config import Settings, load_object, seconds
from liteq.control import Control
from liteq.exceptions import ImproperlyConfigured
from liteq.producer import Producer
from liteq.registry import TaskFinder, TaskRegistry
from liteq.result import AsyncResult, GroupResult
from liteq.signals import Signal
from liteq.task import Task, gen_task_name, make_task, shared_tasks
from liteq.transports import transport_for
from liteq.transports.base import ResultRecord, Transport

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: Every app created in this process (workers look up tasks across them).
_apps: weakref.WeakSet[LiteQ] = weakref.WeakSet()

class LiteQ(Producer):
    """A liteq application: configuration, tasks, and the transports behind them.

    Args:
        main: the name of the main module (used to name tasks defined in ``__main__``).
        broker: ``sqlite:///relative.db``, ``sqlite:////absolute.db``, a plain path, or
            ``redis://host:port/db``. Results go to the same place unless ``backend``
            says otherwise.
        backend: where results go, if not with the messages.
        include: modules to import when a worker starts.
        **settings: any setting, lower-case or Celery's old upper-case names.

    Example:
        >>> app = LiteQ("tasks", broker="sqlite:///tasks.db", task_acks_late=True)
    """

    def __init__(
        self,
        main: str | None = None,
        broker: str | None = None,
        backend: str | None = None,
        *,
        include: Iterable[str] | None = None,
        set_as_current: bool = True,
        config_source: Any = None,
        namespace: str | None = None,
        task_cls: type[Task[Any, Any]] | None = None,
        autofinalize: bool = True,
        **settings: Any,
    ) -> None:
        self.main = main
        self.conf = Settings()
        if config_source is not None:
            self.conf.from_object(_as_object(config_source), namespace=namespace)
        self.conf.update(settings)
        if broker is not None:
            self.conf.broker_url = broker
        if backend is not None:
            self.conf.result_backend = backend
        if include is not None:
            self.conf.include = tuple(include)
        self.tasks = TaskRegistry()
        self.task_cls = task_cls or Task
        self.autofinalize = autofinalize
        self.on_configure = Signal("on_configure")
        self.on_after_configure = Signal("on_after_configure")
        self.on_after_finalize = Signal("on_after_finalize")
        self._lock = threading.RLock()
        self._broker: Transport | None = None
        self._backend: Transport | None = None
        self._finalized = False
        self._cache: dict[Any, Any] = {}
        self._cache_generation = -1
        self.control = Control(self)
        chords.register_builtins(self)
        if set_as_current:
            _state.set_current_app(self)
        _apps.add(self)

    def __repr__(self) -> str:
        return f"<LiteQ {self.main or '__main__'} at {id(self):#x}>"

    def set_current(self) -> None:
        _state.set_current_app(self)

    # -- configuration ---------------------------------------------------------------

    def config_from_object(self, obj: Any, namespace: str | None = None,
                           force: bool = False, silent: bool = False) -> None:
        """Read settings from a module (or its import path), a class, an object, or
        ``"django.conf:settings"``; with ``namespace="CELERY"`` only ``CELERY_*`` names.

        Example:
            >>> app.config_from_object("celeryconfig")  # doctest: +SKIP
            >>> app.config_from_object("django.conf:settings", namespace="CELERY")  # doctest: +SKIP
        """
        try:
            source = _as_object(obj)
        except ImportError:
            if silent:
                return
            raise
        self.conf.from_object(source, namespace=namespace)
        self._forget_transports()

    def config_from_envvar(self, variable_name: str, silent: bool = False) -> None:
        """Read settings from the module named by an environment variable."""
        module_name = os.environ.get(variable_name)
        if not module_name:
            if silent:
                return
            raise ImproperlyConfigured(f"environment variable {variable_name} is not set")
        self.config_from_object(module_name, silent=silent)

    def _cached(self, key: Any, build: Callable[[], Any]) -> Any:
        generation = self.conf._generation
        if generation != self._cache_generation:
            self._cache = {}
            self._cache_generation = generation
        try:
            return self._cache[key]
        except KeyError:
            value = self._cache[key] = build()
            return value

    @property
    def accept(self) -> frozenset[str]:
        """Content types workers accept in messages (``accept_content``)."""
        return self._cached(  # type: ignore[no-any-return]
            "accept", lambda: serialization.accepted_content_types(self.conf.accept_content)
        )

    @property
    def result_accept(self) -> frozenset[str]:
        """Content types accepted in results (``result_accept_content``)."""
        return self._cached(  # type: ignore[no-any-return]
            "result_accept",
            lambda: serialization.accepted_content_types(
                self.conf.result_accept_content or self.conf.accept_content
            ),
        )

    @property
    def result_expires(self) -> float | None:
        """Seconds results are kept (``result_expires``); None or 0 keeps them."""
        return self.result_options[2]

    @property
    def result_options(self) -> tuple[str, bool, float | None]:
        """``result_serializer``, ``result_extended``, ``result_expires`` (seconds), read
        once per change of the settings (every task's result needs them)."""
        def read() -> tuple[str, bool, float | None]:
            expires = seconds(self.conf.result_expires, "result_expires")
            return (str(self.conf.result_serializer), bool(self.conf.result_extended),
                    expires or None)

        return self._cached("result_options", read)  # type: ignore[no-any-return]

    @property
    def visibility_timeout(self) -> float:
        """Lease length in seconds (``broker_transport_options["visibility_timeout"]``)."""
        options = self.conf.broker_transport_options or {}
        value = seconds(options.get("visibility_timeout", 60.0), "visibility_timeout")
        if value is None or value <= 0:
            raise ImproperlyConfigured("visibility_timeout must be a positive number of seconds")
        return value

    @property
    def timezone(self) -> ZoneInfo | None:
        """The ``timezone`` setting as a ZoneInfo (None: local time)."""
        name = self.conf.timezone
        if not name:
            return None
        try:
            return ZoneInfo(str(name))
        except (ZoneInfoNotFoundError, ValueError):
            raise ImproperlyConfigured(f"unknown timezone {name!r}") from None

    # -- transports ------------------------------------------------------------------

    @property
    def broker_url(self) -> str:
        url = self.conf.broker_url or os.environ.get("LITEQ_BROKER_URL") or \
            os.environ.get("CELERY_BROKER_URL")
        return str(url) if url else "sqlite:///liteq.db"

    def _transport_options(self, url: str) -> dict[str, Any]:
        conf = self.conf
        return {
            "synchronous": conf.sqlite_synchronous,
            "busy_timeout": seconds(conf.sqlite_busy_timeout, "sqlite_busy_timeout"),
            **(conf.broker_transport_options or {}),
            "conf": conf,
        }

    @property
    def broker(self) -> Transport:
        """The transport holding messages (opened on first use)."""
        if self._broker is None:
            with self._lock:
                if self._broker is None:
                    url = self.broker_url
                    self._broker = transport_for(url, self._transport_options(url))
        return self._broker

    @property
    def backend(self) -> Transport:
        """The transport holding results: the broker's unless ``result_backend`` differs."""
        if self._backend is None:
            with self._lock:
                if self._backend is None:
                    url = self.conf.result_backend
                    if not url or _same_store(url, self.broker_url):
                        self._backend = self.broker
                    else:
                        self._backend = transport_for(str(url), self._transport_options(url))
        return self._backend

    @property
    def results_with_broker(self) -> bool:
        """True when results are stored in the broker's own transactions."""
        return self.backend is self.broker

    def _forget_transports(self) -> None:
        with self._lock:
            if self._broker is not None or self._backend is not None:
                logger.debug("settings changed: transports will reopen")
            for transport in {id(t): t for t in (self._broker, self._backend) if t}.values():
                transport.close()
            self._broker = self._backend = None

    def close(self) -> None:
        """Close this process's connections (reopened on next use)."""
        self._forget_transports()

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """An open write transaction on the broker's file: tasks sent in the block by this
        thread are stored if and only if the block commits.

        Example:
            >>> with app.transaction() as conn:  # doctest: +SKIP
            ...     conn.execute("INSERT INTO orders (id) VALUES (?)", (42,))
            ...     ship.delay(42)  # exists only if the insert commits
        """
        broker = self.broker
        if not broker.supports_app_transactions:
            raise ImproperlyConfigured(
                f"the {type(broker).__name__} cannot join your transactions; "
                "app.transaction() needs the SQLite transport"
            )
        with broker.transaction() as conn:  # type: ignore[attr-defined]
            yield conn

    # -- tasks -----------------------------------------------------------------------

    @overload
    def task(self, fun: F) -> Task[Any, Any]: ...

    @overload
    def task(self, *, name: str | None = ..., bind: bool = ..., base: Any = ...,
             **options: Any) -> Callable[[F], Task[Any, Any]]: ...

    def task(self, fun: Any = None, **options: Any) -> Any:
        """Decorate a function to make it a task, with or without options.

        Example:
            >>> @app.task(bind=True, max_retries=5, queue="low")
            ... def fetch(self, url):
            ...     ...
        """
        if fun is not None and callable(fun) and not options:
            return self._create_task(fun)
        if fun is not None and not callable(fun):
            raise ImproperlyConfigured(
                "use @app.task or @app.task(name=..., ...) with keyword options only"
            )

        def decorate(function: Callable[..., Any]) -> Task[Any, Any]:
            return self._create_task(function, **options)

        return decorate

    def _create_task(self, fun: Callable[..., Any], **options: Any) -> Task[Any, Any]:
        if isinstance(fun, Task):
            return self.register_task(fun)
        name = options.pop("name", None) or gen_task_name(
            self.main, fun.__module__, fun.__name__
        )
        options.pop("shared", None)
        base = options.pop("base", None) or self.task_cls
        task = make_task(fun, app=self, name=name, base=base, **options)
        self.tasks.register(task)
        return task

    def register_task(self, task: Any) -> Task[Any, Any]:
        """Register a task instance (or a Task subclass) made outside the decorator."""
        if isinstance(task, type):
            task = task()
        if not task.name:
            task.name = gen_task_name(self.main, type(task).__module__, type(task).__name__)
        task.bind(self)
        self.tasks.register(task)
        return task  # type: ignore[no-any-return]

    def annotate(self, task: Task[Any, Any]) -> Task[Any, Any]:
        """Apply ``task_annotations`` to a task's class (once per settings change)."""
        key = ("annotated", id(task))
        if self._cached(key, lambda: False):
            return task
        for annotation in _annotations_for(self.conf.task_annotations, task):
            for attribute, value in annotation.items():
                setattr(type(task), attribute, value)
        self._cache[key] = True
        return task

    def task_finder(self, *, import_on_demand: bool) -> TaskFinder:
        """How a worker of this app finds the task a message names."""

        def other_registries() -> list[Mapping[str, Any]]:
            return [shared_tasks, *(app.tasks for app in list(_apps) if app is not self)]

        finder = TaskFinder(self.tasks, import_on_demand=import_on_demand,
                            others=other_registries)

        def find(name: str) -> Task[Any, Any]:
            return self.annotate(finder(name))

        return find  # type: ignore[return-value]

    def autodiscover_tasks(self, packages: Any = None, related_name: str = "tasks",
                           force: bool = False) -> None:
        """Import ``<package>.tasks`` for each package (or Django's INSTALLED_APPS)."""
        if callable(packages):
            packages = packages()
        if packages is None:
            packages = _django_apps()
        for package in packages or ():
            module_name = f"{package}.{related_name}" if related_name else package
            try:
                importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name != module_name:
                    raise

    def finalize(self) -> None:
        """Import ``imports``/``include`` modules and run ``on_after_configure`` hooks."""
        with self._lock:
            if self._finalized:
                return
            self._finalized = True
        self.on_configure.send(sender=self)
        for module in (*tuple(self.conf.imports or ()), *tuple(self.conf.include or ())):
            importlib.import_module(module)
        self.on_after_configure.send(sender=self, source=self.conf)
        self.on_after_finalize.send(sender=self)

    def add_periodic_task(self, schedule: Any, sig: Any, args: Iterable[Any] = (),
                          kwargs: Mapping[str, Any] | None = None, name: str | None = None,
                          **options: Any) -> str:
        """Add a periodic task to ``beat_schedule`` (call it in ``on_after_configure``).

        Args:
            schedule: seconds, a ``timedelta``, ``liteq.schedules.schedule`` or ``crontab``.
            sig: a signature (``test.s("hello")``) or a task.
            name: the entry's name (default: the signature's repr); the same name
                replaces an entry, as in Celery.
            **options: ``apply_async`` options for each run (``expires``, ``queue``...).

        Example:
            >>> @app.on_after_configure.connect
            ... def setup(sender, **kwargs):
            ...     sender.add_periodic_task(10.0, test.s("hello"), name="add every 10")
        """
        if isinstance(sig, Task):
            sig = sig.s(*args, **(kwargs or {}))
            args, kwargs = (), None
        if not isinstance(sig, Mapping) or "task" not in sig:
            raise ImproperlyConfigured(f"add_periodic_task needs a signature, not {sig!r}")
        key = name or repr(sig)
        self.conf.beat_schedule = {
            **(self.conf.beat_schedule or {}),
            key: {
                "schedule": schedule,
                "task": sig["task"],
                "args": (*args, *sig.get("args", ())),
                "kwargs": {**sig.get("kwargs", {}), **(kwargs or {})},
                "options": {**sig.get("options", {}), **options},
            },
        }
        return key

    # -- sending ---------------------------------------------------------------------

    def AsyncResult(self, task_id: str, **kwargs: Any) -> _AsyncResult[Any]:
        """The result of the task with this id (``app.AsyncResult(id).get()``)."""
        return _AsyncResult(task_id, self, kwargs.get("task_name"))

    def GroupResult(self, group_id: str, results: list[_AsyncResult[Any]]) -> _GroupResult:
        """A group's result from its id and its tasks' results."""
        return _GroupResult(group_id, results, app=self)

    def make_record(
        self, task_id: str, state: str, data: Any, *, task_name: str | None = None,
        worker: str | None = None, retries: int = 0, serializer: str | None = None,
    ) -> ResultRecord:
        """A result record for ``data`` encoded with the result serializer."""
        codec = serialization.get(serializer or self.conf.result_serializer)
        return ResultRecord(
            task_id=task_id, state=state, content_type=codec.content_type,
            payload=codec.dumps(data), date_done=time.time(), task_name=task_name,
            worker=worker, retries=retries, expires_in=self.result_expires,
        )

    # -- entry points ----------------------------------------------------------------

    def worker_main(self, argv: Sequence[str] | None = None) -> None:
        """Run a worker as ``liteq worker`` would, with ``argv`` as its options."""
        from liteq.cli import main as cli_main  # the CLI sits above the app

        cli_main(["worker", *(argv or [])], app=self)

    def start(self, argv: Sequence[str] | None = None) -> None:
        """Run the command line (``app.start()`` in a ``__main__`` block)."""
        from liteq.cli import main as cli_main  # the CLI sits above the app

        cli_main(list(argv) if argv is not None else None, app=self)


Celery = LiteQ
_AsyncResult = AsyncResult
_GroupResult = GroupResult

def _as_object(source: Any) -> Any:
    return load_object(source) if isinstance(source, str) else source


def _same_store(url: Any, broker_url: str) -> bool:
    text = str(url)
    return text in ("rpc://", "rpc", broker_url) or text.startswith("rpc://")

def _annotations_for(setting: Any, task: Task[Any, Any]) -> Iterator[Mapping[str, Any]]:
    if not setting:
        return
    for annotation in setting if isinstance(setting, (list, tuple)) else [setting]:
        if isinstance(annotation, str):
            annotation = load_object(annotation)
        if isinstance(annotation, Mapping):
            for key in ("*", task.name):
                if key in annotation:
                    yield annotation[key]
        elif hasattr(annotation, "annotate"):
            found = annotation.annotate(task)
            if found:
                yield found
        else:
            raise ImproperlyConfigured(f"task_annotations: cannot use {annotation!r}")


def _django_apps() -> list[str]:
    try:
        settings = load_object("django.conf:settings")
        return list(settings.INSTALLED_APPS)
    except Exception:
        return []


__all__ = ["Celery", "LiteQ"]
