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
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib.metadata import entry_points
from typing import Any, TypeVar, overload
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from liteq import _state, chords, embedding, serialization
from liteq.config import (
    PendingSettings,
    Settings,
    SettingsCache,
    load_object,
    seconds,
)
from liteq.connections import Connections
from liteq.control import Control
from liteq.exceptions import ImproperlyConfigured
from liteq.messages import Message
from liteq.producer import Producer
from liteq.records import build_record
from liteq.registry import ImportPolicy, TaskFinder, TaskRegistry
from liteq.result import AsyncResult, GroupResult
from liteq.signals import Signal
from liteq.storing import OutcomeStore
from liteq.task import Task, shared_tasks
from liteq.task_factory import gen_task_name, make_task
from liteq.transports.base import ResultRecord, Transport

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: Every app created in this process (workers look up tasks across them).
_apps: weakref.WeakSet[LiteQ] = weakref.WeakSet()

#: Fix-ups loaded by import path when an app is created (as Celery's): each returns
#: an object that adapts the app to a framework in use, or None (Django: when
#: ``DJANGO_SETTINGS_MODULE`` is set; see :mod:`liteq.contrib.django`).
BUILTIN_FIXUPS = ("liteq.contrib.django:fixup",)

class LiteQ:
    """A liteq application: configuration, tasks, and the transports behind them.

    Args:
        main: the name of the main module (used to name tasks defined in ``__main__``).
        broker: ``sqlite:///relative.db``, ``sqlite:////absolute.db``, a plain path, or
            ``redis://host:port/db``. Results go to the same place unless ``backend``
            says otherwise.
        backend: where results go, if not with the messages.
        include: modules to import when a worker starts.
        task_cls: the base class of this app's tasks, or its import path
            (``"proj.base:DatabaseTask"``, imported when the first task is made).
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
        task_cls: type[Task[Any, Any]] | str | None = None,
        autofinalize: bool = True,
        **settings: Any,
    ) -> None:
        self.main = main
        #: pending until first read: then on_configure and on_after_configure are sent
        self.conf: Settings = PendingSettings(self._configure)
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
        self.task_cls: type[Task[Any, Any]] | str = task_cls or Task
        self.autofinalize = autofinalize
        self.on_configure = Signal("on_configure")
        self.on_after_configure = Signal("on_after_configure")
        self.on_after_finalize = Signal("on_after_finalize")
        self._lock = threading.RLock()
        #: the broker and result transports, opened from the settings on first use
        self.connections = Connections(self.conf)
        self._finalized = False
        #: the on_after_configure receivers when it was sent (see finalize)
        self._configured_receivers: list[Any] = []
        self._cache = SettingsCache(self.conf)
        #: builds and stores this app's messages (``send_task``, ``publish``)
        self.producer = Producer(self)
        #: decides where results are stored (with the ack, or stored then acked)
        self.outcome_store = OutcomeStore(self)
        self.control = Control(self)
        chords.register_builtins(self, Task)
        if set_as_current:
            _state.set_current_app(self)
        _apps.add(self)
        #: ``autodiscover_tasks()`` calls waiting for :meth:`finalize` (or a fix-up)
        self.pending_discovery: list[tuple[Any, str]] = []
        #: Callables ``hook(app)`` returning an open connection on the broker's file
        #: that a send made now must write through (uncommitted), or None: how a
        #: framework's own transaction is joined (Django:
        #: :mod:`liteq.contrib.django.transactions`).
        self.transaction_hooks: list[Callable[[LiteQ], Any]] = []
        self.fixups = [f for f in (load_object(path)(self) for path in BUILTIN_FIXUPS) if f]

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

    def config_from_envvar(self, variable_name: str, silent: bool = False) -> None:
        """Read settings from the module named by an environment variable."""
        module_name = os.environ.get(variable_name)
        if not module_name:
            if silent:
                return
            raise ImproperlyConfigured(f"environment variable {variable_name} is not set")
        self.config_from_object(module_name, silent=silent)

    @property
    def accept(self) -> frozenset[str]:
        """Content types workers accept in messages (``accept_content``)."""
        return self._cache.get(
            "accept", lambda: serialization.accepted_content_types(self.conf.accept_content)
        )

    @property
    def result_accept(self) -> frozenset[str]:
        """Content types accepted in results (``result_accept_content``)."""
        return self._cache.get(
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

        return self._cache.get("result_options", read)

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
        """The broker's URL (``broker_url``, else ``LITEQ_BROKER_URL`` or
        ``CELERY_BROKER_URL``, else ``sqlite:///liteq.db``)."""
        return self.connections.broker_url

    @property
    def broker(self) -> Transport:
        """The transport holding messages (opened on first use; see
        :class:`~liteq.connections.Connections`).

        Changing ``broker_url``, ``result_backend`` or their options later (by
        attribute, ``conf.update``, an old upper-case name or ``config_from_object``)
        closes it: the next use opens the new store, never the old one.
        """
        return self.connections.broker

    @property
    def backend(self) -> Transport:
        """The transport holding results: the broker's unless ``result_backend`` names
        another store (see :func:`liteq.config.result_store`)."""
        return self.connections.backend

    @property
    def results_with_broker(self) -> bool:
        """True when results are stored in the broker's own transactions."""
        return self.backend is self.broker

    def close(self) -> None:
        """Close this process's connections (reopened on next use)."""
        self.connections.close()

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
        name = options.pop("name", None) or self.gen_task_name(fun.__name__, fun.__module__)
        options.pop("shared", None)
        base = options.pop("base", None) or self._task_base()
        task = make_task(fun, app=self, name=name, base=base, **options)
        self.tasks.register(task)
        return task

    def gen_task_name(self, name: str, module: str) -> str:
        """The name of a task made from function ``name`` of ``module`` when none is
        given: ``module.name`` (a task in ``__main__`` takes the app's main name).
        Override it in a subclass to name tasks your way, as in Celery.

        Example:
            >>> class MyCelery(Celery):
            ...     def gen_task_name(self, name, module):
            ...         if module.endswith(".tasks"):
            ...             module = module[:-6]
            ...         return super().gen_task_name(name, module)
        """
        return gen_task_name(self.main, module, name)

    def _task_base(self) -> type[Task[Any, Any]]:
        """``task_cls``, imported the first time a task needs it if it is a path.

        Raises:
            ImproperlyConfigured: the path does not name a subclass of ``liteq.Task``.
        """
        if isinstance(self.task_cls, str):
            path = self.task_cls
            try:
                base = load_object(path)
            except (ImportError, AttributeError) as exc:
                raise ImproperlyConfigured(f"task_cls={path!r} cannot be imported: {exc}"
                                           ) from exc
            if not (isinstance(base, type) and issubclass(base, Task)):
                raise ImproperlyConfigured(
                    f"task_cls={path!r} must name a subclass of liteq.Task, not {base!r}")
            self.task_cls = base
        return self.task_cls

    def register_task(self, task: Any) -> Task[Any, Any]:
        """Register a task instance (or a Task subclass) made outside the decorator."""
        if isinstance(task, type):
            task = task()
        if not task.name:
            task.name = self.gen_task_name(type(task).__name__, type(task).__module__)
        task.bind(self)
        self.tasks.register(task)
        return task  # type: ignore[no-any-return]

    def annotate(self, task: Task[Any, Any]) -> Task[Any, Any]:
        """Apply ``task_annotations`` to a task's class (once per settings change)."""
        key = ("annotated", id(task))
        if self._cache.get(key, lambda: False):
            return task
        for annotation in _annotations_for(self.conf.task_annotations, task):
            for attribute, value in annotation.items():
                setattr(type(task), attribute, value)
        self._cache.set(key, True)
        return task

    def task_finder(self, *, import_on_demand: bool) -> TaskFinder:
        """How a worker of this app finds the task a message names."""

        def other_registries() -> list[Mapping[str, Any]]:
            return [shared_tasks, *(app.tasks for app in list(_apps) if app is not self)]

        conf = self.conf
        allowlist = conf.worker_import_allowlist
        if isinstance(allowlist, str):
            allowlist = [name.strip() for name in allowlist.split(",") if name.strip()]
        policy = ImportPolicy(
            allowlist,
            include=(*tuple(conf.imports or ()), *tuple(conf.include or ())),
            directory=os.getcwd(),
        )
        finder = TaskFinder(self.tasks, import_on_demand=import_on_demand,
                            others=other_registries, policy=policy)

        def find(name: str) -> Task[Any, Any]:
            return self.annotate(finder(name))

        return find  # type: ignore[return-value]

    def autodiscover_tasks(self, packages: Any = None, related_name: str = "tasks",
                           force: bool = False) -> None:
        """Import ``<package>.tasks`` for each package (or each Django app), lazily.

        As in Celery, the imports wait until the app is finalized (a worker or beat
        starts) or, in a Django project, until Django's app registry is ready, so a
        ``proj/celery.py`` may call this before Django is set up. ``force=True``
        imports now. ``packages`` may be a callable returning the list.
        """
        if force or self._finalized:
            self.discover(packages, related_name)
            return
        self.pending_discovery.append((packages, related_name))
        for fixup in self.fixups:
            fixup.on_discovery_requested()

    def discover(self, packages: Any = None, related_name: str = "tasks") -> None:
        """Import the task modules of ``packages`` (default: the Django apps) now."""
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

    def discover_pending(self) -> None:
        """Run the ``autodiscover_tasks()`` calls still waiting."""
        while self.pending_discovery:
            packages, related_name = self.pending_discovery.pop(0)
            self.discover(packages, related_name)

    @property
    def configured(self) -> bool:
        """True once the settings were first read (``on_after_configure`` was sent)."""
        return not isinstance(self.conf, PendingSettings)

    def _configure(self) -> None:
        """The settings are read for the first time: send ``on_configure`` and
        ``on_after_configure`` (once; :class:`~liteq.config.PendingSettings` calls it)."""
        self.on_configure.send(sender=self)
        self._configured_receivers = self.on_after_configure.receivers
        self.on_after_configure.send(sender=self, source=self.conf)

    def finalize(self) -> None:
        """Import the ``imports``/``include`` modules, configure the app if nothing has
        read its settings yet (``on_configure``, ``on_after_configure``), then send
        ``on_after_finalize``; each signal reaches each receiver once.

        An ``on_after_configure`` handler in a module imported after the settings
        were first read (a worker reads them before it imports ``include``) is called
        here, once its module is imported.
        """
        with self._lock:
            if self._finalized:
                return
            self._finalized = True
        for fixup in self.fixups:  # errors stop here (Django: a bad setting, a bad app)
            fixup.on_finalize()
        conf = self.conf
        for module in (*tuple(conf.peek("imports") or ()), *tuple(conf.peek("include") or ())):
            importlib.import_module(module)
        self.discover_pending()
        if isinstance(conf, PendingSettings):
            conf.settle()
        else:
            self.on_after_configure.send_to_late(self._configured_receivers, sender=self,
                                                 source=conf)
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
        # Read without configuring: a call at import time must not run the handlers
        # before the module has defined its tasks.
        self.conf.beat_schedule = {
            **(self.conf.peek("beat_schedule") or {}),
            key: {
                "schedule": schedule,
                "task": sig["task"],
                "args": (*args, *sig.get("args", ())),
                "kwargs": {**sig.get("kwargs", {}), **(kwargs or {})},
                "options": {**sig.get("options", {}), **options},
            },
        }
        return key

    # -- a worker inside the application ----------------------------------------------

    def Worker(self, **options: Any) -> Any:
        """A worker inside this application, not started yet: ``start()`` returns at
        once (it runs in the background), ``stop(timeout=...)`` is a warm shutdown.

        Args:
            **options: ``pool`` (``"threads"``, ``"solo"`` or ``"prefork"``),
                ``concurrency``, ``queues``, ``hostname`` and the rest of
                :class:`liteq.worker.background.EmbeddedWorker`.

        Example:
            >>> worker = app.Worker(pool="threads", concurrency=4).start()  # doctest: +SKIP
            >>> worker.stop(timeout=30)  # doctest: +SKIP
        """
        return embedding.worker()(self, **options)

    def run_worker(self, **options: Any) -> Any:
        """A context manager: a worker inside this application for the ``with`` block,
        stopped warm at its end (options as :meth:`Worker`, and ``shutdown_timeout``).

        Example:
            >>> with app.run_worker(pool="threads", concurrency=4):  # doctest: +SKIP
            ...     add.delay(2, 2).get(timeout=10)
            4
        """
        return embedding.run_worker()(self, **options)

    # -- sending ---------------------------------------------------------------------

    def send_task(
        self, name: str, args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None, **options: Any,
    ) -> _AsyncResult[Any]:
        """Send a task by name, without importing its code (see
        :meth:`Producer.send_task <liteq.producer.Producer.send_task>`).

        Example:
            >>> app.send_task("tasks.add", args=(2, 2)).get(timeout=10)  # doctest: +SKIP
            4
        """
        return self.producer.send_task(name, args, kwargs, **options)

    async def asend_task(
        self, name: str, args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None, **options: Any,
    ) -> _AsyncResult[Any]:
        """``send_task()`` for asyncio (see
        :meth:`Producer.asend_task <liteq.producer.Producer.asend_task>`).

        Example:
            >>> await app.asend_task("tasks.add", args=(2, 2))  # doctest: +SKIP
        """
        return await self.producer.asend_task(name, args, kwargs, **options)

    def build_message(self, name: str, args: Iterable[Any] | None = None,
                      kwargs: Mapping[str, Any] | None = None, **options: Any) -> Message:
        """Turn a task call and its options into a message, not yet sent (see
        :meth:`Producer.build_message <liteq.producer.Producer.build_message>`)."""
        return self.producer.build_message(name, args, kwargs, **options)

    def publish(self, messages: Sequence[Message], **options: Any) -> None:
        """Store messages in one transaction, all or none (see
        :meth:`Producer.publish <liteq.producer.Producer.publish>`)."""
        self.producer.publish(messages, **options)

    def AsyncResult(self, task_id: str, **kwargs: Any) -> _AsyncResult[Any]:
        """The result of the task with this id (``app.AsyncResult(id).get()``)."""
        return _AsyncResult(task_id, self, kwargs.get("task_name"), parent=kwargs.get("parent"))

    @property
    def GroupResult(self) -> type[_GroupResult]:
        """``GroupResult`` bound to this app: ``app.GroupResult(id, results)``, and
        ``app.GroupResult.restore(id)`` for a group saved with ``save()``."""
        return self._cache.get("GroupResult", lambda: _GroupResult.bound_to(self))

    def make_record(
        self, task_id: str, state: str, data: Any, *, task_name: str | None = None,
        worker: str | None = None, retries: int = 0, serializer: str | None = None,
    ) -> ResultRecord:
        """A result record for ``data`` encoded with the result serializer (see
        :func:`liteq.records.build_record`, the one builder)."""
        return build_record(self, task_id, state, data, task_name=task_name, worker=worker,
                            retries=retries, serializer=serializer)

    # -- entry points ----------------------------------------------------------------

    def worker_main(self, argv: Sequence[str] | None = None) -> None:
        """Run a worker as ``liteq worker`` would, with ``argv`` as its options."""
        command_line()(["worker", *(argv or [])], app=self)

    def start(self, argv: Sequence[str] | None = None) -> None:
        """Run the command line (``app.start()`` in a ``__main__`` block)."""
        command_line()(list(argv) if argv is not None else None, app=self)


