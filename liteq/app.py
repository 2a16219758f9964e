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

import dataclasses
import importlib
import inspect
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar, overload
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from liteq import _state, serialization, signals
from liteq.config import Settings, load_object, seconds
from liteq.control import Control
from liteq.exceptions import ImproperlyConfigured, OperationalError
from liteq.messages import Envelope, Message, new_id, new_ids, origin
from liteq.registry import TaskFinder, TaskRegistry
from liteq.result import AsyncResult, GroupResult
from liteq.routing import Queue, bound_queues, build_routers, queues_from_setting, route_options
from liteq.signals import Signal
from liteq.task import Task, gen_task_name, make_task, shared_tasks
from liteq.transports import transport_for
from liteq.transports.base import ResultRecord, Transport

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: Every app created in this process (workers look up tasks across them).
_apps: weakref.WeakSet[LiteQ] = weakref.WeakSet()

#: apply_async options Celery accepts that mean nothing here (no AMQP producer).
_IGNORED_OPTIONS = frozenset({
    "producer", "add_to_parent", "shadow", "reply_to", "mandatory", "immediate",
    "compression", "delivery_mode", "declare", "stamped_headers", "stamps", "publisher",
    "content_type", "content_encoding", "correlation_id", "chord", "subtask_type",
    "immutable", "is_eager", "ignore_result_on_failure",
})


