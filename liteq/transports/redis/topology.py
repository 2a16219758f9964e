"""Which Redis servers a URL names: one server, a Sentinel-managed master, or a Cluster.

* ``redis://``, ``rediss://``, ``unix://``: one server, as redis-py reads the URL.
* ``sentinel://[[user]:password@]host:port[/db]``, several joined by ``;`` as Celery and
  kombu write them (``sentinel://10.0.0.1:26379;sentinel://10.0.0.2:26379``): the
  sentinels to ask where the master is. The master's name is the transport option
  ``master_name`` (``broker_transport_options``, or
  ``result_backend_transport_options`` for a ``result_backend``). The password and
  database in the URL (the first that gives one) are the master's; options for the
  connections to the sentinels themselves, such as their own password, go in
  ``sentinel_kwargs`` (``{"sentinel_kwargs": {"password": "..."}}``), as in kombu.
  TLS to the master: ``broker_use_ssl`` (as with kombu); to the sentinels:
  ``sentinel_kwargs={"ssl": True, ...}``.
* ``redis+cluster://[[user]:password@]host:port``, several joined by ``;`` (the nodes
  to start from; one is enough), and ``rediss+cluster://`` with TLS: a Redis Cluster.
  Celery has no such URL. Every key of one app carries one hash tag (``{liteq}:``, see
  ``keys.py``), so all of them live in one slot of one shard and every script stays
  atomic; apps with different ``global_keyprefix`` values spread over the shards.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.cluster import ClusterNode, RedisCluster
from redis.sentinel import Sentinel

from liteq.exceptions import ImproperlyConfigured

SENTINEL_SCHEMES = ("sentinel",)
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
#: Port of a sentinel when the URL gives none (Redis's default).
SENTINEL_PORT = 26379


@dataclass
class Servers:
    """Where the servers are, read from one URL."""

    kind: str  # "single", "sentinel" or "cluster"
    nodes: list[tuple[str, int]] = field(default_factory=list)
    username: str | None = None
    password: str | None = None
    db: int = 0
    tls: bool = False

    @property
    def cluster(self) -> bool:
        return self.kind == "cluster"


def _scheme(url: str) -> str:
    return url.partition("://")[0].lower()


def kind_of(url: str) -> str:
    """``"single"``, ``"sentinel"`` or ``"cluster"``."""
    scheme = _scheme(url)
    if scheme in SENTINEL_SCHEMES:
        return "sentinel"
    if scheme in CLUSTER_SCHEMES:
        return "cluster"
    return "single"


def parse(url: str, location: str) -> Servers:
    """The servers a ``sentinel://`` or ``redis+cluster://`` URL names.

    Example:
        >>> servers = parse("sentinel://:pw@h1:26379/2;sentinel://h2:26380", "")
        >>> servers.nodes, servers.password, servers.db
        ([('h1', 26379), ('h2', 26380)], 'pw', 2)

    Raises:
        ImproperlyConfigured: a part names another scheme, no host, a bad port or db.
    """
    kind = kind_of(url)
    if kind == "single":
        return Servers("single")
    servers = Servers(kind, tls=_scheme(url) == "rediss+cluster")
    db: int | None = None
    for part in (piece.strip() for piece in url.split(";")):
        if not part:
            continue
        if kind_of(part) != kind or _scheme(part) != _scheme(url):
            raise ImproperlyConfigured(
                f"bad Redis URL {location}: every part joined by ';' must start with "
                f"{_scheme(url)}://, not {part.partition('://')[0] or part!r}")
        parts = urlsplit(part)
        try:
            port = parts.port
        except ValueError:
            raise ImproperlyConfigured(f"bad Redis URL {location}: port is not a number") \
                from None
        if not parts.hostname:
            raise ImproperlyConfigured(f"bad Redis URL {location}: a part names no host")
        default_port = SENTINEL_PORT if kind == "sentinel" else 6379
        servers.nodes.append((parts.hostname, port or default_port))
        if parts.password and servers.password is None:
            servers.password = unquote(parts.password)
            servers.username = unquote(parts.username) if parts.username else None
        path = parts.path.strip("/")
        if path and db is None:
            if not path.isdigit():
                raise ImproperlyConfigured(
                    f"bad Redis URL {location}: the database must be a number, not {path!r}")
            db = int(path)
    if kind == "cluster" and db:
        raise ImproperlyConfigured(
            f"bad Redis URL {location}: a Redis Cluster has only database 0")
    servers.db = db or 0
    return servers


def master_name(options: Mapping[str, Any], location: str) -> str:
    """The ``master_name`` transport option a ``sentinel://`` URL needs.

    Raises:
        ImproperlyConfigured: it is missing (the message shows where it goes).
    """
    name = options.get("master_name")
    if not name or not isinstance(name, str):
        raise ImproperlyConfigured(
            f"{location} asks sentinels for a master, and needs its name: set "
            'broker_transport_options={"master_name": "mymaster"} (and '
            "result_backend_transport_options for a sentinel:// result_backend)")
    return name


def sentinel_client(servers: Servers, options: Mapping[str, Any], location: str,
                    kwargs: dict[str, Any]) -> Any:
    """A client of the master the sentinels name (it follows a failover)."""
    name = master_name(options, location)
    extra = options.get("sentinel_kwargs") or {}
    if not isinstance(extra, Mapping):
        raise ImproperlyConfigured(
            f"sentinel_kwargs must be a dict (of redis-py connection options), not {extra!r}")
    sentinel_kwargs = {key: kwargs[key] for key in ("socket_timeout", "socket_connect_timeout",
                                                    "socket_keepalive", "retry") if key in kwargs}
    sentinel_kwargs.update(extra)
    auth = {"password": servers.password, "username": servers.username}
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        servers.nodes, sentinel_kwargs=sentinel_kwargs, db=servers.db,
        **{k: v for k, v in auth.items() if v}, **kwargs)
    return sentinel.master_for(name)  # type: ignore[no-untyped-call]


def cluster_client(servers: Servers, kwargs: dict[str, Any]) -> Any:
    """A Redis Cluster client starting from the URL's nodes."""
    options = {k: v for k, v in kwargs.items() if k not in ("health_check_interval",)}
    if servers.tls:
        options["ssl"] = True
    if servers.password:
        options["password"] = servers.password
    if servers.username:
        options["username"] = servers.username
    nodes = [ClusterNode(host, port)  # type: ignore[no-untyped-call]
             for host, port in servers.nodes]
    return RedisCluster(startup_nodes=nodes, **options)


__all__ = ["CLUSTER_SCHEMES", "SENTINEL_SCHEMES", "Servers", "cluster_client", "kind_of",
           "master_name", "parse", "sentinel_client"]
