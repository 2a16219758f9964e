"""Transports by URL scheme: ``sqlite`` (the default, and plain paths) and ``redis``."""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import urlsplit

from liteq.exceptions import ImproperlyConfigured
from liteq.transports.base import Transport

#: scheme -> "module:class"; Redis is imported only when asked for (liteq[redis]).
TRANSPORTS = {
    "": "liteq.transports.sqlite:SQLiteTransport",
    "sqlite": "liteq.transports.sqlite:SQLiteTransport",
    "sqlite3": "liteq.transports.sqlite:SQLiteTransport",
    "file": "liteq.transports.sqlite:SQLiteTransport",
    "db+sqlite": "liteq.transports.sqlite:SQLiteTransport",
    "redis": "liteq.transports.redis:RedisTransport",
    "rediss": "liteq.transports.redis:RedisTransport",
    "unix": "liteq.transports.redis:RedisTransport",
}

_NETWORK_ONLY = {"amqp", "amqps", "pyamqp", "librabbitmq", "sqs", "kafka", "mongodb", "memory"}


def scheme_of(url: str) -> str:
    """The URL's scheme; a plain file path has none."""
    return urlsplit(url).scheme.lower() if "://" in url else ""


def transport_for(url: str, options: dict[str, Any]) -> Transport:
    """The transport serving ``url``.

    Raises:
        ImproperlyConfigured: an unknown scheme, or Redis without ``liteq[redis]``.
    """
    scheme = scheme_of(url)
    if scheme == "db+sqlite":
        url = url[len("db+"):]
    target = TRANSPORTS.get(scheme)
    if target is None:
        if scheme in _NETWORK_ONLY:
            raise ImproperlyConfigured(
                f"liteq has no {scheme}:// transport; use sqlite:///tasks.db (one host) "
                "or redis://host:6379/0"
            )
        raise ImproperlyConfigured(
            f"unknown broker URL {url!r}: use sqlite:///relative.db, sqlite:////abs.db, "
            "a file path, or redis://host:port/db"
        )
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == "redis":
            raise ImproperlyConfigured(
                'the Redis transport needs the redis package: pip install "liteq[redis]"'
            ) from None
        raise
    transport: Transport = getattr(module, class_name)(url, options)
    return transport


__all__ = ["TRANSPORTS", "Transport", "scheme_of", "transport_for"]