class _Defaults:
    """Per-task send options resolved from the task, annotations and settings."""

    __slots__ = (
        "acks_late",
        "exchange",
        "expires",
        "ignore_result",
        "priority",
        "queue",
        "route",
        "routing_key",
        "serializer",
        "shapes",
        "signature",
        "soft_time_limit",
        "time_limit",
    )

    def __init__(self, app: LiteQ, task: Task[Any, Any] | None) -> None:
        conf = app.conf
        self.queue = getattr(task, "queue", None)
        self.exchange = getattr(task, "exchange", None)
        self.routing_key = getattr(task, "routing_key", None)
        self.priority = _first(getattr(task, "priority", None), conf.task_default_priority, 0)
        self.serializer = _first(getattr(task, "serializer", None), conf.task_serializer)
        self.ignore_result = bool(_first(getattr(task, "ignore_result", None),
                                         conf.task_ignore_result))
        self.acks_late = bool(_first(getattr(task, "acks_late", None), conf.task_acks_late))
        self.time_limit = _first(getattr(task, "time_limit", None), conf.task_time_limit)
        self.soft_time_limit = _first(getattr(task, "soft_time_limit", None),
                                      conf.task_soft_time_limit)
        self.expires = getattr(task, "expires", None)
        self.signature = _signature_of(task) if task is not None and task.typing else None
        #: argument shapes (count, keyword names) already checked against the signature
        self.shapes: set[tuple[int, tuple[str, ...]]] = set()
        #: (route, clamped priority) when no router and no routing option applies
        self.route: tuple[dict[str, Any], int] | None = None

    def check(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Raise TypeError when the arguments cannot bind to the task's signature."""
        if self.signature is None:
            return
        shape = (len(args), tuple(kwargs))
        if shape in self.shapes:  # binding depends on the shape only, not on values
            return
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{name}() {exc}") from None
        self.shapes.add(shape)


def _first(*values: Any) -> Any:
    for value in values:
        if value is not None:
            return value
    return None


def _signature_of(task: Task[Any, Any]) -> inspect.Signature | None:
    run = getattr(type(task), "__wrapped__", None)
    if run is None:
        return None
    try:
        signature = inspect.signature(run)
    except (TypeError, ValueError):
        return None
    if getattr(type(task), "_bind", False):  # bound task: drop ``self``
        parameters = list(signature.parameters.values())[1:]
        signature = signature.replace(parameters=parameters)
    return signature


class LiteQ:
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

    def _defaults(self, task: Task[Any, Any] | None, name: str) -> _Defaults:
        if task is not None:
            self.annotate(task)
        return self._cached(("defaults", name, id(task)),  # type: ignore[no-any-return]
                            lambda: _Defaults(self, task))

    def _routing(self) -> tuple[list[Any], dict[str, Queue]]:
        return self._cached("routing", lambda: (  # type: ignore[no-any-return]
            build_routers(self.conf.task_routes), queues_from_setting(self.conf.task_queues)
        ))

    def build_message(
        self,
        name: str,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        task: Task[Any, Any] | None = None,
        task_id: str | None = None,
        countdown: float | None = None,
        eta: datetime | float | None = None,
        expires: datetime | float | None = None,
        queue: str | Queue | None = None,
        routing_key: str | None = None,
        exchange: Any = None,
        priority: int | None = None,
        serializer: str | None = None,
        ignore_result: bool | None = None,
        headers: Mapping[str, Any] | None = None,
        link: Any = None,
        link_error: Any = None,
        chain: Any = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        retries: int = 0,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_id: str | None = None,
        group_index: int | None = None,
        **unknown: Any,
    ) -> Message:
        """Turn a task call and its options into a :class:`Message` (not yet sent).

        Raises:
            TypeError: arguments that don't fit the task, or an unknown option.
        """
        if unknown.keys() - _IGNORED_OPTIONS:
            bad = ", ".join(sorted(unknown.keys() - _IGNORED_OPTIONS))
            raise TypeError(f"apply_async() got unexpected option(s): {bad}")
        args = _as_args(args, name)
        kwargs = _as_kwargs(kwargs, name)
        defaults = self._defaults(task, name)
        defaults.check(name, args, kwargs)
        now = time.time()
        if queue is None and exchange is None and routing_key is None and priority is None \
                and defaults.route is not None:
            route, priority = defaults.route  # the common case, resolved once per task
        else:
            route = self._route(name, args, kwargs, task, defaults, queue, exchange,
                                routing_key)
            if priority is None:
                priority = route.get("priority", defaults.priority)
            priority = self._clamp_priority(int(priority or 0), route["queue"])
            if not self._routing()[0] and queue is None and exchange is None and \
                    routing_key is None and "priority" not in route:
                defaults.route = (route, priority)
        parent = _state.current_request.get()
        if parent is not None and parent.id is not None:
            parent_id = parent_id or parent.id
            root_id = root_id or parent.root_id or parent.id
        task_id = task_id or new_id()
        options: dict[str, Any] = _NO_OPTIONS
        if link or link_error or chain or group_index is not None:
            options = {}
            for key, value in (("link", link), ("link_error", link_error), ("chain", chain)):
                if value:
                    options[key] = _signature_dicts(value)
            if group_index is not None:
                options["group_index"] = group_index
        return Message(
            id=task_id,
            task=name,
            args=args,
            kwargs=kwargs,
            queue=route["queue"],
            priority=priority,
            eta=now + float(countdown) if countdown is not None else self._timestamp(eta, now),
            expires=self._timestamp(expires if expires is not None else defaults.expires, now),
            retries=retries,
            root_id=root_id or task_id,
            parent_id=parent_id,
            group=group_id,
            origin=_ORIGIN,
            ignore_result=bool(defaults.ignore_result if ignore_result is None
                               else ignore_result),
            acks_late=defaults.acks_late,
            time_limit=_first(time_limit, defaults.time_limit),
            soft_time_limit=_first(soft_time_limit, defaults.soft_time_limit),
            exchange=route.get("exchange"),
            routing_key=route.get("routing_key"),
            headers=dict(headers) if headers else _NO_OPTIONS,
            options=options,
            serializer=serializer or defaults.serializer,
        )

    def _route(
        self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
        task: Task[Any, Any] | None, defaults: _Defaults, queue: Any, exchange: Any,
        routing_key: str | None,
    ) -> dict[str, Any]:
        routers, queues = self._routing()
        if queue is None and exchange is None and routing_key is None and routers:
            route = route_options(routers, name, args, kwargs, {}, task)
        else:
            route = {}
        queue = queue if queue is not None else route.get("queue", defaults.queue)
        exchange = exchange if exchange is not None else route.get("exchange", defaults.exchange)
        routing_key = routing_key or route.get("routing_key") or defaults.routing_key
        if isinstance(queue, Queue) or (queue is not None and hasattr(queue, "routing_key")):
            queue = queue.name
        exchange_name = getattr(exchange, "name", exchange)
        if queue is None and (exchange_name or routing_key):
            matched = bound_queues(queues.values(), exchange_name or "", routing_key or "")
            if matched:
                queue = matched[0].name
        if queue is None:
            queue = self.conf.task_default_queue
        if queues and queue not in queues and not self.conf.task_create_missing_queues:
            raise ImproperlyConfigured(
                f"queue {queue!r} is not in task_queues and task_create_missing_queues is off"
            )
        route = {**route, "queue": str(queue)}
        if exchange_name:
            route["exchange"] = exchange_name
        if routing_key:
            route["routing_key"] = routing_key
        return route

    def _clamp_priority(self, priority: int, queue: str) -> int:
        _, queues = self._routing()
        declared = queues.get(queue)
        limit = (declared.max_priority if declared else None) or self.conf.task_queue_max_priority
        if limit is not None:
            return max(0, min(priority, int(limit)))
        return priority

    def _timestamp(self, value: datetime | float | None, now: float) -> float | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            if value.tzinfo is None:
                zone = self.timezone
                if zone is not None:
                    value = value.replace(tzinfo=zone)
            return value.timestamp()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return now + float(value)
        raise TypeError(f"expected a datetime or a number of seconds, got {value!r}")

    def publish(
        self,
        messages: Sequence[Message],
        *,
        retry: bool | None = None,
        retry_policy: Mapping[str, Any] | None = None,
        connection: Any = None,
    ) -> None:
        """Store messages in one transaction (all or none), retrying per the policy.

        With ``connection`` (the caller's own open sqlite3 connection or peewee database
        on the broker's file), the messages are written through it, uncommitted: they
        exist if and only if the caller's transaction commits.

        Raises:
            EncodeError: a message's arguments cannot be serialized.
            OperationalError: storage stayed unavailable through every retry.
        """
        if signals.before_task_publish.receivers:
            for message in messages:
                signals.before_task_publish.send(
                    sender=message.task, body=(message.args, message.kwargs, {}),
                    exchange=message.exchange, routing_key=message.routing_key or message.queue,
                    headers={"id": message.id, "task": message.task}, properties={},
                    declare=[], retry_policy=retry_policy,
                )
        envelopes = [message.encode() for message in messages]
        if connection is not None:
            publish_on = getattr(self.broker, "publish_on", None)
            if publish_on is None:
                raise ImproperlyConfigured(
                    f"connection= needs the SQLite transport, not {type(self.broker).__name__}"
                )
            publish_on(connection, envelopes)
        else:
            self._publish_envelopes(envelopes, retry, retry_policy)
        if signals.after_task_publish.receivers:
            for message in messages:
                signals.after_task_publish.send(
                    sender=message.task, body=(message.args, message.kwargs, {}),
                    exchange=message.exchange, routing_key=message.routing_key or message.queue,
                    headers={"id": message.id, "task": message.task},
                )

    def _publish_envelopes(
        self, envelopes: Sequence[Envelope], retry: bool | None,
        retry_policy: Mapping[str, Any] | None,
    ) -> None:
        try:
            self.broker.publish(envelopes)
            return
        except Exception as exc:
            error = exc
        if retry is None:
            retry = bool(self.conf.task_publish_retry)
        policy = {**self.conf.task_publish_retry_policy, **(retry_policy or {})}
        errors = tuple(policy.get("retry_errors") or ()) or (OperationalError,)
        limit = int(policy.get("max_retries", 3) or 0) if retry else 0
        for attempt in range(limit):
            if not _is_retriable(error, errors):
                break
            delay = min(
                float(policy.get("interval_start", 0))
                + attempt * float(policy.get("interval_step", 0.2)),
                float(policy.get("interval_max", 1)),
            )
            logger.warning("publishing failed (%s); retry %d of %d in %.1fs",
                           error, attempt + 1, limit, delay)
            time.sleep(delay)
            try:
                self.broker.publish(envelopes)
                return
            except Exception as exc:
                error = exc
        raise error

    def publish_calls(
        self, name: str, calls: Sequence[tuple[Iterable[Any], Mapping[str, Any]]], *,
        task: Task[Any, Any] | None = None, **options: Any,
    ) -> tuple[list[str], bool]:
        """Send many calls of one task, with the same options, in one transaction.

        The options are resolved and the header encoded once for all calls; each call
        costs an id, its arguments' encoding and a row. Returns the task ids and whether
        results are ignored.

        Raises:
            TypeError: a call's arguments don't fit the task, or an unknown option.
            EncodeError: a call's arguments cannot be serialized (named).
        """
        if not calls:
            return [], False
        retry = options.pop("retry", None)
        retry_policy = options.pop("retry_policy", None)
        first_args, first_kwargs = calls[0]
        template = self.build_message(name, first_args, first_kwargs, task=task, **options)
        if template.headers or template.options or options.get("task_id") or \
                signals.before_task_publish.receivers or signals.after_task_publish.receivers:
            messages = [template] + [self.build_message(name, a, k, task=task, **options)
                                     for a, k in calls[1:]]
            self.publish(messages, retry=retry, retry_policy=retry_policy)
            return [m.id for m in messages], template.ignore_result
        first = template.encode()
        check = self._defaults(task, name).check
        codec = serialization.get(template.serializer)
        dumps = serialization.dumps_call
        # Everything but the id and the body is the same for every call.
        shared = (name, first.queue, first.priority, first.eta, first.expires,
                  first.acks_late, first.content_type, first.header)
        envelopes = [first]
        for task_id, (call_args, call_kwargs) in zip(new_ids(len(calls) - 1), calls[1:],
                                                     strict=True):
            args = call_args if type(call_args) is tuple else _as_args(call_args, name)
            kwargs = call_kwargs if type(call_kwargs) is dict else _as_kwargs(call_kwargs, name)
            check(name, args, kwargs)
            try:
                body = dumps(codec, args, kwargs)
            except Exception:  # let the message name the argument
                dataclasses.replace(template, args=args, kwargs=kwargs).encode()
                raise
            envelopes.append(Envelope(task_id, *shared, body))
        self._publish_envelopes(envelopes, retry, retry_policy)
        return [envelope.task_id for envelope in envelopes], template.ignore_result

    def send_task(
        self, name: str, args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None, **options: Any,
    ) -> AsyncResult[Any]:
        """Send a task by name, without importing its code.

        Example:
            >>> app.send_task("tasks.add", args=(2, 2)).get(timeout=10)  # doctest: +SKIP
            4
        """
        retry = options.pop("retry", None)
        retry_policy = options.pop("retry_policy", None)
        connection = options.pop("connection", None)
        task = self.tasks.get(name) or shared_tasks.get(name)
        message = self.build_message(name, args, kwargs, task=task, **options)
        self.publish([message], retry=retry, retry_policy=retry_policy, connection=connection)
        return AsyncResult(message.id, self, name, ignored=message.ignore_result)

    def run_follow_ups(self, envelopes: Sequence[Envelope]) -> None:
        """Eager mode: run (or, when not always eager, send) a task's follow-up messages."""
        if not envelopes:
            return
        if not self.conf.task_always_eager:
            self._publish_envelopes(envelopes, None, None)
            return
        for envelope in envelopes:
            message = Message.decode(envelope, self.accept)
            task = self.task_finder(import_on_demand=False)(message.task)
            task.apply(message.args, message.kwargs, task_id=message.id)

    # -- results ---------------------------------------------------------------------

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

_ORIGIN = origin()
#: Shared, never mutated: most messages have no headers and no canvas options.
_NO_OPTIONS: dict[str, Any] = {}


def _as_object(source: Any) -> Any:
    return load_object(source) if isinstance(source, str) else source


def _same_store(url: Any, broker_url: str) -> bool:
    text = str(url)
    return text in ("rpc://", "rpc", broker_url) or text.startswith("rpc://")


def _as_args(args: Any, name: str) -> tuple[Any, ...]:
    kind = type(args)
    if kind is tuple:
        return args  # type: ignore[no-any-return]
    if kind is list:
        return tuple(args)
    if args is None:
        return ()
    if isinstance(args, tuple):
        return args
    if isinstance(args, list):
        return tuple(args)
    raise TypeError(
        f"{name}: args must be a list or a tuple, not {type(args).__name__} "
        "(a single argument is written args=(x,))"
    )


def _as_kwargs(kwargs: Any, name: str) -> dict[str, Any]:
    if type(kwargs) is dict:
        return kwargs
    if kwargs is None:
        return {}
    if not isinstance(kwargs, Mapping):
        raise TypeError(f"{name}: kwargs must be a dict, not {type(kwargs).__name__}")
    return dict(kwargs)


def _signature_dicts(value: Any) -> list[dict[str, Any]]:
    items = value if isinstance(value, (list, tuple)) else [value]
    result = []
    for item in items:
        if isinstance(item, Task):
            item = item.s()
        if not isinstance(item, Mapping):
            raise TypeError(f"expected a signature, got {item!r}")
        result.append(dict(item))
    return result


def _is_retriable(exc: Exception, errors: tuple[Any, ...]) -> bool:
    if isinstance(exc, errors):
        return True
    # Errors named after the broker failures Celery users list (kombu's TimeoutError,
    # redis' ConnectionError) cover liteq's OperationalError too.
    if isinstance(exc, OperationalError):
        names = {getattr(error, "__name__", "") for error in errors}
        return bool(names & {"TimeoutError", "OperationalError", "ConnectionError",
                             "OperationalException"})
    return False


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
