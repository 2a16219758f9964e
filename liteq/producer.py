"""Sending tasks: options resolved once per task, messages built, published.

:class:`Producer` is the component an app owns (``app.producer``) that turns calls
into messages (``build_message``), stores them (``publish``, ``publish_calls`` for many
at once, ``send_task``) and retries storing them per ``retry_policy``. It works from
the app's settings, its task registry and its broker. The options of a
task (queue, priority, serializer, time limits...) are resolved once per task and per
change of the settings, which keeps ``delay()`` short.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from liteq import _state, aio, serialization, signals
from liteq.config import SettingsCache
from liteq.exceptions import ImproperlyConfigured, OperationalError
from liteq.flow import FlowSpec, task_flow
from liteq.messages import Envelope, Message, new_id, new_ids, origin
from liteq.result import AsyncResult, GroupResult
from liteq.routing import (
    Exchange,
    Queue,
    bound_queues,
    build_routers,
    queues_from_setting,
    route_options,
)
from liteq.task import Task, shared_tasks

if TYPE_CHECKING:
    from liteq.app import LiteQ
    from liteq.config import Settings

logger = logging.getLogger("liteq.app")

#: apply_async options Celery accepts that mean nothing here (no AMQP producer).
_IGNORED_OPTIONS = frozenset({
    "producer", "add_to_parent", "shadow", "reply_to", "mandatory", "immediate",
    "compression", "delivery_mode", "declare", "stamped_headers", "stamps", "publisher",
    "content_type", "content_encoding", "correlation_id", "subtask_type",
    "immutable", "is_eager", "ignore_result_on_failure",
})


class _Defaults:
    """Per-task send options resolved from the task, annotations and settings."""

    __slots__ = (
        "acks_late",
        "exchange",
        "expires",
        "flow",
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

    def __init__(self, conf: Settings, task: Task[Any, Any] | None) -> None:
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
        self.flow = None if task is None else task_flow(
            task, conf.task_default_rate_limit, bool(conf.worker_disable_rate_limits))
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



class Producer:
    """Builds and stores the messages of one app (``app.producer``).

    Args:
        app: the app whose settings (``app.conf``), tasks (``app.tasks``,
            ``app.annotate``) and broker (``app.broker``) it uses, and whose result
            handles it returns.

    Example:
        >>> message = app.producer.build_message("tasks.add", (2, 2))  # doctest: +SKIP
        >>> app.producer.publish([message])  # doctest: +SKIP
    """

    def __init__(self, app: LiteQ) -> None:
        self.app = app
        self.conf = app.conf
        self._cache = SettingsCache(app.conf)

    def _defaults(self, task: Task[Any, Any] | None, name: str) -> _Defaults:
        if task is not None:
            self.app.annotate(task)
        return self._cache.get(("defaults", name, id(task)), lambda: _Defaults(self.conf, task))

    def _routing(self) -> tuple[list[Any], dict[str, Queue]]:
        return self._cache.get("routing", lambda: (
            build_routers(self.conf.task_routes),
            queues_from_setting(self.conf.task_queues, self._default_exchange()),
        ))

    def _default_exchange(self) -> Exchange | None:
        name = self.conf.task_default_exchange
        if not name:
            return None
        return Exchange(str(name), str(self.conf.task_default_exchange_type or "direct"))

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
        chord: Mapping[str, Any] | None = None,
        argsrepr: str | None = None,
        kwargsrepr: str | None = None,
        unique_key: str | None = None,
        unique_for: float | None = None,
        unique_until: str | None = None,
        **unknown: Any,
    ) -> Message:
        """Turn a task call and its options into a :class:`Message` (not yet sent).

        ``argsrepr`` and ``kwargsrepr`` (Celery's options to hide sensitive arguments)
        travel with the message: the worker shows them instead of the arguments
        (``self.request.argsrepr``). ``unique_key`` (with ``unique_for`` seconds and
        ``unique_until``) makes the message unique (``liteq.flow``).

        Raises:
            TypeError: arguments that don't fit the task, or an unknown option.
            EncodeError: a flow key function raised, or unique arguments are not json.
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
        flow = None
        if defaults.flow is not None or unique_key is not None:
            spec = defaults.flow or FlowSpec(name)
            flow = spec.flow(args, kwargs, now=now, unique_key=unique_key,
                             unique_for=unique_for, unique_until=unique_until)
        options: dict[str, Any] = _NO_OPTIONS
        if link or link_error or chain or group_index is not None or chord or \
                argsrepr is not None or kwargsrepr is not None:
            options = _message_options(link, link_error, chain, group_index, chord,
                                       argsrepr, kwargsrepr)
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
            flow=flow,
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
        if queue is None:
            # No queue named: the message goes by exchange and routing key, each
            # falling back to its task_default_* setting, as in AMQP.
            exchange_name = exchange_name or self.conf.task_default_exchange
            routing_key = routing_key or self.conf.task_default_routing_key
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
                zone = self.app.timezone
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
    ) -> list[str]:
        """Store messages in one transaction (all or none), retrying per the policy.

        Returns the task id each message stands for: its own, or, for a unique message
        whose key a waiting or running task holds, that task's (nothing was stored).

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
            broker = self.app.broker
            publish_on = getattr(broker, "publish_on", None)
            if publish_on is None:
                raise ImproperlyConfigured(
                    f"connection= needs the SQLite transport, not {type(broker).__name__}"
                )
            ids = publish_on(connection, envelopes)
        else:
            ids = self._publish_envelopes(envelopes, retry, retry_policy)
        if _state.current_request.get() is not None:  # sent from a running task
            self._add_to_parent([(m.id, m.task, m.group) for m in messages])
        if signals.after_task_publish.receivers:
            for message in messages:
                signals.after_task_publish.send(
                    sender=message.task, body=(message.args, message.kwargs, {}),
                    exchange=message.exchange, routing_key=message.routing_key or message.queue,
                    headers={"id": message.id, "task": message.task},
                )
        return ids or [message.id for message in messages]

    def _publish_envelopes(
        self, envelopes: Sequence[Envelope], retry: bool | None,
        retry_policy: Mapping[str, Any] | None,
    ) -> list[str] | None:
        """Publish; returns the ids in effect when a unique message found its key
        taken (None: every message was stored under its own id)."""
        broker = self.app.broker
        for hook in self.app.transaction_hooks:
            connection = hook(self.app)
            if connection is not None:
                return broker.publish_on(connection, envelopes)  # type: ignore[attr-defined,no-any-return]
        try:
            return broker.publish(envelopes)
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
                return broker.publish(envelopes)
            except Exception as exc:
                error = exc
        raise error

    def _add_to_parent(self, sent: Sequence[tuple[str, str, str | None]]) -> None:
        """Record tasks sent (id, name, group id) from inside a running task as its
        children (Celery's ``add_to_parent``): a group's tasks as one GroupResult."""
        parent = _state.current_request.get()
        if parent is None or parent.children is None:
            return
        app = self.app
        groups: dict[str, GroupResult] = {}
        for task_id, name, group_id in sent:
            result: AsyncResult[Any] = AsyncResult(task_id, app, name)
            if group_id is None:
                parent.children.append(result)
            elif group_id in groups:
                groups[group_id].results.append(result)
            else:
                groups[group_id] = GroupResult(group_id, [result], app=app)
                parent.children.append(groups[group_id])

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
                template.flow is not None or \
                signals.before_task_publish.receivers or signals.after_task_publish.receivers:
            messages = [template] + [self.build_message(name, a, k, task=task, **options)
                                     for a, k in calls[1:]]
            ids = self.publish(messages, retry=retry, retry_policy=retry_policy)
            return ids, template.ignore_result
        first = template.encode()
        check = self._defaults(task, name).check
        codec = serialization.get(template.serializer)
        dumps = serialization.dumps_call
        # Everything but the id and the body is the same for every call.
        queue, priority, eta, expires = first.queue, first.priority, first.eta, first.expires
        acks_late, content_type, header = first.acks_late, first.content_type, first.header
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
            envelopes.append(Envelope(
                task_id=task_id, task_name=name, queue=queue, priority=priority, eta=eta,
                expires=expires, acks_late=acks_late, content_type=content_type,
                header=header, body=body,
            ))
        self._publish_envelopes(envelopes, retry, retry_policy)
        if _state.current_request.get() is not None:  # sent from a running task
            self._add_to_parent([(e.task_id, name, template.group) for e in envelopes])
        return [envelope.task_id for envelope in envelopes], template.ignore_result

    async def asend_task(self, name: str, args: Iterable[Any] | None = None,
                         kwargs: Mapping[str, Any] | None = None,
                         **options: Any) -> AsyncResult[Any]:
        """``send_task()`` for asyncio (the publish runs in the loop's executor).

        Example:
            >>> await app.asend_task("tasks.add", args=(2, 2))  # doctest: +SKIP
        """
        return await aio.run_blocking(self.send_task, name, args, kwargs, **options)

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
        task = self.app.tasks.get(name) or shared_tasks.get(name)
        message = self.build_message(name, args, kwargs, task=task, **options)
        task_id = self.publish([message], retry=retry, retry_policy=retry_policy,
                               connection=connection)[0]
        return AsyncResult(task_id, self.app, name, ignored=message.ignore_result)


_ORIGIN = origin()
#: Shared, never mutated: most messages have no headers and no canvas options.
_NO_OPTIONS: dict[str, Any] = {}


def _message_options(link: Any, link_error: Any, chain: Any, group_index: int | None,
                     chord: Mapping[str, Any] | None, argsrepr: str | None,
                     kwargsrepr: str | None) -> dict[str, Any]:
    """The options a message carries besides the call: canvas links, chord membership,
    and the arguments' repr to show (``argsrepr``/``kwargsrepr``)."""
    options: dict[str, Any] = {}
    for key, value in (("link", link), ("link_error", link_error), ("chain", chain)):
        if value:
            options[key] = _signature_dicts(value)
    if group_index is not None:
        options["group_index"] = group_index
    if chord:  # a chord's header task: its body and size (see liteq.canvas.chord)
        options["chord"] = dict(chord)
    for key, text in (("argsrepr", argsrepr), ("kwargsrepr", kwargsrepr)):
        if text is not None:
            options[key] = str(text)
    return options


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


__all__ = ["Producer"]