def command_line() -> Callable[..., None]:
    """The ``liteq`` command line, as installed: the ``liteq`` console script that
    liteq's distribution registers (``[project.scripts]`` in pyproject.toml).

    The CLI sits above the app and imports it; the app reaches the CLI only through
    this registered entry point, so the layers keep one direction.

    Raises:
        ImproperlyConfigured: liteq is not installed (no ``liteq`` console script).
    """
    for entry in entry_points(group="console_scripts", name="liteq"):
        if entry.value.startswith("liteq."):
            return entry.load()  # type: ignore[no-any-return]
    raise ImproperlyConfigured(
        "app.start() and app.worker_main() need liteq installed (pip install liteq): "
        "its 'liteq' console script is the command line they run"
    )


Celery = LiteQ
_AsyncResult = AsyncResult
_GroupResult = GroupResult

def _as_object(source: Any) -> Any:
    return load_object(source) if isinstance(source, str) else source



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
    """The packages of Django's installed apps (their AppConfig names when ready)."""
    try:
        registry = load_object("django.apps:apps")
        if registry.ready:
            return [config.name for config in registry.get_app_configs()]
        settings = load_object("django.conf:settings")
        return list(settings.INSTALLED_APPS)
    except Exception:
        return []


__all__ = ["Celery", "LiteQ"]
