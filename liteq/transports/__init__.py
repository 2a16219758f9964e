"""Transports by URL scheme: ``sqlite`` (the default, and plain paths) and ``redis``."""

from __future__ import annotations

import importlib
import re
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
    # the SQLite file of a Django DATABASES entry: django://default
    "django": "liteq.contrib.django.transport:DjangoTransport",
    "redis": "liteq.transports.redis:RedisTransport",
    "rediss": "liteq.transports.redis:RedisTransport",
    "unix": "liteq.transports.redis:RedisTransport",
    "sentinel": "liteq.transports.redis:RedisTransport",
    "redis+cluster": "liteq.transports.redis:RedisTransport",
    "rediss+cluster": "liteq.transports.redis:RedisTransport",
}

#: Brokers of Celery (kombu) that liteq has no transport for; also refused when written
#: without ``//`` (``amqp:``) or as a bare name (``amqp``), never taken for a file name.
OTHER_BROKERS = frozenset({
    "amqp", "amqps", "pyamqp", "librabbitmq", "qpid", "sqs", "kafka", "confluentkafka",
    "mongodb", "memory", "filesystem", "zookeeper", "consul", "etcd", "azureservicebus",
    "azurestoragequeues", "gcpubsub", "sqla", "sqlalchemy", "django", "couchdb",
})

_WHAT_LITEQ_NEEDS = ("liteq needs a SQLite path (sqlite:///tasks.db, sqlite:////abs/tasks.db "
                     "or a plain file path; one host) or a redis:// URL (redis://host:6379/0)")

_SCHEME_WITHOUT_SLASHES = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def scheme_of(url: str) -> str:
    """The URL's scheme; a plain file path has none.

    ``amqp:`` and a bare ``amqp`` (or ``redis``) count as those schemes, so a broker
    name written short is refused by name instead of becoming a file of that name.
    """
    if "://" in url:
        return urlsplit(url).scheme.lower()
    lowered = url.strip().lower()
    if lowered in OTHER_BROKERS or lowered in ("redis", "rediss"):
        return lowered
    match = _SCHEME_WITHOUT_SLASHES.match(url)
    if match and match.group(1).lower() in OTHER_BROKERS:
        return match.group(1).lower()
    return ""


def transport_class(url: str, setting: str = "broker_url") -> type[Transport]:
    """The transport class serving ``url`` (``setting`` names it in errors).

    Raises:
        ImproperlyConfigured: an unknown scheme, or Redis without ``liteq[redis]``.
    """
    scheme = scheme_of(url)
    target = TRANSPORTS.get(scheme)
    if target is None or ("://" not in url and scheme):
        if scheme in OTHER_BROKERS:
            raise ImproperlyConfigured(
                f"liteq has no {scheme}:// transport ({setting} = {url!r}): {_WHAT_LITEQ_NEEDS}"
            )
        if "://" not in url:  # a bare "redis"
            raise ImproperlyConfigured(
                f"{setting} = {url!r} names no server: {_WHAT_LITEQ_NEEDS}"
            )
        what = "broker URL" if setting == "broker_url" else setting
        raise ImproperlyConfigured(f"unknown {what} {url!r}: {_WHAT_LITEQ_NEEDS}")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == "redis":
            raise ImproperlyConfigured(
                'the Redis transport needs the redis package: pip install "liteq[redis]"'
            ) from None
        raise
    cls: type[Transport] = getattr(module, class_name)
    return cls


def _strip_sqlalchemy(url: str) -> str:
    # SQLAlchemy's db+sqlite:///results.db (Celery's database backend) is that file.
    return url[len("db+"):] if scheme_of(url) == "db+sqlite" else url


def transport_for(url: str, options: dict[str, Any],
                  setting: str = "broker_url") -> Transport:
    """The transport serving ``url``.

    Raises:
        ImproperlyConfigured: an unknown scheme, or Redis without ``liteq[redis]``.
    """
    cls = transport_class(url, setting)
    return cls(_strip_sqlalchemy(url), options)


def check_store(url: str, setting: str = "broker_url") -> None:
    """Check that ``url`` holds a store, creating and changing nothing.

    Raises:
        ImproperlyConfigured: an unknown scheme.
        StoreNotFound: no store there (a missing path, a directory).
        StorageError: something else is there (not SQLite, not liteq's).
    """
    transport_class(url, setting).check_store(_strip_sqlalchemy(url))


__all__ = ["OTHER_BROKERS", "TRANSPORTS", "Transport", "check_store", "scheme_of",
           "transport_class", "transport_for"]
