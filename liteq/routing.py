"""Queues, exchanges and ``task_routes``: which queue a task message goes to.

liteq has no AMQP broker, but it keeps AMQP's routing model so Celery configurations
work unchanged: a message names an exchange and a routing key, and lands in every queue
bound to that exchange whose binding key matches (``direct``: equal; ``topic``: ``*``
is one word, ``#`` zero or more; ``fanout``: every bound queue). kombu's ``Queue`` and
``Exchange`` objects are accepted too (duck-typed; kombu is not a dependency).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from liteq.config import load_object
from liteq.exceptions import ImproperlyConfigured

EXCHANGE_TYPES = ("direct", "topic", "fanout")


@dataclass(frozen=True)
class Exchange:
    """An exchange: how routing keys pick queues.

    Example:
        >>> Exchange("media", type="topic")
        Exchange(name='media', type='topic')
    """

    name: str = ""
    type: str = "direct"

    def __post_init__(self) -> None:
        if self.type not in EXCHANGE_TYPES:
            raise ImproperlyConfigured(
                f"exchange {self.name!r}: type must be one of {', '.join(EXCHANGE_TYPES)}, "
                f"not {self.type!r}"
            )


@dataclass(frozen=True)
class Queue:
    """A queue and its binding, as in kombu.

    ``delivery_mode=1`` (transient) lets liteq skip waiting for durability on this queue.

    Example:
        >>> Queue("videos", Exchange("media"), routing_key="media.video")
        Queue(name='videos', exchange=Exchange(name='media', type='direct'), ...)
    """

    name: str
    exchange: Exchange | None = None
    routing_key: str | None = None
    delivery_mode: int | None = None
    max_priority: int | None = None

    def __repr__(self) -> str:
        return f"Queue(name={self.name!r}, exchange={self.exchange!r}, ...)"

    @property
    def binding_key(self) -> str:
        return self.routing_key if self.routing_key is not None else self.name

    @property
    def exchange_name(self) -> str:
        return self.exchange.name if self.exchange is not None else self.name

    @property
    def exchange_type(self) -> str:
        return self.exchange.type if self.exchange is not None else "direct"


def as_queue(obj: Any) -> Queue:
    """A liteq :class:`Queue` from a liteq or kombu queue, or a queue name."""
    if isinstance(obj, Queue):
        return obj
    if isinstance(obj, str):
        return Queue(obj)
    name = getattr(obj, "name", None)
    if not isinstance(name, str):
        raise ImproperlyConfigured(f"not a queue: {obj!r}")
    exchange = getattr(obj, "exchange", None)
    if exchange is not None and not isinstance(exchange, Exchange):
        exchange_name = getattr(exchange, "name", "") or ""
        exchange = Exchange(exchange_name, getattr(exchange, "type", None) or "direct")
        if not exchange_name:
            exchange = None
    return Queue(
        name,
        exchange=exchange,
        routing_key=getattr(obj, "routing_key", None) or None,
        delivery_mode=getattr(obj, "delivery_mode", None),
        max_priority=getattr(obj, "max_priority", None),
    )


def queues_from_setting(
    setting: Any, default_exchange: Exchange | None = None
) -> dict[str, Queue]:
    """``task_queues`` (a list, tuple, set or dict of queues) as a name -> Queue map.

    A queue declared without an exchange is bound to ``default_exchange`` when one is
    given (``task_default_exchange``), as Celery does; otherwise to its own name.
    """
    if not setting:
        return {}
    items = setting.values() if isinstance(setting, Mapping) else setting
    queues = [as_queue(item) for item in items]
    if default_exchange is not None:
        queues = [queue if queue.exchange is not None else replace(queue, exchange=default_exchange)
                  for queue in queues]
    return {queue.name: queue for queue in queues}


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: words split on ``.``; ``*`` is one word, ``#`` zero or more.

    Example:
        >>> topic_matches("task.#", "task.add"), topic_matches("*.video", "media.image")
        (True, False)
    """
    return _topic_match(tuple(pattern.split(".")), tuple(key.split(".")))


@lru_cache(maxsize=4096)
def _topic_match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_topic_match(rest, words[skip:]) for skip in range(len(words) + 1))
    if not words:
        return False
    return (head == "*" or head == words[0]) and _topic_match(rest, words[1:])


def bound_queues(queues: Iterable[Queue], exchange: str, routing_key: str) -> list[Queue]:
    """The queues a message sent to ``exchange`` with ``routing_key`` lands in."""
    found = []
    for queue in queues:
        if queue.exchange_name != exchange:
            continue
        kind = queue.exchange_type
        if (
            kind == "fanout"
            or (kind == "direct" and queue.binding_key == routing_key)
            or (kind == "topic" and topic_matches(queue.binding_key, routing_key))
        ):
            found.append(queue)
    return found


# -- task_routes ---------------------------------------------------------------------

Router = Callable[..., Any]


def _glob_router(pattern: str | re.Pattern[str], route: Any) -> Router:
    if isinstance(pattern, re.Pattern):
        compiled = pattern
    elif any(ch in pattern for ch in "*?["):
        compiled = re.compile(fnmatch.translate(pattern))
    else:
        return lambda name, *_a, **_k: route if name == pattern else None
    return lambda name, *_a, **_k: route if compiled.match(name) else None


def build_routers(setting: Any) -> list[Router]:
    """Turn ``task_routes`` into a list of router callables.

    Accepts a dict (exact names, glob patterns such as ``"project.videos.*"``, or compiled
    regexes mapped to a queue name or a dict of options), a router function
    ``(name, args, kwargs, options, task=None, **kw) -> route``, an import path of one,
    or a list or tuple of any of these, tried in order.
    """
    if not setting:
        return []
    items: Sequence[Any] = setting if isinstance(setting, (list, tuple)) else [setting]
    routers: list[Router] = []
    for item in items:
        if isinstance(item, Mapping):
            routers.extend(_glob_router(pattern, route) for pattern, route in item.items())
        elif isinstance(item, str):
            routers.append(load_object(item))
        elif callable(item):
            routers.append(item)
        else:
            raise ImproperlyConfigured(f"task_routes: cannot use {item!r} as a router")
    return routers


def _call_router(router: Router, name: str, args: Any, kwargs: Any, options: Any, task: Any) -> Any:
    try:
        return router(name, args, kwargs, options, task=task)
    except TypeError:
        # Routers written for the old API take only (name, args, kwargs, options).
        return router(name, args, kwargs, options)


def route_options(
    routers: Sequence[Router], name: str, args: Any, kwargs: Any, options: Any, task: Any = None
) -> dict[str, Any]:
    """What the first matching router says for task ``name`` (``{}`` when none matches).

    A bare string route is a queue name, as in Celery (``{"tasks.add": "low-priority"}``).
    """
    for router in routers:
        route = _call_router(router, name, args, kwargs, options, task)
        if route is None:
            continue
        if isinstance(route, str):
            return {"queue": route}
        if isinstance(route, Queue) or hasattr(route, "routing_key"):
            return {"queue": as_queue(route).name}
        if isinstance(route, Mapping):
            return dict(route)
        raise ImproperlyConfigured(f"router for {name!r} returned {route!r}")
    return {}


__all__ = [
    "Exchange",
    "Queue",
    "as_queue",
    "bound_queues",
    "build_routers",
    "queues_from_setting",
    "route_options",
    "topic_matches",
]
