"""One place owns the connection to Redis: URL, TLS, credentials, retries, forks.

* URLs: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS) and
  ``unix:///path/redis.sock?db=N``, as redis-py reads them; ``sentinel://`` and
  ``redis+cluster://`` (several joined by ``;``: ``topology.py``); Celery's
  ``ssl_cert_reqs=CERT_NONE`` spelling works too, and so do the settings
  ``broker_use_ssl`` / ``redis_backend_use_ssl`` (a dict of ``ssl_*`` options).
* Messages name the URL without its password (:func:`redacted`).
* A lost connection (refused, reset, timed out, or Redis still loading its data after a
  restart) is retried with exponential backoff, from ``interval_start`` (0.05 s)
  doubling up to ``interval_max`` (1 s), for at most ``timeout`` seconds (20) and
  ``max_retries`` attempts: set them with
  ``broker_transport_options={"retry_policy": {"timeout": 60}}``. Then, or with
  ``broker_connection_retry=False`` at once, :class:`liteq.OperationalError` says which
  URL could not be reached. Retrying is safe because every script is idempotent for a
  retry (see ``scripts.py``).
* A wrong password (or an ACL user without the rights liteq needs) is not retried: one
  :class:`liteq.OperationalError` line says so.
* After ``fork()`` the child makes its own connections and never touches (or closes)
  the sockets its parent uses.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from liteq.exceptions import ImproperlyConfigured, OperationalError
from liteq.transports.redis import topology

logger = logging.getLogger("liteq.transports.redis")

T = TypeVar("T")

#: Errors that mean "not now" rather than "no": retried like a lost connection (Redis
#: still loading its data after a restart is a ConnectionError in redis-py already).
_TRANSIENT: tuple[type[Exception], ...] = (
    redis.ConnectionError, redis.TimeoutError, redis.exceptions.ReadOnlyError,
    redis.exceptions.TryAgainError, redis.exceptions.ClusterDownError,
)
#: Errors that mean the credentials (or the ACL user's rights) are wrong.
_REFUSED: tuple[type[Exception], ...] = (
    redis.AuthenticationError, redis.exceptions.NoPermissionError,
    redis.exceptions.AuthenticationWrongNumberOfArgsError,
)
class ReplicasBehind(redis.ConnectionError):
    """Fewer replicas than ``wait_for_replicas`` confirmed a write in time (after a
    failover: this server is no longer the master): the call is retried."""


class ReplicaWait:
    """Whether each script's writes wait for replicas (``WAIT``), and what a shortfall
    means.

    A Sentinel failover promotes a replica while the old master, not yet told, goes on
    accepting writes for seconds; they vanish when it becomes a replica. So with
    ``wait_for_replicas`` (1 by default on ``sentinel://``) a call counts as done only
    once that many replicas confirm it. When fewer do within ``wait_for_replicas_timeout``
    (0.5 s), on Sentinel: if a replica the sentinels know already calls itself a master,
    or the sentinels name another master, :class:`ReplicasBehind` makes the call retry
    (on the new master once the sentinels name it; every script is idempotent for a
    retry). Otherwise the replicas are just behind or down: the write stands, with a
    warning, and writes skip the wait for :attr:`PAUSE` seconds. Without Sentinel a
    shortfall is always retried.
    """

    #: Seconds writes go unconfirmed after a master with lagging replicas was confirmed.
    PAUSE = 5.0

    def __init__(self, replicas: int, timeout: float, sentinel: bool, location: str,
                 replica_kwargs: Mapping[str, Any]) -> None:
        self.replicas = replicas
        self.timeout_ms = max(1, int(timeout * 1000))
        self.sentinel = sentinel
        self.location = location
        self._replica_kwargs = dict(replica_kwargs)
        self._paused_until = 0.0

    @property
    def active(self) -> bool:
        """True when the next write should wait for replicas."""
        return self.replicas > 0 and time.monotonic() >= self._paused_until

    def confirmed(self, client: redis.Redis, replicas: int) -> None:
        """Accept a write ``replicas`` replicas confirmed, or raise to retry it.

        Raises:
            ReplicasBehind: too few confirmed, and this may not be the master any more.
        """
        if replicas >= self.replicas:
            return
        behind = ReplicasBehind(f"{replicas} of {self.replicas} replicas confirmed a write "
                                f"within {self.timeout_ms} ms (wait_for_replicas)")
        if not self.sentinel or self._failing_over(client):
            raise behind
        self._paused_until = time.monotonic() + self.PAUSE
        logger.warning("Redis at %s: %s, and no failover is under way: writes go "
                       "unconfirmed by replicas for %gs", self.location, behind, self.PAUSE)

    def _failing_over(self, client: redis.Redis) -> bool:
        """True unless the sentinels name the same master and no replica they know has
        been promoted (a replica calls itself master before the sentinels say so)."""
        pool: Any = client.connection_pool
        before = getattr(getattr(pool, "proxy", None), "master_address", None)
        try:
            if before is None or pool.get_master_address() != before:
                return True
            replicas = pool.sentinel_manager.discover_slaves(pool.service_name)
        except redis.RedisError:
            return True  # cannot tell: retry
        for host, port in replicas:
            try:
                with redis.Redis(host=host, port=port, **self._replica_kwargs) as replica:
                    role = replica.execute_command("ROLE")[0]
            except redis.RedisError:
                continue  # a replica that is down was not promoted
            if role in (b"master", "master"):
                return True
        return False


_CERT_REQS = {"cert_none": "none", "none": "none", "cert_optional": "optional",
              "optional": "optional", "cert_required": "required", "required": "required"}
_SECRET_QUERY = {"password", "ssl_password"}


def redacted(url: str) -> str:
    """``url`` without its password, for messages.

    Example:
        >>> redacted("redis://:s3cret@db.example:6380/2")
        'redis://db.example:6380/2'
        >>> redacted("rediss://app:s3cret@db.example/0?password=x")
        'rediss://app@db.example/0'
    """
    if ";" in url.partition("?")[0]:  # sentinel://a;sentinel://b
        return ";".join(redacted(part) for part in url.split(";") if part.strip())
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        credentials, _, host = netloc.rpartition("@")
        user = credentials.partition(":")[0]
        netloc = f"{user}@{host}" if user else host
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k not in _SECRET_QUERY])
    # by hand: urlunsplit() would drop the empty host of unix:///path
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def _setting(options: Mapping[str, Any], name: str, default: Any = None) -> Any:
    conf = options.get("conf")
    value = None if conf is None else conf.get(name)
    return default if value is None else value


def _seconds(value: Any, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ImproperlyConfigured(f"{name} must be a number of seconds, not {value!r}") from None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().rstrip(".") or type(exc).__name__
    return text.splitlines()[0]


class Connection:
    """A redis-py client per process, and the retry loop every call goes through.

    Example:
        >>> conn = Connection("redis://127.0.0.1:6379/0", {})  # doctest: +SKIP
        >>> conn.run(lambda client: client.ping())  # doctest: +SKIP
        True
    """

    def __init__(self, url: str, options: Mapping[str, Any]) -> None:
        self.url = self._normalized(url)
        self.location = redacted(url)
        policy = dict(options.get("retry_policy") or {})
        self.retry = bool(_setting(options, "broker_connection_retry", True))
        self.max_retries = int(policy.get("max_retries")
                               or _setting(options, "broker_connection_max_retries", 100) or 0)
        self.timeout = _seconds(policy.get("timeout", 20.0), "retry_policy['timeout']")
        self.interval_start = _seconds(policy.get("interval_start", 0.05),
                                       "retry_policy['interval_start']")
        self.interval_max = _seconds(policy.get("interval_max", 1.0),
                                     "retry_policy['interval_max']")
        connect_timeout = options.get("socket_connect_timeout") or _setting(
            options, "redis_socket_connect_timeout") or _setting(
            options, "broker_connection_timeout", 4.0)
        self.connect_timeout = _seconds(connect_timeout, "socket_connect_timeout")
        socket_timeout = options.get("socket_timeout") or _setting(
            options, "redis_socket_timeout", 120.0)
        self._kwargs: dict[str, Any] = {
            "socket_timeout": _seconds(socket_timeout, "socket_timeout"),
            "socket_connect_timeout": self.connect_timeout,
            "health_check_interval": int(options.get("health_check_interval", 25)),
            # liteq retries (below) so it can bound the time and keep retries safe
            "retry": Retry(NoBackoff(), 0),
        }
        max_connections = options.get("max_connections") or _setting(
            options, "redis_max_connections")
        if max_connections:
            self._kwargs["max_connections"] = int(max_connections)
        self.servers = topology.parse(self.url, self.location)
        scheme = urlsplit(self.url).scheme
        if scheme != "unix":  # TCP: notice a peer that vanished
            self._kwargs["socket_keepalive"] = True
        if scheme == "rediss" or (self.servers.kind == "sentinel"
                                  and _setting(options, "broker_use_ssl")):
            self._kwargs.update(self._ssl_options(options))
            if self.servers.kind == "sentinel":
                self._kwargs["ssl"] = True
        self._options = options
        self._client: redis.Redis | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        #: the connection :meth:`command` keeps (when no other thread is using it)
        self._own: Any = None
        self._own_lock = threading.Lock()
        self._pinning = not self.servers.cluster

    @staticmethod
    def _normalized(url: str) -> str:
        """Celery spells ``ssl_cert_reqs=CERT_NONE``; redis-py wants ``none``."""
        parts = urlsplit(url)
        if "ssl_cert_reqs" not in parts.query:
            return url
        query = [(k, _CERT_REQS.get(v.lower(), v) if k == "ssl_cert_reqs" else v)
                 for k, v in parse_qsl(parts.query)]
        return urlunsplit(parts._replace(query=urlencode(query)))

    @staticmethod
    def _ssl_options(options: Mapping[str, Any]) -> dict[str, Any]:
        setting = _setting(options, "broker_use_ssl") or _setting(options, "redis_backend_use_ssl")
        if not isinstance(setting, Mapping):
            return {}
        ssl_options = {}
        for name, value in setting.items():
            if name == "ssl_cert_reqs" and isinstance(value, str):
                value = _CERT_REQS.get(value.lower(), value)
            elif name == "ssl_cert_reqs":  # an ssl.VerifyMode
                value = {0: "none", 1: "optional", 2: "required"}.get(int(value), value)
            ssl_options[name] = value
        return ssl_options

    # -- the client ------------------------------------------------------------------

    @property
    def client(self) -> redis.Redis:
        """This process's client (a forked child makes its own)."""
        client = self._client
        if client is None or self._pid != os.getpid():
            with self._lock:
                if self._client is None or self._pid != os.getpid():
                    self._client = self._make_client()
                    self._pid = os.getpid()
                client = self._client
        return client

    @property
    def cluster(self) -> bool:
        """True for a Redis Cluster (``redis+cluster://``)."""
        return self.servers.cluster

    def _make_client(self) -> redis.Redis:
        try:
            if self.servers.kind == "sentinel":
                client: redis.Redis = topology.sentinel_client(
                    self.servers, self._options, self.location, self._kwargs)
                return client
            if self.servers.kind == "cluster":
                cluster: redis.Redis = topology.cluster_client(self.servers, self._kwargs)
                return cluster
            return redis.Redis.from_url(self.url, **self._kwargs)
        except (ValueError, TypeError) as exc:
            raise ImproperlyConfigured(f"bad Redis URL {self.location}: {exc}") from None

    def forget(self) -> None:
        """After ``fork()``: drop the parent's client without closing its sockets."""
        self._client = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._own = None
        self._own_lock = threading.Lock()

    def close(self) -> None:
        """Close this process's connections (they reopen on next use)."""
        self._own = None  # (one of the pool's: closed with it below)
        client, self._client = self._client, None
        if client is not None and self._pid == os.getpid():
            client.close()
            if not self.cluster:  # (a cluster client closes every node's pool itself)
                client.connection_pool.disconnect()

    # -- calls -----------------------------------------------------------------------

    def command(self, client: redis.Redis, *args: Any) -> Any:
        """One command, its reply unparsed (for EVALSHA), on a connection kept for it.

        redis-py's client spends about 35 µs of CPU per command around the 10-15 µs of
        packing, sending and reading (taking a connection from the pool and polling it,
        giving it back, retry and metrics wrappers). The hot path (every script call:
        each ``delay()``, claim and settle) skips that on one connection of the pool kept
        aside, while no other thread uses it; a thread that finds it busy, and a
        cluster, take the ordinary way. A connection that failed is dropped (the caller
        retries on a new one); an error reply leaves it in use.
        """
        if not self._pinning or not self._own_lock.acquire(blocking=False):
            return client.execute_command(*args)  # type: ignore[no-untyped-call]
        try:
            conn = self._own
            if conn is None:
                conn = self._own = client.connection_pool.get_connection()
            try:
                conn.send_command(*args)
                return conn.read_response()
            except redis.ResponseError:
                raise
            except BaseException:
                self._own = None
                conn.disconnect()
                client.connection_pool.release(conn)
                raise
        finally:
            self._own_lock.release()

    def _unpin(self) -> None:
        """Give the kept connection back (after a failover it may lead to the old
        master; a new one asks the sentinels again)."""
        if self._own_lock.acquire(blocking=False):
            try:
                conn, self._own = self._own, None
                client = self._client
                if conn is not None and client is not None and self._pid == os.getpid():
                    conn.disconnect()
                    client.connection_pool.release(conn)
            finally:
                self._own_lock.release()

    def run(self, operation: Callable[[redis.Redis], T]) -> T:
        """``operation(client)``, retried while Redis cannot be reached, within bounds.

        Raises:
            OperationalError: Redis stayed unreachable, refused the credentials, or
                refused the command; the message names the URL (without password).
        """
        started = time.monotonic()
        delay = self.interval_start
        attempts = 0
        while True:
            try:
                return operation(self.client)
            except _REFUSED as exc:
                raise self.refused(exc) from exc
            except redis.ConnectionError as exc:
                cause = exc.__cause__ or exc.__context__
                if isinstance(cause, ssl.SSLCertVerificationError):  # retrying won't help
                    raise OperationalError(
                        f"Redis at {self.location}: TLS certificate not trusted: "
                        f"{cause.verify_message} (give the CA with broker_use_ssl="
                        '{"ssl_ca_certs": "ca.pem"}, or add ?ssl_cert_reqs=none to the URL)'
                    ) from exc
                error: redis.RedisError = exc
            except redis.RedisError as exc:
                # BUSY (a long script runs) has no class of its own in redis-py
                if not isinstance(exc, _TRANSIENT) and not str(exc).startswith("BUSY "):
                    raise OperationalError(f"Redis at {self.location}: {_reason(exc)}") from exc
                error = exc
            attempts += 1
            elapsed = time.monotonic() - started
            if not self.retry or (self.max_retries and attempts > self.max_retries) \
                    or elapsed + delay > self.timeout:
                raise OperationalError(
                    f"cannot reach Redis at {self.location}: {_reason(error)} (gave up after "
                    f"{attempts} attempt{'s' if attempts > 1 else ''} in {elapsed:.1f}s)"
                ) from error
            if attempts == 1:
                logger.warning("Redis at %s: %s; retrying for up to %gs", self.location,
                               _reason(error), self.timeout)
            self._unpin()
            self._drop_idle()  # (after a failover: connections to the old master)
            time.sleep(delay)
            delay = min(delay * 2, self.interval_max)

    def refused(self, exc: BaseException) -> OperationalError:
        """The one-line error for credentials (or ACL rights) Redis refused."""
        if isinstance(exc, redis.exceptions.NoPermissionError):
            return OperationalError(
                f"Redis at {self.location} does not allow liteq's user this: {_reason(exc)} "
                "(the ACL user needs the liteq key prefix, scripts and pub/sub)"
            )
        parts = urlsplit(self.url)
        if not parts.password and "password=" not in parts.query:
            return OperationalError(
                f"Redis at {self.location} needs a password ({_reason(exc)}): give it in "
                "the URL, as redis://:password@host:port/db"
            )
        return OperationalError(
            f"Redis at {self.location} refused liteq's credentials: {_reason(exc)} "
            "(check the user and password in the URL)"
        )

    def _drop_idle(self) -> None:
        """Forget idle pooled connections: after a restart they are all dead."""
        client = self._client
        if client is not None and self._pid == os.getpid():
            try:
                if self.cluster:
                    client.disconnect_connection_pools()  # type: ignore[attr-defined]
                else:
                    client.connection_pool.disconnect(inuse_connections=False)
            except redis.RedisError:
                pass


__all__ = ["Connection", "ReplicaWait", "ReplicasBehind", "redacted"]
